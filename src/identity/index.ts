import { readMigrations } from '../platform/db/index.ts';

export type { BreachedScreen, TenantRef } from './deps.ts';
export { normaliseEmail } from './email.ts';
export { identityError } from './errors.ts';
export {
  needsUserStepUp,
  SESSION_COOKIE,
  setSessionCookie,
  tenantSlugOf,
  toTenantRef,
  userAuthenticator,
} from './http-auth.ts';
export { createOperatorAdmin, type OperatorAdmin } from './operator-admin.ts';
export { OperatorDisableBody, OperatorTokenLabel, operatorAdminRoutes } from './operator-admin-routes.ts';
export { identityOperatorRoutes } from './operator-routes.ts';
export { createOperatorSignIn, type OperatorSignIn } from './operator-sign-in.ts';
export {
  createOperatorService,
  type IssuedOperator,
  type OperatorCredential,
  type OperatorService,
} from './operators.ts';
export { createPasswordHasher, type PasswordHasher } from './passwords/index.ts';
export type { PasswordPolicy } from './policy.ts';
export { resealOperatorSeeds, resealTenantSeeds } from './reseal-seeds.ts';
export { identityApiRoutes } from './routes.ts';
export { createIdentityService, type IdentityService } from './service.ts';
export { hasRecentSecondFactor, type ValidSession } from './session-stage.ts';
export { type IdentitySettingsView, type WeakenedPart, weakenedParts } from './settings.ts';
export type { IdentityTables, UserRole } from './tables.ts';
export { isOperatorActive, isUserDisabled, lockActiveTenantAdmins, lockUsers } from './user-status.ts';
export { countFastHashes, type WrapCursor, type WrapRun, wrapFastHashes } from './wrap-legacy.ts';
export { type SweepResult, wrapFastHashesEverywhere, wrapLegacyHashesJob } from './wrap-legacy-job.ts';

export const identityMigrations = readMigrations(new URL('./migrations/', import.meta.url));

import { PublicUser, Settings } from './schemas.ts';
/** Schemas referenced by $id from more than one plugin: registered once at the root. */
export const identitySharedSchemas = [PublicUser, Settings];
