import { readMigrations } from '../platform/db/index.ts';

export { denialAuditor } from './denials.ts';
export { type AuditAction, type AuditInput, recordAuditEvent } from './record.ts';
export type { AuditTables } from './tables.ts';

export const auditMigrations = readMigrations(new URL('./migrations/', import.meta.url));
