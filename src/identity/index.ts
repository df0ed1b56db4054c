import { readMigrations } from '../platform/db/index.ts';

export { normaliseEmail } from './email.ts';
export { createOperatorService, type IssuedOperator, type OperatorService } from './operators.ts';
export type { IdentityTables } from './tables.ts';

export const identityMigrations = readMigrations(new URL('./migrations/', import.meta.url));
