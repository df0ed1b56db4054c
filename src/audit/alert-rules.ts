import { type Static, Type } from '@sinclair/typebox';
import { strictObject } from '../platform/http/schemas.ts';
import type { ChainedEvent } from './canonical.ts';

/**
 * The anomaly rules and their settings. A rule reads a chain's new events (alert-engine.ts) and names
 * what each suspicious event is about as keys; matches whose keys overlap make one alert.
 */
const Enabled = Type.Boolean({ description: 'Whether the rule raises alerts in this chain' });
const Window = Type.Integer({ minimum: 10, maximum: 86_400, description: 'Sliding window, seconds' });
const Threshold = (description: string) => Type.Integer({ minimum: 1, maximum: 1_000_000, description });

export const RuleSettingsSchema = strictObject({
  'signin.failures': strictObject({
    enabled: Enabled,
    windowSeconds: Window,
    perAccount: Threshold('Failed sign-ins of one account in the window'),
    perIp: Threshold('Failed sign-ins from one IP address in the window'),
    perTenant: Threshold('Failed sign-ins in the whole chain in the window'),
  }),
  'signin.new_location': strictObject({
    enabled: Enabled,
    lookbackDays: Type.Integer({
      minimum: 1,
      maximum: 400,
      description: 'How far back an address or device counts as known',
    }),
  }),
  'privileged.off_hours': strictObject({ enabled: Enabled }),
  'export.mass': strictObject({
    enabled: Enabled,
    windowSeconds: Window,
    threshold: Threshold('Exports by one actor in the window'),
  }),
  'read.mass': strictObject({
    enabled: Enabled,
    windowSeconds: Window,
    threshold: Threshold('Reads of data (answered GETs of protected routes) by one actor in the window'),
  }),
  'elevation.used': strictObject({ enabled: Enabled }),
  'access.denied_burst': strictObject({
    enabled: Enabled,
    windowSeconds: Window,
    threshold: Threshold('Refused requests (403) of one actor in the window'),
  }),
  'protect.blocks': strictObject({
    enabled: Enabled,
    windowSeconds: Window,
    threshold: Threshold('Requests blocked by rate limits and IP lists in the window'),
  }),
  'protect.incident': strictObject({ enabled: Enabled }),
});
export type RuleSettings = Static<typeof RuleSettingsSchema>;
export type RuleId = keyof RuleSettings;

const Clock = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM, 24-hour' });
export const WorkingHoursSchema = strictObject(
  {
    timeZone: Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone, e.g. Europe/Berlin' }),
    days: Type.Array(Type.Integer({ minimum: 1, maximum: 7 }), {
      minItems: 1,
      maxItems: 7,
      uniqueItems: true,
      description: 'ISO weekdays: 1 = Monday ... 7 = Sunday',
    }),
    start: Clock,
    end: Clock,
  },
  { description: 'Privileged actions outside these hours raise `privileged.off_hours`' },
);
export type WorkingHours = Static<typeof WorkingHoursSchema>;

export const defaultRuleSettings = (): RuleSettings => ({
  'signin.failures': { enabled: true, windowSeconds: 600, perAccount: 10, perIp: 20, perTenant: 100 },
  'signin.new_location': { enabled: true, lookbackDays: 90 },
  'privileged.off_hours': { enabled: true },
  'export.mass': { enabled: true, windowSeconds: 3600, threshold: 5 },
  'read.mass': { enabled: true, windowSeconds: 600, threshold: 500 },
  'elevation.used': { enabled: true },
  'access.denied_burst': { enabled: true, windowSeconds: 300, threshold: 20 },
  'protect.blocks': { enabled: true, windowSeconds: 300, threshold: 100 },
  'protect.incident': { enabled: true },
});

export const ruleSeverity: Record<RuleId, 'low' | 'medium' | 'high'> = {
  'signin.failures': 'high',
  'signin.new_location': 'medium',
  'privileged.off_hours': 'medium',
  'export.mass': 'high',
  'read.mass': 'high',
  'elevation.used': 'low',
  'access.denied_burst': 'medium',
  'protect.blocks': 'medium',
  'protect.incident': 'high',
};

/** Stored settings over the defaults, rule by rule: a rule added later starts at its default. */
export function effectiveRules(stored: unknown): RuleSettings {
  const rules = defaultRuleSettings();
  if (stored && typeof stored === 'object') {
    for (const [id, value] of Object.entries(stored)) {
      if (Object.hasOwn(rules, id) && value && typeof value === 'object') {
        Object.assign(rules[id as RuleId], value);
      }
    }
  }
  return rules;
}

/** The message for a time zone the runtime does not know, or null when it is valid. */
export function timeZoneProblem(timeZone: string): string | null {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone });
    return null;
  } catch {
    return `"${timeZone}" is not an IANA time zone this server knows (for example Europe/Berlin).`;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Whether `at` falls inside the working hours (an end before the start spans midnight). */
export function withinWorkingHours(hours: WorkingHours, at: Date): boolean {
  let format = formatters.get(hours.timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-GB', {
      timeZone: hours.timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(hours.timeZone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(at).map((p) => [p.type, p.value]));
  const day = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(parts.weekday ?? '') + 1;
  return withinLocalHours(hours, day, Number(parts.hour) * 60 + Number(parts.minute));
}

/** Whether an ISO weekday and minute of the day, in the hours' time zone, fall inside them. */
export function withinLocalHours(hours: WorkingHours, day: number, minute: number): boolean {
  const [start, end] = [hours.start, hours.end].map((t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3)));
  if (start === undefined || end === undefined) return true;
  if (start <= end) return hours.days.includes(day) && minute >= start && minute < end;
  // Overnight shift: the part after midnight belongs to the day the shift started.
  if (minute >= start) return hours.days.includes(day);
  return minute < end && hours.days.includes(day === 1 ? 7 : day - 1);
}

/** Actions a tenant administrator or operator takes that change who can do what, or take data out. */
const privilegedPrefixes = [
  'access.role.',
  'access.settings.',
  'access.approval.executed',
  'access.elevation.',
  'identity.policy.',
  'identity.settings.',
  'identity.user.unlocked',
  'identity.user.disabled',
  'identity.user.enabled',
  'identity.mfa.reset',
  'identity.session.revoked_all',
  'identity.operator.created',
  'protect.tenant_policy.',
  'audit.sink.',
  'audit.alert_settings.',
  'audit.trail.exported',
  'audit.retention.',
  'tenancy.tenant.',
];

/** An event as the rules read it: the chained event, with its position and the address in host form. */
export type RuleEvent = Omit<ChainedEvent, 'tenantId' | 'requestId'> & { seq: number };

/** A change of who may do what (or data taken out), by a person: operator, elevated or tenant admin. */
export const isPrivileged = (e: RuleEvent): boolean =>
  e.outcome === 'success' &&
  (e.actorType === 'operator' || e.actorType === 'user') &&
  (e.actorType === 'operator' ||
    e.actorElevationId !== null ||
    privilegedPrefixes.some((p) => e.action.startsWith(p)));
