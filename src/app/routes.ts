import { accessOperatorRoutes, accessTenantRoutes, networkPolicyChangeCheck } from '../access/index.ts';
import {
  alertRoutes,
  auditChainRoutes,
  auditRetentionRoutes,
  auditRoutes,
  createAuditService,
} from '../audit/index.ts';
import {
  createOperatorSignIn,
  identityApiRoutes,
  identityOperatorRoutes,
  operatorAdminRoutes,
  toTenantRef,
} from '../identity/index.ts';
import { identityPages } from '../identity/pages/index.ts';
import { createSecretBox, deriveKeys } from '../platform/crypto/keys.ts';
import type { AnyTenantTx } from '../platform/db/index.ts';
import { openApiRoute } from '../platform/http/openapi.ts';
import { tenantPolicyRoutes, wafRoutes } from '../protect/index.ts';
import { tenancyRoutes } from '../tenancy/index.ts';
import type { ActionServices } from './action-services.ts';
import type { App } from './fastify.ts';
import type { RequestPipeline } from './pipeline.ts';
import type { AppCore } from './services.ts';

/** Asked of access: do this tenant's audit exports need a second approver (then search is capped)? */
const exportAudit = { action: 'audit.export', params: {}, summary: '' };

/** Every capability's routes (encapsulated plugins), then the OpenAPI document that lists them. */
export async function registerRoutes(
  app: App,
  {
    config,
    db,
    clock,
    breached,
    dispatcher,
    rootKeys,
    protection,
    tenancy,
    identity,
    access,
    resolveTenant,
  }: AppCore,
  { retention, sinks, operatorAdmin, alerts, forgeries }: ActionServices,
  { onDenied, tenantPolicies, authorize, needsStepUp }: RequestPipeline,
) {
  app.get('/metrics', { config: { access: 'metrics' }, schema: { hide: true } }, async (_request, reply) =>
    reply.type(app.metrics.contentType).send(await app.metrics.metrics()),
  );
  await app.register(tenancyRoutes, { tenancy });
  const readCap = {
    eventsPerDay: config.auditSearchEventsPerDay,
    applies: async (tx: AnyTenantTx) => (await access.approvals.requiredIn(tx, [exportAudit])) !== undefined,
  };
  await app.register(auditRoutes, { audit: createAuditService({ db, clock, readCap }), sinks });
  await app.register(auditChainRoutes, { forgeries });
  await app.register(auditRetentionRoutes, { retention });
  await app.register(alertRoutes, { alerts });
  await app.register(accessTenantRoutes, {
    access,
    holds: authorize,
    needsStepUp,
  });
  await app.register(accessOperatorRoutes, { access, resolveTenant, clock });
  await app.register(identityApiRoutes, { identity, resolveTenant, needsStepUp });
  await app.register(tenantPolicyRoutes, {
    policies: tenantPolicies,
    beforeChange: networkPolicyChangeCheck(needsStepUp),
  });
  await app.register(wafRoutes, { protection });
  await app.register(identityOperatorRoutes, {
    identity,
    resolveTenant,
    mailer: dispatcher,
    operatorSignIn: createOperatorSignIn({
      db,
      clock,
      hasher: identity.deps.hasher,
      totpBox: createSecretBox(deriveKeys(rootKeys, 'operator-totp')),
      publicUrl: config.publicUrl,
      breached,
      failedSignIns: identity.deps.failedSignIns,
    }),
  });
  await app.register(operatorAdminRoutes, {
    admin: operatorAdmin,
  });
  await app.register(identityPages, {
    identity,
    findTenant: async (slug) => {
      const tenant = await tenancy.requireActive(slug);
      return { ref: toTenantRef(tenant), name: tenant.displayName };
    },
    publicUrl: config.publicUrl,
    onDenied,
  });
  await app.register(openApiRoute);
}
