import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, TxGuard } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import type { CriticalActions } from './critical.ts';
import { ownThreshold } from './elevation-rules.ts';
import { accessError } from './errors.ts';
import { inTenant, type Tx } from './tables.ts';

export interface AccessSettings {
  /** Critical actions that need a second person's approval in this tenant. */
  fourEyesActions: string[];
  /** How long a four-eyes request waits for a decision, and an approval for its execution. */
  approvalTtlMinutes: number;
  /** Who approves operators' elevation requests for this tenant. */
  elevationApprover: 'operator' | 'tenant';
  /** Approvals needed per elevated role (1 when a role is not named). */
  elevationThresholds: Record<string, number>;
}

const defaultSettings = (critical: CriticalActions): AccessSettings => ({
  fourEyesActions: critical.defaults(),
  approvalTtlMinutes: 1440,
  elevationApprover: 'operator',
  elevationThresholds: {},
});

/**
 * The tenant's settings; `lock` holds the row until the transaction ends: `true` FOR UPDATE (a change's
 * "before"), `'share'` FOR SHARE (a decision that must not race a change, which waits for it).
 */
export async function loadAccessSettings(
  tx: Tx,
  critical: CriticalActions,
  lock: boolean | 'share' = false,
): Promise<AccessSettings> {
  const select = tx.selectFrom('access_settings').selectAll();
  const locked = lock === 'share' ? select.forShare() : lock ? select.forUpdate() : select;
  const row = await locked.executeTakeFirst();
  if (!row) return defaultSettings(critical);
  const thresholds = row.elevation_thresholds;
  return {
    fourEyesActions: row.four_eyes_actions,
    approvalTtlMinutes: row.approval_ttl_minutes,
    elevationApprover: row.elevation_approver,
    elevationThresholds: typeof thresholds === 'string' ? JSON.parse(thresholds) : thresholds,
  };
}

/** The four-eyes action of weakening these settings (`access.four-eyes.reduce`, wired in settings-actions.ts). */
export const REDUCE_FOUR_EYES = 'access.four-eyes.reduce';

/**
 * What changing the settings from `current` to `next` stops requiring, each as approvers read it; empty
 * when nothing is weakened. Asked by the route's gate before the write, and again by the write against
 * the settings as it locked them.
 */
export function weakenedApprovals(current: AccessSettings, next: AccessSettings): string[] {
  const weakened = current.fourEyesActions
    .filter((a) => !next.fourEyesActions.includes(a))
    .map((a) => `approval for ${a}`);
  // Handing elevation approval from the tenant to operators, or needing fewer approvals, weakens
  // segregation of duties just as much.
  if (current.elevationApprover === 'tenant' && next.elevationApprover === 'operator') {
    weakened.push('tenant approval of elevations');
  }
  for (const [role, needed] of Object.entries(current.elevationThresholds)) {
    if ((ownThreshold(next.elevationThresholds, role) ?? 1) < needed)
      weakened.push(`${needed} approvals for ${role}`);
  }
  // A longer TTL keeps approvals (and requests waiting for one) usable for longer.
  if (next.approvalTtlMinutes > current.approvalTtlMinutes) {
    weakened.push(
      `approvals used within ${current.approvalTtlMinutes} minutes (asked: ${next.approvalTtlMinutes})`,
    );
  }
  return weakened;
}

export const reductionSummary = (weakened: readonly string[]) => `Stop requiring: ${weakened.join(', ')}`;

/**
 * Security review: the gate decides before the write, against the settings it read then. If A adds an
 * action to the list and B sends the list as it read it before A committed, B's gate sees no change and
 * B's write took A's addition off unapproved. So an unapproved change by a person decides again here,
 * against the row this transaction locked FOR UPDATE (a racing change waits, or has committed), with the
 * tenant's list from that same row. The platform's own calls (system actor) and approved runs (which pass
 * their guard, and run only on the settings their approver saw) are not gated.
 */
function refuseUnapprovedReduction(
  ctx: ActionContext,
  guard: TxGuard | undefined,
  locked: AccessSettings,
  next: AccessSettings,
): void {
  if (guard || ctx.actor.type === 'system' || !locked.fourEyesActions.includes(REDUCE_FOUR_EYES)) return;
  const weakened = weakenedApprovals(locked, next);
  if (weakened.length === 0) return;
  throw accessError(
    'approval_now_required',
    `The access settings changed while this request was checked; against them it needs a second ` +
      `person's approval in this tenant (${reductionSummary(weakened)}). Nothing was changed: send the ` +
      'request again to ask for it.',
  );
}

// Audit details are flat and their strings at most 2,048 characters: lists and maps become one short line.
const MAX_DETAIL = 2048;
function listDetail(items: readonly string[]): string {
  const text = items.join(' ');
  return text.length <= MAX_DETAIL ? text : `${text.slice(0, MAX_DETAIL - 40)} ... (${items.length} in all)`;
}
const thresholdsDetail = (thresholds: Record<string, number>) =>
  listDetail(
    Object.keys(thresholds)
      .sort()
      .map((role) => `${role}=${thresholds[role]}`),
  );

/** Old and new values of every setting, so the trail shows what a change did. */
function changeDetails(before: AccessSettings, after: AccessSettings) {
  return {
    fourEyesActions: listDetail(after.fourEyesActions),
    fourEyesActionsBefore: listDetail([...before.fourEyesActions].sort()),
    approvalTtlMinutes: after.approvalTtlMinutes,
    approvalTtlMinutesBefore: before.approvalTtlMinutes,
    elevationApprover: after.elevationApprover,
    elevationApproverBefore: before.elevationApprover,
    elevationThresholds: thresholdsDetail(after.elevationThresholds),
    elevationThresholdsBefore: thresholdsDetail(before.elevationThresholds),
  };
}

const rowOf = (settings: AccessSettings, now: Date) => ({
  four_eyes_actions: [...new Set(settings.fourEyesActions)].sort(),
  approval_ttl_minutes: settings.approvalTtlMinutes,
  elevation_approver: settings.elevationApprover,
  elevation_thresholds: JSON.stringify(settings.elevationThresholds),
  updated_at: now,
});

export function createAccessSettingsService(deps: { db: Database; clock: Clock; critical: CriticalActions }) {
  const { db, clock, critical } = deps;
  return {
    get: (tenantId: string) => inTenant(db, tenantId, (tx) => loadAccessSettings(tx, critical)),

    /**
     * Replaces the tenant's access settings. Weakening them is itself a four-eyes action
     * (`access.four-eyes.reduce`), gated on the route like the others and decided again here on the
     * locked row; an approved change passes the approval's `guard`, run first in this transaction.
     */
    update: (tenantId: string, ctx: ActionContext, next: AccessSettings, guard?: TxGuard) =>
      inTenant(db, tenantId, async (tx) => {
        await guard?.(tx);
        for (const action of next.fourEyesActions) {
          if (!critical.isKnown(action)) {
            throw accessError('unknown_action', `"${action}" is not a critical action Rampart knows.`);
          }
        }
        // A row to lock, so the "before" recorded is the one this change replaces, even when two race.
        await tx
          .insertInto('access_settings')
          .values({ tenant_id: tenantId, ...rowOf(defaultSettings(critical), clock.now()) })
          .onConflict((oc) => oc.column('tenant_id').doNothing())
          .execute();
        const before = await loadAccessSettings(tx, critical, true);
        // The only row this takes (lock order, docs/access.md); a refusal rolls back: nothing changed.
        refuseUnapprovedReduction(ctx, guard, before, next);
        const values = rowOf(next, clock.now());
        await tx.updateTable('access_settings').set(values).where('tenant_id', '=', tenantId).execute();
        const after = await loadAccessSettings(tx, critical);
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.settings.updated',
          outcome: 'success',
          target: { type: 'tenant', id: tenantId },
          details: changeDetails(before, after),
        });
        return after;
      }),
  };
}

export type AccessSettingsService = ReturnType<typeof createAccessSettingsService>;
