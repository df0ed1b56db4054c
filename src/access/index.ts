import { readMigrations } from '../platform/db/index.ts';

export { wireCriticalActions } from './actions.ts';
export { SHORTEN_RETENTION } from './audit-trail-actions.ts';
export { ACCESS_TOPIC } from './cache.ts';
export { allPermissions, builtinRoles, isKnownPermission, permissionDef } from './catalogue.ts';
export {
  type AlertSettingsChange,
  refuseOperatorAlertAcknowledgement,
  refuseOperatorAlertChange,
  wireElevatedGrants,
} from './elevated-grants.ts';
export {
  authorizer,
  fourEyesGate,
  networkPolicyChangeCheck,
  operatorAuthenticator,
  operatorNeedsStepUp,
  tenantAuthenticator,
} from './http.ts';
export { accessOperatorRoutes } from './operator-routes.ts';
export { CONNECT_SINK, wirePlatformActions } from './platform-actions.ts';
export { holdsStaffRole } from './role-checks.ts';
export { accessTenantRoutes } from './routes.ts';
export { type AccessService, createAccessService } from './service.ts';
export { identitySettingsChanges } from './settings-actions.ts';
export type { AccessTables } from './tables.ts';
export { checkTokenScopes } from './token-scopes.ts';

export const accessMigrations = readMigrations(new URL('./migrations/', import.meta.url));
