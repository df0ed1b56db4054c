import type { Database } from '../platform/db/index.ts';
import { readAlertSettings } from './alert-engine.ts';
import { inChain } from './store.ts';

/** A chain's alert channels as its settings name them now. */
export interface CurrentChannels {
  emails: ReadonlySet<string>;
  webhook: { url: string; secretSealed: string | null } | null;
}

/** Where a queued delivery goes when it is sent: the chain's current channel, or null (removed). */
export type Route =
  | { channel: 'email'; to: string }
  | { channel: 'webhook'; url: string; secretSealed: string | null };

const chainKey = (tenantId: string | null) => tenantId ?? 'platform';

/**
 * The current channels of each chain, read in the chain's own scope (a tenant's settings are under its
 * row-level security). A chain without a settings row has the defaults: no channels at all.
 */
export async function currentChannels(
  db: Database,
  tenantIds: readonly (string | null)[],
): Promise<Map<string, CurrentChannels>> {
  const channels = new Map<string, CurrentChannels>();
  for (const tenantId of new Set(tenantIds)) {
    const settings = await inChain(db, tenantId, (tx) => readAlertSettings(tx, tenantId));
    channels.set(chainKey(tenantId), {
      emails: new Set(settings?.emails ?? []),
      webhook: settings?.webhook_url
        ? { url: settings.webhook_url, secretSealed: settings.webhook_secret_sealed }
        : null,
    });
  }
  return channels;
}

/**
 * Routes a queued delivery by the chain's channels at send time, not at queue time: a mail address taken
 * out of the settings (someone who left) receives nothing more, and a webhook goes to the URL set now,
 * signed with its secret (a URL found compromised stops at once; one corrected after a typo receives what
 * was queued meanwhile). A removed channel routes nowhere: the delivery is dropped.
 */
export function routeOf(
  channels: ReadonlyMap<string, CurrentChannels>,
  row: { tenant_id: string | null; channel: 'webhook' | 'email'; destination: string },
): Route | null {
  const current = channels.get(chainKey(row.tenant_id));
  if (!current) return null;
  if (row.channel === 'email') {
    return current.emails.has(row.destination) ? { channel: 'email', to: row.destination } : null;
  }
  return current.webhook ? { channel: 'webhook', ...current.webhook } : null;
}
