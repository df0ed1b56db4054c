import { recordAuditEvent } from '../audit/index.ts';
import type { InvalidationBus } from '../platform/bus/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { operatorAdminError } from './errors.ts';
import { OPERATOR_TOKENS_TOPIC } from './operators.ts';
import type { IdentityTables } from './tables.ts';

export interface OperatorAdminDeps {
  db: Database;
  clock: Clock;
  /** Tells every node's operator credential cache (operators.ts) what was revoked. */
  bus: InvalidationBus;
  /** A publish that failed after the commit: the change stands; other nodes notice within 30 s. */
  onBackgroundError?: (error: unknown) => void;
  /**
   * Access ends the operator's pending and live elevations: after their disable committed (a disabled
   * operator holds nothing anyway; this keeps a later enable from bringing them back; a failure there is
   * reported through onBackgroundError and the disable stands), and again before an enable of them, which
   * fails if it fails: an elevation that run left behind is not given back.
   */
  endElevations?: (ctx: ActionContext, operatorId: string) => Promise<unknown>;
}

export interface OperatorSummary {
  id: string;
  email: string;
  status: 'active' | 'disabled';
}

/** The platform-scoped transaction operator changes run in (operators are nobody's tenant). */
export type OperatorTx = SystemTx<IdentityTables>;

/**
 * How every operator-admin change is written: in a system transaction, audited on the platform chain in
 * it, and (revocations) published on the invalidation bus once committed; with the operator row locked
 * where a status or credential change must not race a sign-in.
 */
export function operatorWrites(deps: OperatorAdminDeps) {
  const system = <R>(fn: (tx: OperatorTx) => Promise<R>) => deps.db.withSystem(fn);
  const audit = (
    tx: OperatorTx,
    ctx: ActionContext,
    action: `identity.operator.${string}`,
    target: { type: string; id: string },
    details?: Record<string, string | number | null>,
  ) =>
    recordAuditEvent<IdentityTables>(tx, deps.clock, ctx, {
      tenantId: null,
      action,
      outcome: 'success',
      target,
      ...(details ? { details } : {}),
    });
  // Called after the commit only: a node told too early could reload the credential before it is revoked.
  // Awaited, so the request answers once the broker has taken the message (Redis PUBLISH replies after
  // handing it to every subscriber; PostgreSQL NOTIFY once committed). A broker failure is reported and
  // the change stands: other nodes then rely on their bus reset and the cache TTL.
  const publish = async (keys: string[]) => {
    for (const key of keys) {
      await deps.bus
        .publish(OPERATOR_TOKENS_TOPIC, key)
        .catch((error: unknown) => deps.onBackgroundError?.(error));
    }
  };

  /** Locks the operator row (a status change and a sign-in's success wait for each other). */
  async function lockOperator(tx: OperatorTx, id: string) {
    const row = await tx
      .selectFrom('operators')
      .select(['id', 'email', 'status'])
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw operatorAdminError('operator_not_found', 'There is no operator with that id.');
    return row;
  }

  /** Revokes every live credential of an operator (API, sessions, set-up links); returns how many. */
  async function revokeAllInTx(tx: OperatorTx, operatorId: string): Promise<number> {
    const result = await tx
      .updateTable('operator_tokens')
      .set({ revoked_at: deps.clock.now() })
      .where('operator_id', '=', operatorId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', deps.clock.now())
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  return { deps, system, audit, publish, lockOperator, revokeAllInTx };
}

export type OperatorWrites = ReturnType<typeof operatorWrites>;
