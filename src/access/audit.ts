import { type AuditInput, recordAuditEvent } from '../audit/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { AccessTables, Tx } from './tables.ts';

/** Audits a tenant event in the caller's transaction. */
export const audit = (clock: Clock, tx: Tx, tenantId: string, ctx: ActionContext, event: AuditInput) =>
  recordAuditEvent<AccessTables>(tx, clock, ctx, { ...event, tenantId });
