import { readMigrations } from '../platform/db/index.ts';

export { tenancyError } from './errors.ts';
export { tenancyRoutes } from './routes.ts';
export { CreateTenantBody, SuspendBody } from './schemas.ts';
export { createTenancyService, type TenancyService, type Tenant } from './service.ts';
export type { TenancyTables } from './tables.ts';

export const tenancyMigrations = readMigrations(new URL('./migrations/', import.meta.url));
