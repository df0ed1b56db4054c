import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import { type AnyTenantTx, asTenantId, type Database, type TxGuard } from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import { recordAuditEvent } from './record.ts';
import type { AuditTables } from './tables.ts';

/** The shortest retention a tenant may set; the database enforces the same floor (migration 0034). */
export const MIN_RETENTION_DAYS = 30;
export const MAX_RETENTION_DAYS = 36_500;

export interface RetentionView {
  days: number;
  /** True when the tenant has not set its own and the server's default applies. */
  isDefault: boolean;
}

export interface RetentionDeps {
  db: Database;
  clock: Clock;
  /** Days a tenant keeps events when it has not set its own (AUDIT_RETENTION_DAYS). */
  defaultDays: number;
  /** Days the platform chain keeps events (AUDIT_PLATFORM_RETENTION_DAYS). */
  platformDays: number;
}

/** Each chain's retention: a tenant's own setting (tenant admins change it) or the server's defaults. */
export function createRetentionService(deps: RetentionDeps) {
  const { db, clock } = deps;

  async function get(tenantId: string): Promise<RetentionView> {
    return db.withTenant<AuditTables, RetentionView>(asTenantId(tenantId), async (tx) => {
      const { rows } = await sql<{ days: number }>`SELECT days FROM audit_retention`.execute(tx);
      const days = rows[0]?.days;
      return days === undefined ? { days: deps.defaultDays, isDefault: true } : { days, isDefault: false };
    });
  }

  /** The tenant's own setting, locked until the caller's transaction commits; undefined when it has none. */
  async function lockedDays(tx: AnyTenantTx): Promise<number | undefined> {
    const { rows } = await sql<{ days: number }>`SELECT days FROM audit_retention FOR UPDATE`.execute(tx);
    return rows[0]?.days;
  }

  return {
    get,

    /** `get`, read in the caller's transaction and locked (what an approved change compares with). */
    async lockedIn(tx: AnyTenantTx): Promise<RetentionView> {
      const days = await lockedDays(tx);
      return days === undefined ? { days: deps.defaultDays, isDefault: true } : { days, isDefault: false };
    },

    /** Days the chain keeps its events: the platform's setting, or the tenant's. */
    async daysFor(tenantId: string | null): Promise<number> {
      return tenantId === null ? deps.platformDays : (await get(tenantId)).days;
    },

    /**
     * Sets the tenant's retention (audited). Shortening it is a four-eyes critical action (access): an
     * approved change passes the approval's `guard`, run first in this transaction.
     */
    async set(tenantId: string, ctx: ActionContext, days: number, guard?: TxGuard): Promise<RetentionView> {
      if (!Number.isInteger(days) || days < MIN_RETENTION_DAYS || days > MAX_RETENTION_DAYS) {
        throw auditError(
          'bad_retention',
          `Retention is a whole number of days from ${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}.`,
        );
      }
      await db.withTenant<AuditTables, void>(asTenantId(tenantId), async (tx) => {
        await guard?.(tx);
        // Read in this transaction: the "previous" recorded is the value this change replaced.
        const previous = { days: (await lockedDays(tx)) ?? deps.defaultDays };
        await sql`INSERT INTO audit_retention (tenant_id, days, updated_at)
          VALUES (${tenantId}, ${days}, ${clock.now()})
          ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at`.execute(
          tx,
        );
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId,
          action: 'audit.retention.updated',
          outcome: 'success',
          target: { type: 'tenant', id: tenantId },
          details: { days, previousDays: previous.days },
        });
      });
      return { days, isDefault: false };
    },
  };
}

export type RetentionService = ReturnType<typeof createRetentionService>;
