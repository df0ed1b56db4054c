import {
  refuseOperatorAlertAcknowledgement,
  refuseOperatorAlertChange,
  SHORTEN_RETENTION,
  wireCriticalActions,
  wireElevatedGrants,
  wirePlatformActions,
} from '../access/index.ts';
import {
  checkpointSigner,
  createAlertService,
  createForgeryService,
  createRetentionService,
  createSinkService,
} from '../audit/index.ts';
import { createOperatorAdmin, normaliseEmail } from '../identity/index.ts';
import { createSecretBox, deriveKeys } from '../platform/crypto/keys.ts';
import type { AppCore } from './services.ts';

/** Asked of access: does this tenant need a second approver to shorten its audit retention? */
const shortenRetention = { action: SHORTEN_RETENTION, params: {}, summary: '' };

/**
 * The services that carry out critical actions, registered with Access's registry: an approved
 * four-eyes request's execution runs them (docs/access.md). The jobs and routes use them too.
 */
export function wireActionServices({
  config,
  db,
  clock,
  invalidation,
  onBackgroundError,
  rootKey,
  rootKeys,
  identity,
  access,
  protection,
}: AppCore) {
  const retention = createRetentionService({
    db,
    clock,
    defaultDays: config.auditRetentionDays,
    platformDays: config.auditPlatformRetentionDays,
    shorteningNeedsApproval: async (tx) =>
      (await access.approvals.requiredIn(tx, [shortenRetention])) !== undefined,
  });
  wireCriticalActions(access.critical, {
    identity,
    roles: access.roles,
    settings: access.settings,
    retention,
    clock,
  });
  wireElevatedGrants(access.critical, { identity, roles: access.roles });
  const auditSinkBox = createSecretBox(deriveKeys(rootKeys, 'audit-sinks'));
  // Recording its key, it endorses the keys of SECRET_KEY_PREVIOUS (their checkpoints stay trusted).
  const auditSigner = checkpointSigner(rootKey, rootKeys.slice(1));
  const alertBox = createSecretBox(deriveKeys(rootKeys, 'audit-alerts'));
  // Adding a SIEM sink is a platform four-eyes action: only an approved request's execution adds one.
  const sinks = createSinkService({ db, clock, box: auditSinkBox, maxBacklog: config.auditSinkMaxBacklog });
  const operatorAdmin = createOperatorAdmin({
    db,
    clock,
    bus: invalidation,
    onBackgroundError,
    endElevations: (ctx, operatorId) => access.elevations.endAllOf(ctx, operatorId),
  });
  const alerts = createAlertService({
    db,
    clock,
    box: alertBox,
    normaliseEmail,
    checkTenantChange: refuseOperatorAlertChange,
    tenantWebhookRefusal: (url) => protection.outbound.precheck(url, 'tenant'),
    checkTenantAcknowledgement: refuseOperatorAlertAcknowledgement,
  });
  // Acknowledging a forged audit event is one too: only an approved request's execution stores one.
  const forgeries = createForgeryService({ db, clock, signer: auditSigner });
  wirePlatformActions(access.critical, { sinks, operators: operatorAdmin, alerts, forgeries });
  return { retention, auditSinkBox, auditSigner, alertBox, sinks, operatorAdmin, alerts, forgeries };
}

export type ActionServices = ReturnType<typeof wireActionServices>;
