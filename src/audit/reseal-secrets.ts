import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import { noneResealed, type ResealCount, resealCounted } from '../platform/crypto/reseal.ts';
import type { Database } from '../platform/db/index.ts';
import { alertSecretPurpose } from './alert-delivery.ts';
import { recordAuditEvent } from './record.ts';
import { chainFilter, inChain } from './store.ts';
import type { AuditTables } from './tables.ts';

interface Deps {
  db: Database;
  clock: Clock;
}

/**
 * Seals the signing secrets of the SIEM sinks under the current SECRET_KEY (after a rotation). Sinks are
 * the platform's (no tenant column): the system handle; one `audit.sink.secrets_resealed` event.
 */
export function resealSinkSecrets(deps: Deps, box: SecretBox, ctx: ActionContext): Promise<ResealCount> {
  const count = noneResealed();
  return deps.db.withSystem<AuditTables, ResealCount>(async (tx) => {
    const { rows } = await sql<{
      id: string;
      secret_sealed: string;
    }>`SELECT id, secret_sealed FROM audit_sinks
      WHERE secret_sealed IS NOT NULL ORDER BY id FOR UPDATE`.execute(tx);
    for (const row of rows) {
      const next = resealCounted(box, row.secret_sealed, `audit-sink:${row.id}`, count);
      if (next !== null) {
        await sql`UPDATE audit_sinks SET secret_sealed = ${next}
          WHERE id = ${row.id} AND secret_sealed = ${row.secret_sealed}`.execute(tx);
      }
    }
    if (count.resealed > 0) {
      await recordAuditEvent<AuditTables>(tx, deps.clock, ctx, {
        tenantId: null,
        action: 'audit.sink.secrets_resealed',
        outcome: 'success',
        details: { count: count.resealed },
      });
    }
    return count;
  });
}

/**
 * Seals one chain's alert webhook secret under the current SECRET_KEY: its settings row, in the chain's
 * own scope (the tenant's transaction under RLS, or the system handle for the platform's row).
 */
export function resealAlertSecret(
  deps: Deps,
  box: SecretBox,
  tenantId: string | null,
  ctx: ActionContext,
  count: ResealCount = noneResealed(),
): Promise<ResealCount> {
  return inChain(deps.db, tenantId, async (tx) => {
    const { rows } = await sql<{ sealed: string }>`SELECT webhook_secret_sealed AS sealed
      FROM audit_alert_settings WHERE ${chainFilter(tenantId)} AND webhook_secret_sealed IS NOT NULL
      FOR UPDATE`.execute(tx);
    const row = rows[0];
    const next = row ? resealCounted(box, row.sealed, alertSecretPurpose(tenantId), count) : null;
    if (row && next !== null) {
      await sql`UPDATE audit_alert_settings SET webhook_secret_sealed = ${next}
        WHERE ${chainFilter(tenantId)} AND webhook_secret_sealed = ${row.sealed}`.execute(tx);
      await recordAuditEvent<AuditTables>(tx, deps.clock, ctx, {
        tenantId,
        action: 'audit.alert.secret_resealed',
        outcome: 'success',
      });
    }
    return count;
  });
}
