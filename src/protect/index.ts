/** Protect: TLS policy, security headers, rate limits, IP reputation, the outbound guard. */
import { readMigrations } from '../platform/db/index.ts';

export { registerProtectCommands } from './cli.ts';
export { API_CSP, securityHeaders } from './headers.ts';
export {
  createOutboundClient,
  type OutboundClient,
  type OutboundRefusal,
  OutboundRefusedError,
  outboundPolicyFrom,
} from './outbound/index.ts';
export { protectPlugin } from './plugin.ts';
export { createProtection, type Protection } from './protection.ts';
export type { FailedSignInLimiter } from './rate-limit/limiters.ts';
export { defaultLimits, type RouteClass } from './rate-limit/policy.ts';
export { tenantPolicyPlugin } from './tenant-policy/plugin.ts';
export { tenantPolicyRoutes } from './tenant-policy/routes.ts';
export { createTenantPolicyService, type TenantPolicyService } from './tenant-policy/service.ts';
export { TLS12_ECDSA_SUITES, TLS12_RSA_SUITES, tlsOptions } from './tls.ts';
export { wafRoutes } from './waf.ts';

export const protectMigrations = readMigrations(new URL('./migrations/', import.meta.url));
