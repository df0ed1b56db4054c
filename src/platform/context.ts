/** Who did something, for audit events and authorisation. */
export type Actor =
  /** `elevationId`: the approved, time-boxed elevation the operator acts under in a tenant (src/access/). */
  | { type: 'operator'; id: string; elevationId?: string }
  | { type: 'user'; id: string }
  | { type: 'system'; id: string }
  | { type: 'anonymous'; id: null };

/** What every state change carries along so its audit event can say who, from where and in which request. */
export interface ActionContext {
  actor: Actor;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}

export const systemContext = (job: string): ActionContext => ({
  actor: { type: 'system', id: job },
  ip: null,
  userAgent: null,
  requestId: null,
});

/** Time is injected so that expiry and lockout are tested with a fake clock, never with sleeps. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
