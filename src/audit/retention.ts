import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import {
  type AnyTenantTx,
  asTenantId,
  type Database,
  type OwnerSettings,
  type TxGuard,
} from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import { recordAuditEvent } from './record.ts';
import type { AuditTables } from './tables.ts';

/** The shortest retention a tenant may set; the database enforces the same floor (migration 0034). */
export const MIN_RETENTION_DAYS = 30;
export const MAX_RETENTION_DAYS = 36_500;
/**
 * How long a shortened retention waits before pruning uses it (the database uses the same, migration
 * 0055): whoever shortens it cannot have evidence deleted at the next hourly prune.
 */
export const RETENTION_CHANGE_DELAY_DAYS = 30;
const DAY_MS = 86_400_000;
const delayMs = RETENTION_CHANGE_DELAY_DAYS * DAY_MS;

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
  /**
   * Whether shortening the tenant's retention needs a second person's approval (access: the tenant has
   * `audit.retention.shorten` on its four-eyes list). Read in the writing transaction, after the
   * retention is locked, and locked itself until it commits (FOR SHARE), so a change of the list either
   * waits for the write or is seen by it. Absent: it never does.
   */
  shorteningNeedsApproval?: (tx: AnyTenantTx, tenantId: string) => Promise<boolean>;
}

interface StoredRetention {
  days: number;
  previous_days: number | null;
  changed_at: Date | null;
}

const clampDays = (days: number) => Math.min(MAX_RETENTION_DAYS, Math.max(MIN_RETENTION_DAYS, days));

/**
 * Writes the server's default retentions where the database enforces them (migration 0082), as the
 * schema owner after every migration run: audit_prune_chain and the alert-pruning floor clamp a chain
 * without an own setting to them, so the app role cannot prune a default tenant or the platform chain
 * sooner, whatever a node's configuration says. A changed configuration applies at the next migration run.
 */
export function retentionDefaultsWriter(defaults: {
  tenantDays: number;
  platformDays: number;
}): OwnerSettings {
  return async (owner) => {
    await owner.query(
      `INSERT INTO audit_retention_defaults (only_row, tenant_days, platform_days, updated_at)
         VALUES (true, $1, $2, now())
       ON CONFLICT (only_row) DO UPDATE SET tenant_days = excluded.tenant_days,
         platform_days = excluded.platform_days, updated_at = excluded.updated_at
       WHERE (audit_retention_defaults.tenant_days, audit_retention_defaults.platform_days)
         IS DISTINCT FROM (excluded.tenant_days, excluded.platform_days)`,
      [clampDays(defaults.tenantDays), clampDays(defaults.platformDays)],
    );
  };
}

/** The default retentions the database enforces (migration 0082; written by the last migration run). */
export async function readRetentionDefaults(
  db: Database,
): Promise<{ tenantDays: number; platformDays: number }> {
  const { rows } = await db.withSystem((tx) =>
    sql<{ tenant_days: number; platform_days: number }>`SELECT tenant_days, platform_days
      FROM audit_retention_defaults`.execute(tx),
  );
  const row = rows[0];
  if (!row) throw new Error('audit_retention_defaults has no row: run rampart migrate');
  return { tenantDays: row.tenant_days, platformDays: row.platform_days };
}

/** The longest of the setting and the one it replaced while the change is younger than the delay. */
export function retentionInForce(row: StoredRetention, at: Date): number {
  const recent =
    row.previous_days !== null &&
    row.changed_at !== null &&
    row.changed_at.getTime() > at.getTime() - delayMs;
  return recent ? Math.max(row.days, row.previous_days ?? 0) : row.days;
}

/**
 * Reads the tenant's row locked until the transaction ends. While the tenant has no row (the default
 * applies) there is nothing to lock, so an advisory lock on the tenant serialises setters first: two
 * setters never decide against a value the other is about to replace.
 */
async function lockRetention(tx: AnyTenantTx, tenantId: string) {
  await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_retention'), hashtext(${tenantId}))`.execute(
    tx,
  );
  const { rows } = await sql<StoredRetention>`SELECT days, previous_days, changed_at FROM audit_retention
    FOR UPDATE`.execute(tx);
  return rows[0];
}

/** Each chain's retention: a tenant's own setting (tenant admins change it) or the server's defaults. */
export function createRetentionService(deps: RetentionDeps) {
  const { db, clock } = deps;

  /**
   * The default a tenant without an own setting has: the longer of this node's AUDIT_RETENTION_DAYS and
   * the database's (migration 0082, written by whoever migrated), which pruning is clamped to.
   */
  const defaultIn = async (tx: AnyTenantTx, tenantId: string) => {
    const { rows } = await sql<{ days: number }>`
      SELECT audit_default_retention(${tenantId}::uuid) AS days`.execute(tx);
    return Math.max(deps.defaultDays, rows[0]?.days ?? 0);
  };

  const stored = (tenantId: string) =>
    db.withTenant<AuditTables, { row: StoredRetention | undefined; defaultDays: number }>(
      asTenantId(tenantId),
      async (tx) => {
        const { rows } = await sql<StoredRetention>`SELECT days, previous_days, changed_at
          FROM audit_retention`.execute(tx);
        return { row: rows[0], defaultDays: rows[0] ? deps.defaultDays : await defaultIn(tx, tenantId) };
      },
    );

  async function get(tenantId: string): Promise<RetentionView> {
    const { row, defaultDays } = await stored(tenantId);
    return row === undefined ? { days: defaultDays, isDefault: true } : { days: row.days, isDefault: false };
  }

  return {
    get,

    /**
     * `get`, read in the caller's transaction and locked as `set` locks it (what an approved change
     * compares with; the same lock order as a concurrent `set`).
     */
    async lockedIn(tx: AnyTenantTx, tenantId: string): Promise<RetentionView> {
      const row = await lockRetention(tx, tenantId);
      return row === undefined
        ? { days: await defaultIn(tx, tenantId), isDefault: true }
        : { days: row.days, isDefault: false };
    },

    /**
     * Days pruning keeps the chain's events: the platform's setting, or the longest retention the
     * tenant had in effect during the last 30 days (a shortening takes effect 30 days after it was made).
     */
    async daysFor(tenantId: string | null): Promise<number> {
      if (tenantId === null) return deps.platformDays;
      const { row, defaultDays } = await stored(tenantId);
      return row === undefined ? defaultDays : retentionInForce(row, clock.now());
    },

    /**
     * Sets the tenant's retention (audited). Shortening it is a four-eyes critical action (access): the
     * route's gate asks for approval when it sees a shortening, but it reads the retention before this
     * write, so the write decides again on the locked row. An approved request runs with `approved` and
     * its approval's `guard`, run first in this transaction.
     */
    async set(
      tenantId: string,
      ctx: ActionContext,
      days: number,
      options: { approved?: boolean; guard?: TxGuard } = {},
    ): Promise<RetentionView> {
      if (!Number.isInteger(days) || days < MIN_RETENTION_DAYS || days > MAX_RETENTION_DAYS) {
        throw auditError(
          'bad_retention',
          `Retention is a whole number of days from ${MIN_RETENTION_DAYS} to ${MAX_RETENTION_DAYS}.`,
        );
      }
      await db.withTenant<AuditTables, void>(asTenantId(tenantId), async (tx) => {
        await options.guard?.(tx);
        const row = await lockRetention(tx, tenantId);
        const defaultDays = row ? deps.defaultDays : await defaultIn(tx, tenantId);
        const previous = row?.days ?? defaultDays;
        // Whether approval is needed is read here, under the locks, not before the transaction: a rule
        // added to the four-eyes list meanwhile is seen (or waits for this write), never bypassed.
        const needsApproval =
          days < previous &&
          !options.approved &&
          ((await deps.shorteningNeedsApproval?.(tx, tenantId)) ?? false);
        if (needsApproval) {
          // A lengthening committed after the gate looked: this is now a shortening, never run unapproved.
          throw auditError(
            'retention_changed',
            `The retention is now ${previous} days, so ${days} days would shorten it, which needs a second ` +
              'person\u2019s approval in this tenant (the retention or the four-eyes list changed while this ' +
              'request was checked). Nothing was changed; send the request again to ask for approval.',
          );
        }
        // previous_days on a first own setting: the default that applied (the database keeps its own
        // default if that is longer, migration 0082); on an update its trigger keeps the history (0055).
        await sql`INSERT INTO audit_retention (tenant_id, days, updated_at, previous_days)
          VALUES (${tenantId}, ${days}, ${clock.now()}, ${clampDays(defaultDays)})
          ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at`.execute(
          tx,
        );
        const shortened = days < (row ? retentionInForce(row, clock.now()) : defaultDays);
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId,
          action: 'audit.retention.updated',
          outcome: 'success',
          target: { type: 'tenant', id: tenantId },
          details: {
            days,
            previousDays: previous,
            // When pruning starts to use a shorter retention.
            ...(shortened ? { prunesByItFrom: new Date(clock.now().getTime() + delayMs).toISOString() } : {}),
          },
        });
      });
      return { days, isDefault: false };
    },
  };
}

export type RetentionService = ReturnType<typeof createRetentionService>;
