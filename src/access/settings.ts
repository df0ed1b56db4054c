import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, TxGuard } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import type { CriticalActions } from './critical.ts';
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
     * Replaces the tenant's access settings. Taking an action off the four-eyes list is itself a
     * four-eyes action (`access.four-eyes.reduce`), gated on the route like the others; an approved
     * change passes the approval's `guard`, run first in this transaction.
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
