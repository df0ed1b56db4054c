import type { ActionContext } from '../platform/context.ts';
import type { AnyTenantTx, TxGuard } from '../platform/db/index.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { lockOverThreshold } from './lockout.ts';
import { type IdentitySettings, type IdentitySettingsView, policyOf, weakens } from './policy.ts';
import { sessionsChanged } from './session-cache.ts';

export type { IdentitySettingsView };

export const toView = (s: IdentitySettings): IdentitySettingsView => ({
  passwordPolicy: policyOf(s),
  lockout: lockoutOf(s),
  selfSignup: s.self_signup,
  mfaRequired: s.mfa_required,
  session: { idleMinutes: s.session_idle_minutes, absoluteHours: s.session_absolute_hours },
});

/** The tenant's settings row, created with defaults on first use; `lock`: FOR UPDATE until commit. */
export async function loadSettings(tx: Tx, tenantId: string, lock = false): Promise<IdentitySettings> {
  const query = tx.selectFrom('identity_settings').selectAll();
  const locked = lock ? query.forUpdate() : query;
  const row = await locked.executeTakeFirst();
  if (row) return row;
  const created = await tx
    .insertInto('identity_settings')
    .values({ tenant_id: tenantId })
    .onConflict((oc) => oc.column('tenant_id').doNothing())
    .returningAll()
    .executeTakeFirst();
  // Another transaction created it first (and committed: the insert waited for it): read theirs.
  return created ?? locked.executeTakeFirstOrThrow();
}

/**
 * Security review: two PUTs sent together slipped a weakening through unapproved (minimum length 12:
 * one sets 14, a strengthening; the other sets 12, no change from what its gate read; committed second,
 * it lowered 14 to 12). The four-eyes gate decides before the write, so an unapproved change by a person
 * decides again here, against the settings as this transaction locked them, with Access's list read FOR
 * SHARE. The platform's own calls (system actor) and approved runs (which pass their guard, and run only
 * on the settings their approver saw) are not gated.
 */
async function refuseUnapprovedWeakening(
  deps: IdentityDeps,
  tx: Tx,
  ctx: ActionContext,
  guard: TxGuard | undefined,
  current: IdentitySettingsView,
  next: IdentitySettingsView,
): Promise<void> {
  if (guard || ctx.actor.type === 'system' || !deps.settingsChangeToApprove) return;
  const summary = await deps.settingsChangeToApprove(tx, current, next);
  if (summary === undefined) return;
  throw identityError(
    'approval_now_required',
    `The settings changed while this request was checked; against them it needs a second person's ` +
      `approval in this tenant (${summary}). Nothing was changed: send the request again to ask for it.`,
  );
}

export function createSettingsService(deps: IdentityDeps) {
  return {
    get: (tenant: TenantRef) =>
      inTenant(deps, tenant, async (tx) => toView(await loadSettings(tx, tenant.id))),

    /**
     * The settings as `get` shows them, read in the caller's transaction and locked until it commits:
     * what an approved change compares with, so no other change can land between that and the write.
     */
    lockedIn: async (tx: AnyTenantTx, tenant: TenantRef) =>
      toView(await loadSettings(tx as Tx, tenant.id, true)),

    /**
     * Admin-only (the route checks). Weakening the settings is four-eyes (gated on the route, and decided
     * again here on the locked row); an approved change passes the approval's `guard`, run first in this
     * transaction.
     */
    update: (tenant: TenantRef, ctx: ActionContext, next: IdentitySettingsView, guard?: TxGuard) =>
      inTenant(deps, tenant, async (tx) => {
        await guard?.(tx);
        // Locked until commit: a change racing this one waits, and what is weakened is decided on it.
        const current = await loadSettings(tx, tenant.id, true);
        const p = next.passwordPolicy;
        const updated = await tx
          .updateTable('identity_settings')
          .set({
            min_length: p.minLength,
            max_length: p.maxLength,
            require_lower: p.requireLower,
            require_upper: p.requireUpper,
            require_digit: p.requireDigit,
            require_special: p.requireSpecial,
            forbid_personal: p.forbidPersonal,
            history_count: p.historyCount,
            max_age_days: p.maxAgeDays,
            lockout_threshold: next.lockout.threshold,
            lockout_mode: next.lockout.mode,
            lockout_base_seconds: next.lockout.baseSeconds,
            self_signup: next.selfSignup,
            mfa_required: next.mfaRequired,
            session_idle_minutes: next.session.idleMinutes,
            session_absolute_hours: next.session.absoluteHours,
            updated_at: deps.clock.now(),
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        // Cached sessions carry the idle limit: every node re-reads them.
        sessionsChanged(deps, tx, `tenant:${tenant.id}`);
        // A lowered threshold leaves users with more failures than it and no lock time: sign-in refuses
        // them, and nothing would ever let them try again. They get the lock the threshold means now.
        const lockedNow =
          updated.lockout_threshold < current.lockout_threshold
            ? await lockOverThreshold(tx, updated, deps.clock.now(), null)
            : [];
        // Decided after the users' rows above and before Access's (lock order, docs/access.md); a refusal
        // rolls this transaction back whole: nothing was changed.
        await refuseUnapprovedWeakening(deps, tx, ctx, guard, toView(current), next);
        for (const userId of lockedNow) {
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.user.locked',
            outcome: 'success',
            target: { type: 'user', id: userId },
            details: { reason: 'threshold_lowered' },
          });
        }
        const weakened = weakenedParts(toView(current), toView(updated));
        const mfaWeakened = rank(updated.mfa_required) < rank(current.mfa_required);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.settings.updated',
          outcome: 'success',
          target: { type: 'tenant', id: tenant.id },
          details: {
            policyWeakened: weakened.length > 0,
            weakened: weakened.join(' '),
            mfaEnforcementWeakened: mfaWeakened,
          },
        });
        if (weakened.length > 0) {
          // The Access capability's four-eyes mechanism consumes this event to gate the change.
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.policy.weakened',
            outcome: 'success',
            target: { type: 'tenant', id: tenant.id },
            details: { weakened: weakened.join(' ') },
          });
        }
        return toView(updated);
      }),
  };
}

const rank = (m: 'off' | 'staff' | 'all') => ({ off: 0, staff: 1, all: 2 })[m];

const lockoutOf = (s: IdentitySettings): IdentitySettingsView['lockout'] => ({
  threshold: s.lockout_threshold,
  mode: s.lockout_mode,
  baseSeconds: s.lockout_base_seconds,
});

/**
 * True when `next` lets more password guesses through than `current`: a higher threshold, locks that
 * lift by themselves instead of waiting for an admin, or shorter locks. Lockout is part of the password
 * policy the fact sheet states ("lockout after 5 invalid attempts"), so it is gated with it.
 */
export function lockoutWeakens(
  current: IdentitySettingsView['lockout'],
  next: IdentitySettingsView['lockout'],
): boolean {
  return (
    next.threshold > current.threshold ||
    (current.mode === 'admin' && next.mode === 'temporary') ||
    (next.mode === 'temporary' && next.baseSeconds < current.baseSeconds)
  );
}

/** A part of the settings that can be made weaker (named in audit details and approval summaries). */
export type WeakenedPart = 'passwordPolicy' | 'lockout' | 'selfSignup' | 'sessionIdle' | 'sessionAbsolute';

/**
 * The parts `next` makes weaker than `current`, in a fixed order; empty when none. Each is gated by
 * four-eyes as a weakening of the password policy (`identity.password-policy.weaken`): any password
 * rule made looser; the lockout letting more guesses through (`lockoutWeakens`); self sign-up turned
 * on (anyone can make themselves an account); a longer idle or absolute session limit (a stolen or
 * forgotten session stays usable for longer). 2FA enforcement has its own action.
 */
export function weakenedParts(current: IdentitySettingsView, next: IdentitySettingsView): WeakenedPart[] {
  const parts: [WeakenedPart, boolean][] = [
    ['passwordPolicy', weakens(current.passwordPolicy, next.passwordPolicy)],
    ['lockout', lockoutWeakens(current.lockout, next.lockout)],
    ['selfSignup', next.selfSignup && !current.selfSignup],
    ['sessionIdle', next.session.idleMinutes > current.session.idleMinutes],
    ['sessionAbsolute', next.session.absoluteHours > current.session.absoluteHours],
  ];
  return parts.filter(([, weaker]) => weaker).map(([part]) => part);
}
