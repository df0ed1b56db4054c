import { accessMigrations } from './access/index.ts';
import { auditMigrations } from './audit/index.ts';
import { identityMigrations } from './identity/index.ts';
import { mailMigrations } from './mail/index.ts';
import { orderMigrations, platformMigrations } from './platform/db/index.ts';
import { protectMigrations } from './protect/index.ts';
import { tenancyMigrations } from './tenancy/index.ts';

/** Every capability's migrations in one global order. */
export const allMigrations = orderMigrations([
  ...platformMigrations,
  ...tenancyMigrations,
  ...identityMigrations,
  ...auditMigrations,
  ...mailMigrations,
  ...accessMigrations,
  ...protectMigrations,
]);
