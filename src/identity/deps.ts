import { type AuditInput, recordAuditEvent, recordAuditEvents } from '../audit/index.ts';
import type { MailDispatcher } from '../mail/index.ts';
import type { InvalidationBus } from '../platform/bus/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { AnyTenantTx, Database, TenantId, TenantTx } from '../platform/db/index.ts';
import type { FailureBudget } from './failure-budget.ts';
import type { PasswordHasher } from './passwords/index.ts';
import type { IdentitySettingsView } from './policy.ts';
import type { TenantIdentityTables } from './tables.ts';

/** Compromised-password screening (common list, offline filter, optional online range API). */
export interface BreachedScreen {
  check(password: string): Promise<{ breached: boolean; source: string | null; onlineUnavailable?: boolean }>;
}

export interface IdentityKeys {
  /** Encrypts TOTP seeds at rest. */
  totp: SecretBox;
  /** HMAC key for recovery codes and CSRF tokens: a stolen table alone cannot be brute-forced offline. */
  mac: Buffer;
  /** The MAC keys of SECRET_KEY_PREVIOUS: recovery codes issued before a rotation still verify. */
  previousMacs?: readonly Buffer[] | undefined;
}

export interface IdentityDeps {
  db: Database;
  clock: Clock;
  hasher: PasswordHasher;
  breached: BreachedScreen;
  /**
   * Mail leaves in the background, after the commit (`withMail`): how long the mail server takes, or
   * whether it fails, must never show in an answer (it would tell which addresses have accounts).
   */
  mailer: Pick<MailDispatcher, 'dispatch'>;
  keys: IdentityKeys;
  publicUrl: string;
  /** Tells every node's session cache about revocations (see sessions.ts). */
  bus: InvalidationBus;
  /**
   * Called once a user's disable or enable committed, so every node drops the tenant's cached permissions
   * (Access's cache; a disabled user holds none). Access is built after identity, hence a callback.
   */
  userStatusChanged?: (tenantId: string) => Promise<void>;
  /**
   * Access's answer for enabling a user again, in the enabling transaction after the user's row is
   * locked: the administrator powers their roles give back when granting such powers needs a second
   * person's approval in the tenant; empty otherwise (nothing to approve). Absent: nothing is gated.
   */
  adminPowersToApprove?: (tx: AnyTenantTx, userId: string) => Promise<readonly string[]>;
  /**
   * Access's checks of enabling a user again: it gives back nothing the caller lacks (403
   * `permission_not_held`), and an operator's enable runs only `approved` (lasting access; 409
   * `approval_now_required`). Prepared before the enabling transaction opens (the caller's holdings),
   * run in it once the user's row is locked. Absent: not checked.
   */
  enableChecker?: (
    tenantId: string,
    ctx: ActionContext,
    approved: boolean,
  ) => Promise<(tx: AnyTenantTx, userId: string) => Promise<void>>;
  /**
   * Access's answer for a change of the identity settings, in the changing transaction with the settings
   * row locked: the approvers' summary of the first weakening of `current` by `next` that needs a second
   * person's approval in the tenant; undefined otherwise (nothing to approve). Absent: nothing is gated.
   */
  settingsChangeToApprove?: (
    tx: AnyTenantTx,
    current: IdentitySettingsView,
    next: IdentitySettingsView,
  ) => Promise<string | undefined>;
  /**
   * Access's bus topic of permission changes (the message is the tenant's id). A role grant can make 2FA
   * required of a signed-in user, so the session cache drops the tenant's sessions on it.
   */
  permissionsTopic?: string;
  /** Failures of work that must not fail the request that caused it (a bus publish after commit). */
  onBackgroundError?: (error: unknown) => void;
  /** Failed sign-ins per client address, on the shared store (Protect); a per-process one when absent. */
  failedSignIns?: FailureBudget;
}

/** The dependencies as createIdentityService completes them: one failed-attempt budget for every flow. */
export interface ServiceDeps extends IdentityDeps {
  failedSignIns: FailureBudget;
}

export interface TenantRef {
  id: TenantId;
  slug: string;
}

export type Tx = TenantTx<TenantIdentityTables>;

const afterCommitQueues = new WeakMap<object, Array<() => void | Promise<void>>>();

/**
 * A tenant-scoped transaction. Work registered with afterCommit runs once it has committed (and not at
 * all when it rolls back), and is waited for before this returns: telling other nodes about a change
 * they could otherwise act on too early, before the changing request answers.
 */
export async function inTenant<R>(
  deps: Pick<IdentityDeps, 'db'>,
  tenant: TenantRef,
  fn: (tx: Tx) => Promise<R>,
): Promise<R> {
  const queue: Array<() => void | Promise<void>> = [];
  const result = await deps.db.withTenant<TenantIdentityTables, R>(tenant.id, (tx) => {
    afterCommitQueues.set(tx, queue);
    return fn(tx);
  });
  for (const run of queue) await run();
  return result;
}

/** Runs `run` after the transaction commits. Only for transactions opened by inTenant. */
export function afterCommit(tx: Tx, run: () => void | Promise<void>): void {
  const queue = afterCommitQueues.get(tx);
  if (!queue) throw new Error('afterCommit needs a transaction opened by inTenant');
  queue.push(run);
}

/** Audits a tenant event in the caller's transaction. */
export const audit = (
  deps: Pick<IdentityDeps, 'clock'>,
  tx: Tx,
  tenant: TenantRef,
  ctx: ActionContext,
  event: AuditInput,
) => recordAuditEvent<TenantIdentityTables>(tx, deps.clock, ctx, { ...event, tenantId: tenant.id });

/** Audits several tenant events in the caller's transaction, in one append (one INSERT): bulk paths. */
export const auditMany = (
  deps: Pick<IdentityDeps, 'clock'>,
  tx: Tx,
  tenant: TenantRef,
  ctx: ActionContext,
  events: AuditInput[],
) =>
  recordAuditEvents<TenantIdentityTables>(
    tx,
    deps.clock,
    ctx,
    events.map((event) => ({ ...event, tenantId: tenant.id })),
  );
