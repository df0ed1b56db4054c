import {
  auditJobsPlugin,
  createAlertDelivery,
  createForwarder,
  createSyslogTransport,
  loadTrustedKeys,
  pruneAllChains,
  trustedKeys,
} from '../audit/index.ts';
import { toTenantRef, wrapLegacyHashesJob } from '../identity/index.ts';
import { systemContext } from '../platform/context.ts';
import type { ActionServices } from './action-services.ts';
import type { App } from './fastify.ts';
import type { AppCore } from './services.ts';

/**
 * What runs in the background on every node: legacy hash wrapping, and audit's checkpoints, forwarding,
 * pruning and alerts.
 */
export async function registerBackgroundJobs(
  app: App,
  { config, db, clock, mailer, protection, tenancy, identity, services }: AppCore,
  { retention, auditSinkBox, auditSigner, alertBox }: ActionServices,
) {
  async function* allTenantIds() {
    for (let after: string | null = null; ; ) {
      const page = await tenancy.list(after, 500);
      for (const t of page.items) yield t.id;
      if (!page.more) return;
      after = page.items.at(-1)?.slug ?? null;
    }
  }
  // Fast legacy password hashes (imported salted SHA-256, cheap bcrypt) wrapped in argon2id at low
  // priority, a few per tenant every LEGACY_HASH_WRAP_SECONDS (docs/identity.md, "Import").
  await app.register(wrapLegacyHashesJob, {
    identity: identity.deps,
    async *tenants() {
      for (let after: string | null = null; ; ) {
        const page = await tenancy.list(after, 500);
        for (const t of page.items) yield toTenantRef(t);
        if (!page.more) return;
        after = page.items.at(-1)?.slug ?? null;
      }
    },
    everyMs: config.legacyHashWrapSeconds * 1000,
  });
  await app.register(auditJobsPlugin, {
    db,
    clock,
    signer: auditSigner,
    checkpointEveryMs: config.auditCheckpointSeconds * 1000,
    // Through the egress guard like every outbound request (OUTBOUND_ALLOW_PRIVATE admits an internal SIEM).
    forwarder: createForwarder({
      db,
      clock,
      box: auditSinkBox,
      send: async (r) => protection.outbound.request('siem', r.url, r),
      // Syslog over TLS: a raw connection, vetted by the same egress guard (allowlist, addresses).
      syslogEnterpriseNumber: config.syslogEnterpriseNumber,
      sendSyslog: createSyslogTransport({
        guard: (host) => protection.outbound.socketGuard('siem', host),
        timeoutMs: config.outboundTimeoutMs,
      }),
      maxBacklog: config.auditSinkMaxBacklog,
    }),
    forwardEveryMs: 1000,
    tenantIds: allTenantIds,
    // Retention: each chain pruned to its retention, up to a signed checkpoint (docs/audit.md).
    pruning: {
      everyMs: config.auditPruneSeconds * 1000,
      run: () =>
        pruneAllChains(
          {
            db,
            clock,
            keys: trustedKeys([auditSigner.publicKey]),
            // After a SECRET_KEY rotation: the keys recorded before it too (docs/audit.md, "Key rotation").
            loadKeys: () => loadTrustedKeys(db, auditSigner),
            daysFor: (id) => retention.daysFor(id),
            tenantIds: allTenantIds,
          },
          systemContext('audit-retention'),
        ),
    },
    alerts: services.alerts,
    alertDelivery: createAlertDelivery({
      db,
      clock,
      box: alertBox,
      send: async (r) => protection.outbound.request('alerts', r.url, r),
      // Straight to the transport: alert delivery keeps its own durable retries and needs the error.
      sendMail: (mail) => mailer.send(mail),
      maxAgeMs: config.auditAlertDeliveryMaxHours * 3_600_000,
    }),
    alertEveryMs: 1000,
    alertSweepEveryMs: 60_000,
  });
}
