import { recordAuditEvent } from '../audit/index.ts';
import type { InvalidationBus } from '../platform/bus/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import { hashToken } from '../platform/crypto/tokens.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { defineErrors } from '../platform/http/problem.ts';
import { normaliseEmail } from './email.ts';
import { OPERATOR_TOKENS_TOPIC, operatorKey } from './operators.ts';
import type { IdentityTables } from './tables.ts';

export const operatorAdminError = defineErrors({
  operator_not_found: { status: 404, title: 'Operator not found' },
  token_not_found: { status: 404, title: 'Token not found' },
  cannot_disable_self: { status: 409, title: 'You cannot disable yourself' },
  last_operator: { status: 409, title: 'The last active operator cannot be disabled' },
  operator_already_disabled: { status: 409, title: 'Operator already disabled' },
  operator_not_disabled: { status: 409, title: 'Operator is not disabled' },
  approval_required: { status: 403, title: 'This needs another operator\u2019s approval first' },
});

export interface OperatorAdminDeps {
  db: Database;
  clock: Clock;
  /** Tells every node's operator credential cache (operators.ts) what was revoked. */
  bus: InvalidationBus;
  /** A publish that failed after the commit: the change stands; other nodes notice within 30 s. */
  onBackgroundError?: (error: unknown) => void;
  /**
   * Runs after an operator's disable committed: Access ends their pending and live elevations (a
   * disabled operator holds nothing anyway; this keeps a later enable from bringing them back). A failure
   * is reported through onBackgroundError; the disable stands.
   */
  onDisabled?: (ctx: ActionContext, operatorId: string) => Promise<unknown>;
}

export interface OperatorTokenInfo {
  id: string;
  kind: 'api' | 'session' | 'setup';
  label: string;
  createdAt: Date;
  expiresAt: Date;
  /** When it was last used (recorded to the minute); null if never. */
  lastUsedAt: Date | null;
  /** The token this request was made with. */
  current: boolean;
  /** The only platform permissions an API token carries; null: all of them (or not an API token). */
  scopes: string[] | null;
}

/** One operator as the list shows them: never a credential, only whether and when they are used. */
export interface OperatorListEntry {
  id: string;
  email: string;
  displayName: string;
  status: 'active' | 'disabled';
  /** A confirmed TOTP authenticator (interactive sign-in needs one). */
  secondFactor: boolean;
  /** Sign-in refused until the lockout ends or someone unlocks them. */
  locked: boolean;
  createdAt: Date;
  /** Live API tokens and sign-in sessions (set-up links not counted). */
  liveCredentials: number;
  /** The latest use of any of their credentials, live or not (to the minute); null if never. */
  lastUsedAt: Date | null;
}

export interface OperatorSummary {
  id: string;
  email: string;
  status: 'active' | 'disabled';
}

type Tx = SystemTx<IdentityTables>;

/**
 * Revocation and status of operator credentials: sign-out, an operator's own tokens, and disabling,
 * enabling, revoking and unlocking other operators. Every change is audited in its transaction and,
 * once committed, published on the invalidation bus so no node keeps honouring a cached credential.
 */
export function createOperatorAdmin(deps: OperatorAdminDeps) {
  const system = <R>(fn: (tx: Tx) => Promise<R>) => deps.db.withSystem(fn);
  const audit = (
    tx: Tx,
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
  async function lockOperator(tx: Tx, id: string) {
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
  async function revokeAllInTx(tx: Tx, operatorId: string): Promise<number> {
    const result = await tx
      .updateTable('operator_tokens')
      .set({ revoked_at: deps.clock.now() })
      .where('operator_id', '=', operatorId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', deps.clock.now())
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  return {
    /** The operator's id by email (the CLI names operators by email). */
    async findByEmail(rawEmail: string): Promise<OperatorSummary> {
      const email = normaliseEmail(rawEmail);
      const row = email
        ? await system((tx) =>
            tx
              .selectFrom('operators')
              .select(['id', 'email', 'status'])
              .where('email', '=', email)
              .executeTakeFirst(),
          )
        : undefined;
      if (!row)
        throw operatorAdminError('operator_not_found', `There is no operator with the email ${rawEmail}.`);
      return row;
    },

    /** Every operator, by email, with their credentials' state (never a credential). */
    list: (): Promise<OperatorListEntry[]> =>
      system(async (tx) => {
        const now = deps.clock.now();
        const rows = await tx
          .selectFrom('operators as o')
          .leftJoin('operator_tokens as t', 't.operator_id', 'o.id')
          .select((eb) => [
            'o.id',
            'o.email',
            'o.display_name',
            'o.status',
            'o.created_at',
            'o.totp_confirmed_at',
            'o.password_locked_until',
            eb.fn.max('t.last_used_at').as('last_used_at'),
            eb.fn
              .count<string>('t.id')
              .filterWhere((w) =>
                w.and([
                  w('t.revoked_at', 'is', null),
                  w('t.expires_at', '>', now),
                  w('t.kind', '!=', 'setup'),
                ]),
              )
              .as('live'),
          ])
          .groupBy('o.id')
          .orderBy('o.email')
          .execute();
        return rows.map((r) => ({
          id: r.id,
          email: r.email,
          displayName: r.display_name,
          status: r.status,
          secondFactor: r.totp_confirmed_at !== null,
          locked: r.password_locked_until !== null && r.password_locked_until > now,
          createdAt: r.created_at,
          liveCredentials: Number(r.live),
          lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
        }));
      }),

    /** The caller's live credentials; never the token or its hash. */
    listOwn: (operatorId: string, currentToken: string | null): Promise<OperatorTokenInfo[]> =>
      system(async (tx) => {
        const current = currentToken ? hashToken(currentToken) : null;
        const rows = await tx
          .selectFrom('operator_tokens')
          .select(['id', 'kind', 'label', 'created_at', 'expires_at', 'last_used_at', 'token_hash', 'scopes'])
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', deps.clock.now())
          .orderBy('created_at', 'desc')
          .orderBy('id')
          .execute();
        return rows.map((r) => ({
          id: r.id,
          kind: r.kind,
          label: r.label,
          createdAt: r.created_at,
          expiresAt: r.expires_at,
          lastUsedAt: r.last_used_at,
          current: current?.equals(r.token_hash) ?? false,
          scopes: r.scopes,
        }));
      }),

    /** Ends the credential a request was made with (sign-out). */
    async signOut(ctx: ActionContext, operatorId: string, token: string): Promise<void> {
      const hash = hashToken(token);
      const revoked = await system(async (tx) => {
        const row = await tx
          .updateTable('operator_tokens')
          .set({ revoked_at: deps.clock.now() })
          .where('token_hash', '=', hash)
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .returning(['id', 'kind'])
          .executeTakeFirst();
        if (row)
          await audit(
            tx,
            ctx,
            'identity.operator.signed_out',
            { type: 'operator', id: operatorId },
            { kind: row.kind },
          );
        return row;
      });
      if (revoked) await publish([hash.toString('hex')]);
    },

    /** Revokes one of the operator's own credentials; someone else's id is unknown (404). */
    async revokeOwn(ctx: ActionContext, operatorId: string, tokenId: string): Promise<void> {
      const row = await system(async (tx) => {
        const revoked = await tx
          .updateTable('operator_tokens')
          .set({ revoked_at: deps.clock.now() })
          .where('id', '=', tokenId)
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', deps.clock.now())
          .returning(['token_hash', 'kind'])
          .executeTakeFirst();
        if (!revoked) throw operatorAdminError('token_not_found', 'You have no live token with that id.');
        await audit(
          tx,
          ctx,
          'identity.operator.token_revoked',
          { type: 'operator', id: operatorId },
          {
            kind: revoked.kind,
            revokedId: tokenId,
          },
        );
        return revoked;
      });
      // PGlite hands bytea back as a Uint8Array, whose toString is not hex.
      await publish([Buffer.from(row.token_hash).toString('hex')]);
    },

    /** Revokes every live credential of an operator (theirs or, with operators:write, anyone's). */
    async revokeAll(ctx: ActionContext, operatorId: string): Promise<{ revoked: number }> {
      const revoked = await system(async (tx) => {
        await lockOperator(tx, operatorId);
        const count = await revokeAllInTx(tx, operatorId);
        await audit(
          tx,
          ctx,
          'identity.operator.tokens_revoked',
          { type: 'operator', id: operatorId },
          { count },
        );
        return count;
      });
      await publish([operatorKey(operatorId)]);
      return { revoked };
    },

    /**
     * Disables an operator: every credential revoked, sign-in refused like a wrong password. Never
     * oneself, never the last active operator (nobody could enable anyone again except through the CLI).
     */
    async disable(
      ctx: ActionContext,
      operatorId: string,
      reason: string | null,
    ): Promise<OperatorSummary & { revoked: number }> {
      if (ctx.actor.type === 'operator' && ctx.actor.id === operatorId) {
        throw operatorAdminError('cannot_disable_self', 'Ask another operator to disable your account.');
      }
      const result = await system(async (tx) => {
        // Lock every active operator in id order first: two operators disabling each other at once run
        // one after the other, and the second sees the first's change (and the last-operator rule holds).
        const active = await tx
          .selectFrom('operators')
          .select('id')
          .where('status', '=', 'active')
          .orderBy('id')
          .forUpdate()
          .execute();
        const target = await lockOperator(tx, operatorId);
        if (target.status === 'disabled') {
          throw operatorAdminError('operator_already_disabled', `${target.email} is disabled already.`);
        }
        if (ctx.actor.type === 'operator' && !active.some((a) => a.id === ctx.actor.id)) {
          // The caller was disabled while this request waited for the locks.
          throw operatorAdminError('operator_not_found', 'Your own account is no longer active.');
        }
        if (active.filter((a) => a.id !== operatorId).length === 0) {
          throw operatorAdminError(
            'last_operator',
            `${target.email} is the last active operator; create or enable another first.`,
          );
        }
        await tx.updateTable('operators').set({ status: 'disabled' }).where('id', '=', operatorId).execute();
        const revoked = await revokeAllInTx(tx, operatorId);
        await audit(
          tx,
          ctx,
          'identity.operator.disabled',
          { type: 'operator', id: operatorId },
          {
            reason,
            count: revoked,
          },
        );
        return { id: target.id, email: target.email, status: 'disabled' as const, revoked };
      });
      await publish([operatorKey(operatorId)]);
      await deps.onDisabled?.(ctx, operatorId).catch((error: unknown) => deps.onBackgroundError?.(error));
      return result;
    },

    /**
     * The operator an enable would bring back, refused as `enable` would refuse it (unknown, not
     * disabled): asked before an enable is put up for another operator's approval.
     */
    planEnable: (operatorId: string): Promise<OperatorSummary> =>
      system(async (tx) => {
        const target = await lockOperator(tx, operatorId);
        if (target.status !== 'disabled') {
          throw operatorAdminError('operator_not_disabled', `${target.email} is not disabled.`);
        }
        return { id: target.id, email: target.email, status: target.status };
      }),

    /**
     * Enables a disabled operator; their revoked credentials stay revoked (they sign in anew). Through
     * the API only as an approved platform action (access's four-eyes), whose `guard` runs first here
     * (it locks the approver's row FOR SHARE; disabling locks active operators, never a disabled target
     * before them, so the two cannot deadlock); the CLI enables directly.
     */
    enable: (
      ctx: ActionContext,
      operatorId: string,
      guard?: (tx: Tx) => Promise<void>,
    ): Promise<OperatorSummary> =>
      system(async (tx) => {
        await guard?.(tx);
        const target = await lockOperator(tx, operatorId);
        if (target.status !== 'disabled') {
          throw operatorAdminError('operator_not_disabled', `${target.email} is not disabled.`);
        }
        await tx.updateTable('operators').set({ status: 'active' }).where('id', '=', operatorId).execute();
        await audit(tx, ctx, 'identity.operator.enabled', { type: 'operator', id: operatorId });
        return { id: target.id, email: target.email, status: 'active' as const };
      }),

    /** Clears a password lockout, including a count left at the threshold without a lock. */
    unlock: (ctx: ActionContext, operatorId: string): Promise<OperatorSummary> =>
      system(async (tx) => {
        const target = await lockOperator(tx, operatorId);
        await tx
          .updateTable('operators')
          .set({ password_failures: 0, password_locked_until: null })
          .where('id', '=', operatorId)
          .execute();
        await audit(tx, ctx, 'identity.operator.unlocked', { type: 'operator', id: operatorId });
        return { id: target.id, email: target.email, status: target.status };
      }),
  };
}

export type OperatorAdmin = ReturnType<typeof createOperatorAdmin>;
