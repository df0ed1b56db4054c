export { type Database, type OpenOptions, openDatabase } from './database.ts';
export { APP_ROLE, type Engine, type EngineKind, type OwnerSession, type PoolStats } from './engine.ts';
export { type Migration, migrate, type OwnerSettings, orderMigrations, readMigrations } from './migrator.ts';
export { openPgliteEngine, type PgliteEngine, type PgliteSource } from './pglite-engine.ts';
export { openPostgresEngine, type PostgresSource } from './postgres-engine.ts';
export { readRoleFacts, roleProblems, UnsafeRoleError } from './role-check.ts';
export {
  type AnyTenantTx,
  asTenantId,
  enterTenant,
  isStatementTimeout,
  isTenantId,
  isTransientConflict,
  type SystemTx,
  type TenantId,
  type TenantTx,
  type TxGuard,
} from './scope.ts';

import { readMigrations } from './migrator.ts';
/** Platform migrations (roles, RLS helpers) that every capability's migrations build on. */
export const platformMigrations = readMigrations(new URL('./migrations/', import.meta.url));
