import type { TenantRef } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { AnyTenantTx } from '../platform/db/index.ts';
import { paramsHash, refuseUnseenBasis } from './approval-standing.ts';
import { type ApprovalView, personOf, type Row, toView } from './approval-view.ts';
import type { ApprovalParts } from './approvals.ts';
import { audit } from './audit.ts';
import type { Classified } from './critical.ts';
import { accessError } from './errors.ts';
import { loadAccessSettings } from './settings.ts';
import { inTenant, type Tx } from './tables.ts';

export const minutes = (m: number) => m * 60_000;

/** A request's row, locked until the caller's transaction commits. */
export async function lockedRequest(tx: Tx, id: string): Promise<Row> {
  // FOR UPDATE: two approvers (or two executions) of one request take turns, so exactly one wins.
  const row = await tx
    .selectFrom('access_approval_requests')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  if (!row) throw accessError('approval_not_found', 'There is no such approval request in this tenant.');
  return row;
}

/** Records the expiry the first time someone acts on an expired request, then refuses. */
export async function refuseExpired(
  { db, clock }: Pick<ApprovalParts, 'db' | 'clock'>,
  tenantId: string,
  ctx: ActionContext,
  row: Row,
): Promise<never> {
  await inTenant(db, tenantId, (tx) =>
    audit(clock, tx, tenantId, ctx, {
      action: 'access.approval.expired',
      outcome: 'failure',
      target: { type: 'approval', id: row.id },
      details: { action: row.action, status: row.status },
    }),
  );
  throw accessError('approval_expired', 'This request expired; ask again and have it approved anew.');
}

/** Asking for a second person's approval, and reading the requests. */
export function createApprovalRequests({ db, clock, critical, standings }: ApprovalParts) {
  /** An elevated operator's lasting access comes first: it needs a tenant user, whoever else might decide. */
  const alwaysRequired = (found: Classified[]) => found.find((c) => critical.isAlwaysRequired(c.action));

  return {
    /** The first of these critical actions that the tenant has on its four-eyes list, if any. */
    firstRequired: async (tenantId: string, found: Classified[]): Promise<Classified | undefined> => {
      if (found.length === 0) return undefined;
      const always = alwaysRequired(found);
      if (always) return always;
      const { fourEyesActions } = await inTenant(db, tenantId, (tx) => loadAccessSettings(tx, critical));
      return found.find((c) => fourEyesActions.includes(c.action));
    },

    /**
     * `firstRequired`, read in the caller's transaction with the settings row locked FOR SHARE until it
     * commits: a service deciding again under its own locks (a change of the list waits, or is seen).
     */
    requiredIn: async (tx: AnyTenantTx, found: Classified[]): Promise<Classified | undefined> => {
      if (found.length === 0) return undefined;
      const always = alwaysRequired(found);
      if (always) return always;
      const { fourEyesActions } = await loadAccessSettings(tx as Tx, critical, 'share');
      return found.find((c) => fourEyesActions.includes(c.action));
    },

    request: async (tenant: TenantRef, ctx: ActionContext, what: Classified, permission: string) => {
      return inTenant(db, tenant.id, async (tx) => {
        const basis = await standings.basisHash(tx, tenant, what.action, what.params);
        refuseUnseenBasis(what, basis);
        const settings = await loadAccessSettings(tx, critical);
        const by = personOf(ctx);
        const now = clock.now();
        const row = await tx
          .insertInto('access_approval_requests')
          .values({
            tenant_id: tenant.id,
            action: what.action,
            permission,
            params: JSON.stringify(what.params),
            params_hash: paramsHash(what.params),
            basis_hash: basis,
            summary: what.summary,
            requested_by_type: by.type,
            requested_by_id: by.id,
            requested_elevation_id: ctx.actor.type === 'operator' ? (ctx.actor.elevationId ?? null) : null,
            requested_at: now,
            expires_at: new Date(now.getTime() + minutes(settings.approvalTtlMinutes)),
            status: 'pending',
            decided_by_type: null,
            decided_by_id: null,
            decided_at: null,
            executed_at: null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(clock, tx, tenant.id, ctx, {
          action: 'access.approval.requested',
          outcome: 'success',
          target: { type: 'approval', id: row.id },
          details: { action: what.action, paramsDigest: Buffer.from(row.params_hash).toString('hex') },
        });
        return toView(row, now);
      });
    },

    list: (tenantId: string, status: ApprovalView['status'] | undefined) =>
      inTenant(db, tenantId, async (tx) => {
        const rows = await tx
          .selectFrom('access_approval_requests')
          .selectAll()
          .orderBy('requested_at', 'desc')
          .limit(200)
          .execute();
        const now = clock.now();
        return rows.map((r) => toView(r, now)).filter((v) => status === undefined || v.status === status);
      }),

    get: (tenantId: string, id: string) =>
      inTenant(db, tenantId, async (tx) => toView(await lockedRequest(tx, id), clock.now())),
  };
}
