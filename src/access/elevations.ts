import type { TenantRef } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import type { PermissionCache } from './cache.ts';
import { type ApprovalDeps, approvalsOf, approveElevation } from './elevation-approval.ts';
import { refuseWrongApprover } from './elevation-approver.ts';
import { currentRolePermissions, pendingMinutes, thresholdFor } from './elevation-rules.ts';
import {
  DECISION_STEP_UP_MS,
  type DecisionScope,
  ELEVATION_STEP_UP_MS,
  type ElevationView,
  hasRecentOperatorFactor,
  type OperatorFactor,
  type Row,
  toView,
} from './elevation-view.ts';
import { accessError } from './errors.ts';
import { type AccessSettings, loadAccessSettings } from './settings.ts';
import { type AccessTables, inTenant, type Tx } from './tables.ts';

interface ElevationDeps extends ApprovalDeps {
  db: Database;
  cache: PermissionCache;
  maxMinutes: number;
}

export function createElevationService(deps: ElevationDeps) {
  const { db, clock, cache, critical, maxMinutes } = deps;

  async function locked(tx: Tx, id: string): Promise<Row> {
    const row = await tx
      .selectFrom('access_elevations')
      .selectAll()
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw accessError('elevation_not_found', 'There is no such elevation request.');
    return row;
  }

  /** Ends a request or an elevation (rejected, revoked), audits it and returns its view. */
  async function end(
    tx: Tx,
    row: Row,
    status: 'rejected' | 'revoked',
    tenantId: string,
    ctx: ActionContext,
    now: Date,
  ): Promise<ElevationView> {
    const updated = await tx
      .updateTable('access_elevations')
      .set({ status, ended_at: now, ended_by_type: ctx.actor.type, ended_by_id: ctx.actor.id })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await audit(clock, tx, tenantId, ctx, {
      action: `access.elevation.${status}`,
      outcome: 'success',
      target: { type: 'elevation', id: row.id },
      details: { operatorId: row.operator_id, role: row.role_key },
    });
    // Ended: the view keeps what was recorded.
    return toView(updated, await approvalsOf(tx, row.id), now, null);
  }

  /** The tenant of an elevation, read in the platform view (operators act across tenants). */
  async function tenantOf(id: string): Promise<string> {
    const row = await db.withSystem<AccessTables, { tenant_id: string } | undefined>((tx) =>
      tx.selectFrom('access_elevations').select('tenant_id').where('id', '=', id).executeTakeFirst(),
    );
    if (!row) throw accessError('elevation_not_found', 'There is no such elevation request.');
    return row.tenant_id;
  }

  /** The tenant's access settings as they are now (unlocked: shown, not decided on). */
  const settingsOf = (tenantId: string) => inTenant(db, tenantId, (tx) => loadAccessSettings(tx, critical));

  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  return {
    maxMinutes,

    async request(
      tenant: TenantRef,
      ctx: ActionContext & { actor: { type: 'operator'; id: string } },
      factor: OperatorFactor | null,
      input: { role: string; reason: string; durationMinutes: number },
    ): Promise<ElevationView> {
      if (!hasRecentOperatorFactor(factor, clock.now(), ELEVATION_STEP_UP_MS)) {
        throw accessError(
          'step_up_required',
          'Sign in again with your password and authenticator code (within 15 minutes) to ask for access.',
        );
      }
      if (input.durationMinutes > maxMinutes) {
        throw accessError(
          'elevation_too_long',
          `Ask for at most ${maxMinutes} minutes (ELEVATION_MAX_MINUTES).`,
        );
      }
      const view = await inTenant(db, tenant.id, async (tx) => {
        // The role as it is now is what approvers see and the most an approval can give: a later edit of
        // the role cannot widen the request or the elevation.
        const permissions = await currentRolePermissions(tx, input.role);
        if (!permissions) throw accessError('role_not_found', `This tenant has no role "${input.role}".`);
        const settings = await loadAccessSettings(tx, critical);
        const now = clock.now();
        const row = await tx
          .insertInto('access_elevations')
          .values({
            tenant_id: tenant.id,
            operator_id: ctx.actor.id,
            role_key: input.role,
            permissions,
            reason: input.reason,
            duration_minutes: input.durationMinutes,
            approvals_needed: thresholdFor(settings, input.role),
            approver: settings.elevationApprover,
            status: 'pending',
            requested_at: now,
            decide_by: new Date(now.getTime() + pendingMinutes(settings) * 60_000),
            starts_at: null,
            expires_at: null,
            ended_at: null,
            ended_by_type: null,
            ended_by_id: null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(clock, tx, tenant.id, ctx, {
          action: 'access.elevation.requested',
          outcome: 'success',
          target: { type: 'elevation', id: row.id },
          details: {
            role: input.role,
            permissions: permissions.join(' '),
            durationMinutes: input.durationMinutes,
            reason: input.reason,
          },
        });
        return toView(row, 0, now, settings);
      });
      return view;
    },

    /** Operators' platform view: every tenant's requests (no tenant data beyond the request itself). */
    async listAll(): Promise<ElevationView[]> {
      const { rows, byId } = await db.withSystem<AccessTables, { rows: Row[]; byId: Map<string, number> }>(
        async (tx) => {
          const rows = await tx
            .selectFrom('access_elevations')
            .selectAll()
            .orderBy('requested_at', 'desc')
            .limit(200)
            .execute();
          const counts = await tx
            .selectFrom('access_elevation_approvals')
            .select(['elevation_id', (eb) => eb.fn.countAll<string>().as('n')])
            .groupBy('elevation_id')
            .execute();
          return { rows, byId: new Map(counts.map((c) => [c.elevation_id, Number(c.n)])) };
        },
      );
      // A pending request shows who decides it now and how many approvals that needs: its tenant's
      // settings, read in that tenant (the settings are tenant rows, which the platform view does not see).
      const now = clock.now();
      const settings = new Map<string, AccessSettings>();
      for (const tenantId of new Set(rows.filter((r) => r.status === 'pending').map((r) => r.tenant_id))) {
        settings.set(tenantId, await settingsOf(tenantId));
      }
      return rows.map((r) => toView(r, byId.get(r.id) ?? 0, now, settings.get(r.tenant_id) ?? null));
    },

    listForTenant: (tenantId: string) =>
      inTenant(db, tenantId, async (tx) => {
        const rows = await tx
          .selectFrom('access_elevations')
          .selectAll()
          .orderBy('requested_at', 'desc')
          .limit(200)
          .execute();
        const settings = await loadAccessSettings(tx, critical);
        return Promise.all(
          rows.map(async (r) => toView(r, await approvalsOf(tx, r.id), clock.now(), settings)),
        );
      }),

    /**
     * One decision: a rejection, or an approval (approveElevation). The requester can never decide;
     * each person approves once.
     */
    async decide(
      ctx: ActionContext,
      id: string,
      decision: 'approve' | 'reject',
      scope: DecisionScope = {},
    ): Promise<ElevationView> {
      if (!uuid.test(id)) throw accessError('elevation_not_found', 'There is no such elevation request.');
      const actor = ctx.actor;
      if (actor.type !== 'operator' && actor.type !== 'user')
        throw new Error('elevation decisions need a person');
      // A tenant user's recent second factor is checked on their route (their session); an operator's here.
      if (
        actor.type === 'operator' &&
        !hasRecentOperatorFactor(scope.factor, clock.now(), DECISION_STEP_UP_MS)
      ) {
        throw accessError(
          'step_up_required',
          'Sign in again with your password and authenticator code (within 5 minutes) to decide; API tokens never can.',
        );
      }
      const tenantId = scope.tenantId ?? (await tenantOf(id));
      const view = await inTenant(db, tenantId, async (tx) => {
        const row = await locked(tx, id);
        if (actor.type === 'operator' && actor.id === row.operator_id) {
          throw accessError('self_approval', 'Another person must decide on your own elevation request.');
        }
        // Who decides is the tenant's choice as it is now, not when the request was made (security review:
        // a request asked while operators approved stayed theirs to approve after the tenant took approval
        // back). A rejection locks nothing else, so it reads the settings FOR SHARE at once (a change of
        // them waits for it, or it for the change); an approval reads them here only to refuse early, and
        // decides on them read FOR SHARE after the people it re-checks (lock order, approveElevation).
        refuseWrongApprover(await loadAccessSettings(tx, critical, decision === 'reject' && 'share'), actor);
        if (row.status !== 'pending')
          throw accessError('elevation_not_pending', `This request is ${row.status}.`);
        const now = clock.now();
        if (row.decide_by <= now) {
          throw accessError('elevation_expired', 'This request lapsed undecided; the operator asks again.');
        }
        if (decision === 'reject') return end(tx, row, 'rejected', tenantId, ctx, now);
        return approveElevation(tx, deps, tenantId, { ...ctx, actor }, row, now);
      });
      // A refused approval committed its audit event and nothing else.
      if (view instanceof Error) throw view;
      await cache.changed(tenantId);
      return view;
    },

    /**
     * Ends every pending or live elevation of an operator who was just disabled, each in its tenant,
     * audited as revoked by whoever disabled them; returns how many. Expired ones are left as they are.
     */
    async endAllOf(ctx: ActionContext, operatorId: string): Promise<number> {
      const now = clock.now();
      const live = await db.withSystem<AccessTables, { id: string; tenant_id: string }[]>((tx) =>
        tx
          .selectFrom('access_elevations')
          .select(['id', 'tenant_id'])
          .where('operator_id', '=', operatorId)
          .where((eb) =>
            eb.or([
              eb('status', '=', 'pending'),
              eb.and([eb('status', '=', 'active'), eb('expires_at', '>', now)]),
            ]),
          )
          .orderBy('id')
          .execute(),
      );
      let ended = 0;
      for (const { id, tenant_id: tenantId } of live) {
        const done = await inTenant(db, tenantId, async (tx) => {
          const row = await locked(tx, id);
          if (row.status !== 'pending' && row.status !== 'active') return false;
          await end(tx, row, 'revoked', tenantId, ctx, clock.now());
          return true;
        });
        if (done) {
          ended += 1;
          await cache.changed(tenantId);
        }
      }
      return ended;
    },

    /** Ends a pending or active elevation at once: the requester, another operator or the tenant. */
    async revoke(ctx: ActionContext, id: string, scope: DecisionScope = {}): Promise<ElevationView> {
      if (!uuid.test(id)) throw accessError('elevation_not_found', 'There is no such elevation request.');
      const actor = ctx.actor;
      if (actor.type !== 'operator' && actor.type !== 'user') throw new Error('revocation needs a person');
      // Ending access needs no recent factor (it only takes away), but a person: not an API token.
      if (actor.type === 'operator' && scope.factor?.kind !== 'session') {
        throw accessError(
          'step_up_required',
          'Revoke with a sign-in token (password and code), not an API token.',
        );
      }
      const tenantId = scope.tenantId ?? (await tenantOf(id));
      const view = await inTenant(db, tenantId, async (tx) => {
        const row = await locked(tx, id);
        const now = clock.now();
        if (row.status !== 'pending' && row.status !== 'active') {
          throw accessError('elevation_not_pending', `This request is ${row.status} already.`);
        }
        return end(tx, row, 'revoked', tenantId, ctx, now);
      });
      await cache.changed(tenantId);
      return view;
    },
  };
}

export type ElevationService = ReturnType<typeof createElevationService>;
