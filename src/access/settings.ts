import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
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

export async function loadAccessSettings(tx: Tx, critical: CriticalActions): Promise<AccessSettings> {
  const row = await tx.selectFrom('access_settings').selectAll().executeTakeFirst();
  if (!row) {
    return {
      fourEyesActions: critical.defaults(),
      approvalTtlMinutes: 1440,
      elevationApprover: 'operator',
      elevationThresholds: {},
    };
  }
  const thresholds = row.elevation_thresholds;
  return {
    fourEyesActions: row.four_eyes_actions,
    approvalTtlMinutes: row.approval_ttl_minutes,
    elevationApprover: row.elevation_approver,
    elevationThresholds: typeof thresholds === 'string' ? JSON.parse(thresholds) : thresholds,
  };
}

export function createAccessSettingsService(deps: { db: Database; clock: Clock; critical: CriticalActions }) {
  const { db, clock, critical } = deps;
  return {
    get: (tenantId: string) => inTenant(db, tenantId, (tx) => loadAccessSettings(tx, critical)),

    /**
     * Replaces the tenant's access settings. Taking an action off the four-eyes list is itself a
     * four-eyes action (`access.four-eyes.reduce`), gated on the route like the others.
     */
    update: (tenantId: string, ctx: ActionContext, next: AccessSettings) =>
      inTenant(db, tenantId, async (tx) => {
        for (const action of next.fourEyesActions) {
          if (!critical.isKnown(action)) {
            throw accessError('unknown_action', `"${action}" is not a critical action Rampart knows.`);
          }
        }
        const values = {
          four_eyes_actions: [...new Set(next.fourEyesActions)].sort(),
          approval_ttl_minutes: next.approvalTtlMinutes,
          elevation_approver: next.elevationApprover,
          elevation_thresholds: JSON.stringify(next.elevationThresholds),
          updated_at: clock.now(),
        };
        await tx
          .insertInto('access_settings')
          .values({ tenant_id: tenantId, ...values })
          .onConflict((oc) => oc.column('tenant_id').doUpdateSet(values))
          .execute();
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.settings.updated',
          outcome: 'success',
          target: { type: 'tenant', id: tenantId },
          details: {
            fourEyesActions: values.four_eyes_actions.join(' '),
            elevationApprover: next.elevationApprover,
          },
        });
        return loadAccessSettings(tx, critical);
      }),
  };
}

export type AccessSettingsService = ReturnType<typeof createAccessSettingsService>;
