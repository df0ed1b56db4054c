/**
 * Alert deliveries go to the chain's channels at send time (src/audit/alert-channels.ts). Suites that
 * queue deliveries by hand set the chain's settings with this, as `PUT alert-settings` would store them.
 */
import { sql } from 'kysely';
import { inChain } from '../src/audit/store.ts';
import type { Database } from '../src/platform/db/index.ts';

export interface AlertChannels {
  emails: string[];
  webhookUrl: string | null;
  /** The webhook's secret, sealed for the chain (alertSecretPurpose). */
  secretSealed: string | null;
}

/** Replaces the chain's alert channels (its settings row, created with default rules when missing). */
export function setAlertChannels(db: Database, tenantId: string | null, channels: AlertChannels) {
  return inChain(db, tenantId, async (tx) => {
    const values = sql`${sql.val(channels.emails)}::text[], ${channels.webhookUrl}, ${channels.secretSealed}, now()`;
    const chain = tenantId === null ? sql`tenant_id IS NULL` : sql`tenant_id = ${tenantId}`;
    const updated = await sql`UPDATE audit_alert_settings
      SET (emails, webhook_url, webhook_secret_sealed, updated_at) = (${values}) WHERE ${chain}`.execute(tx);
    if (updated.numAffectedRows === 0n) {
      await sql`INSERT INTO audit_alert_settings (tenant_id, emails, webhook_url, webhook_secret_sealed, updated_at)
        VALUES (${tenantId}, ${values})`.execute(tx);
    }
  });
}
