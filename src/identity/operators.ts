import { sql } from 'kysely';
import { recordAuditEvent } from '../audit/index.ts';
import { createInProcessBus, createInvalidatedCache, type InvalidationBus } from '../platform/bus/index.ts';
import { type ActionContext, type Actor, type Clock, systemContext } from '../platform/context.ts';
import { hashToken, newToken } from '../platform/crypto/tokens.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { defineErrors } from '../platform/http/problem.ts';
import { normaliseEmail } from './email.ts';
import { issueOperatorSetupLink } from './operator-setup.ts';
import type { IdentityTables } from './tables.ts';

export const operatorError = defineErrors({
  invalid_email: { status: 400, title: 'Invalid email address' },
  operator_exists: { status: 409, title: 'Operator already exists' },
  operator_not_found: { status: 404, title: 'Operator not found' },
  operator_disabled: { status: 409, title: 'Operator is disabled' },
});

const TOKEN_PREFIX = 'rmp_op';
// Serialises first-run bootstrap across nodes starting together.
const BOOTSTRAP_LOCK = 727_261_002;

export interface OperatorDeps {
  db: Database;
  clock: Clock;
  tokenTtlDays: number;
  /** Base of the one-time set-up link printed for a new operator. */
  publicUrl: string;
  /** Drops cached credentials on every node (topic OPERATOR_TOKENS_TOPIC, key: the token's SHA-256 hex). */
  bus?: InvalidationBus;
  /** Told when a token's last use could not be recorded (the request goes on); never given the token. */
  onStampError?: (error: unknown, tokenId: string) => void;
}

export const OPERATOR_TOKENS_TOPIC = 'operator-tokens';
// Verified operator credentials kept per node, so an operator-authenticated request (the decision API
// above all) needs no database round trip. An entry never outlives its token's expiry; the TTL bounds
// a missed bus message. A revocation publishes the token's hash (hex), or `operator:<id>` for all of an
// operator's (operator-admin.ts); a bus reset drops everything.
const CREDENTIAL_TTL_MS = 30_000;
const CREDENTIAL_CACHE_MAX = 10_000;

/** The bus key that drops every cached credential of one operator (disable, revoke-all). */
export const operatorKey = (operatorId: string) => `operator:${operatorId}`;

// A token's last use is written at most once a minute per token and node: the operator list shows
// stale or forgotten credentials, and a request costs no write.
const LAST_USE_RESOLUTION_MS = 60_000;

interface CachedCredential {
  credential: OperatorCredential;
  expiresAt: number;
  tokenId: string;
  /** When this node last wrote (or read) the token's last_used_at, in ms. */
  stampedAt: number;
}

export interface OperatorCredential {
  actor: { type: 'operator'; id: string };
  kind: 'session' | 'api';
  mfaAt: Date | null;
  /**
   * The only platform permissions this credential carries (a scoped API token: the decision API's
   * caller, a WAF log shipper); null: every platform permission (sign-in sessions, unscoped API tokens).
   */
  scopes: readonly string[] | null;
}

export interface IssuedOperator {
  operatorId: string;
  email: string;
  /** Shown once to the person creating it; only its hash is stored. */
  token: string;
  expiresAt: Date;
  /** One-time link to set a password and enrol TOTP for interactive sign-in (24 hours). */
  setupLink: string;
}

export interface IssuedToken {
  operatorId: string;
  email: string;
  tokenId: string;
  /** Shown once; only its hash is stored. */
  token: string;
  expiresAt: Date;
  /** The only platform permissions it carries; null: all of them. */
  scopes: readonly string[] | null;
}

export function createOperatorService({
  db,
  clock,
  tokenTtlDays,
  publicUrl,
  bus,
  onStampError,
}: OperatorDeps) {
  const system = <R>(fn: (tx: SystemTx<IdentityTables>) => Promise<R>) => db.withSystem(fn);

  /** A new API token for the operator; only its SHA-256 is stored, the token is returned once. */
  async function insertApiToken(
    tx: SystemTx<IdentityTables>,
    operatorId: string,
    label: string,
    scopes: readonly string[] | null = null,
  ) {
    const { token, hash } = newToken(TOKEN_PREFIX);
    const expiresAt = new Date(clock.now().getTime() + tokenTtlDays * 86_400_000);
    const row = await tx
      .insertInto('operator_tokens')
      .values({
        operator_id: operatorId,
        token_hash: hash,
        label,
        expires_at: expiresAt,
        last_used_at: null,
        revoked_at: null,
        scopes: scopes ? [...scopes] : null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: row.id, token, expiresAt };
  }

  async function insertWithToken(
    tx: SystemTx<IdentityTables>,
    ctx: ActionContext,
    email: string,
    displayName: string,
  ): Promise<IssuedOperator> {
    const operator = await tx
      .insertInto('operators')
      .values({ email, display_name: displayName })
      .onConflict((oc) => oc.column('email').doNothing())
      .returning(['id'])
      .executeTakeFirst();
    if (!operator)
      throw operatorError('operator_exists', `An operator with the email ${email} exists already.`);
    const { token, expiresAt } = await insertApiToken(tx, operator.id, 'initial');
    await recordAuditEvent(tx, clock, ctx, {
      tenantId: null,
      action: 'identity.operator.created',
      outcome: 'success',
      target: { type: 'operator', id: operator.id },
      details: { email },
    });
    const setupLink = await issueOperatorSetupLink(tx, clock, publicUrl, operator.id);
    return { operatorId: operator.id, email, token, expiresAt, setupLink };
  }

  /**
   * The operator behind a bearer token and how the token was obtained: `session` tokens passed a
   * password and a TOTP code at `mfaAt`; `api` tokens passed no second factor. Access uses this to
   * require a recent second factor for elevation.
   */
  const credentials = createInvalidatedCache<CachedCredential>({
    bus: bus ?? createInProcessBus(),
    topic: OPERATOR_TOKENS_TOPIC,
    maxEntries: CREDENTIAL_CACHE_MAX,
    ttlMs: CREDENTIAL_TTL_MS,
    onMessage(key, cache) {
      // `operator:<id>`: all of an operator's credentials (disable, revoke-all); else one token's hash.
      if (key.startsWith('operator:')) {
        const id = key.slice('operator:'.length);
        cache.deleteWhere((c) => c.credential.actor.id === id);
      } else cache.delete(key);
    },
  });

  async function verify(token: string): Promise<OperatorCredential | null> {
    if (!token.startsWith(`${TOKEN_PREFIX}_`)) return null;
    const now = clock.now();
    const hash = hashToken(token);
    const key = hash.toString('hex');
    const hit = credentials.get(key, now.getTime());
    if (hit && hit.expiresAt > now.getTime()) {
      await stampUse(hit, now);
      return hit.credential;
    }
    // A revocation that arrives while the database is read must not be overwritten by the old answer.
    const mark = credentials.mark();
    const found = await lookup(hash, now);
    if (!found) return null;
    credentials.put(key, found, mark, now.getTime());
    await stampUse(found, now);
    return found.credential;
  }

  /**
   * Records the token's use when the last record is a minute old or more (on this node or another).
   * Best effort: the stamp only feeds the operator list, so a failed write (a busy or read-only
   * database, a lock timeout) is reported and the request goes on; it is tried again a minute later.
   */
  async function stampUse(entry: CachedCredential, now: Date): Promise<void> {
    if (now.getTime() - entry.stampedAt < LAST_USE_RESOLUTION_MS) return;
    entry.stampedAt = now.getTime();
    const before = new Date(now.getTime() - LAST_USE_RESOLUTION_MS);
    try {
      await system((tx) =>
        tx
          .updateTable('operator_tokens')
          .set({ last_used_at: now })
          .where('id', '=', entry.tokenId)
          .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', before)]))
          .execute(),
      );
    } catch (error) {
      onStampError?.(error, entry.tokenId);
    }
  }

  function lookup(hash: Buffer, now: Date) {
    return system(async (tx) => {
      // Lookup by the token's SHA-256: the index compares digests, which an attacker cannot steer.
      const row = await tx
        .selectFrom('operator_tokens as t')
        .innerJoin('operators as o', 'o.id', 't.operator_id')
        .select([
          't.id as tokenId',
          'o.id as operatorId',
          't.kind',
          't.mfa_at',
          't.expires_at',
          't.last_used_at',
          't.scopes',
        ])
        .where('t.token_hash', '=', hash)
        .where('t.revoked_at', 'is', null)
        .where('t.kind', '!=', 'setup')
        .where('t.expires_at', '>', now)
        .where('o.status', '=', 'active')
        .executeTakeFirst();
      if (!row) return null;
      const credential: OperatorCredential = {
        actor: { type: 'operator', id: row.operatorId },
        kind: row.kind === 'session' ? 'session' : 'api',
        mfaAt: row.mfa_at ?? null,
        scopes: row.scopes === null ? null : Object.freeze([...row.scopes]),
      };
      return {
        credential,
        expiresAt: row.expires_at.getTime(),
        tokenId: row.tokenId,
        stampedAt: row.last_used_at?.getTime() ?? Number.NEGATIVE_INFINITY,
      } satisfies CachedCredential;
    });
  }

  return {
    async create(ctx: ActionContext, rawEmail: string, displayName: string): Promise<IssuedOperator> {
      const email = normaliseEmail(rawEmail);
      if (!email) throw operatorError('invalid_email', `"${rawEmail}" is not an email address.`);
      return system((tx) => insertWithToken(tx, ctx, email, displayName));
    },

    /** First run only: creates one operator when there is none. Returns null when operators exist. */
    async bootstrap(rawEmail: string): Promise<IssuedOperator | null> {
      const email = normaliseEmail(rawEmail);
      if (!email)
        throw operatorError('invalid_email', `BOOTSTRAP_OPERATOR_EMAIL "${rawEmail}" is not valid.`);
      return system(async (tx) => {
        await sql`SELECT pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(tx);
        const existing = await tx.selectFrom('operators').select('id').limit(1).executeTakeFirst();
        if (existing) return null;
        return insertWithToken(tx, systemContext('bootstrap'), email, 'Initial operator');
      });
    },

    /**
     * A further API token for an existing, active operator (automation, a replaced token): printed once
     * by the CLI, audited, never shown again. With `scopes` (platform permissions the caller checked
     * against the catalogue, see access's `checkTokenScopes`), the token carries only those.
     */
    async issueToken(
      ctx: ActionContext,
      rawEmail: string,
      label: string,
      scopes: readonly string[] | null = null,
    ): Promise<IssuedToken> {
      if (scopes?.length === 0) throw new Error('a scoped token needs at least one scope');
      const email = normaliseEmail(rawEmail);
      return system(async (tx) => {
        const operator = email
          ? await tx
              .selectFrom('operators')
              .select(['id', 'status'])
              .where('email', '=', email)
              .forUpdate()
              .executeTakeFirst()
          : undefined;
        if (!operator || !email)
          throw operatorError('operator_not_found', `There is no operator with the email ${rawEmail}.`);
        if (operator.status !== 'active')
          throw operatorError(
            'operator_disabled',
            `The operator ${email} is disabled; enable them first (rampart operators enable ${email}).`,
          );
        const issued = await insertApiToken(tx, operator.id, label, scopes);
        await recordAuditEvent(tx, clock, ctx, {
          tenantId: null,
          action: 'identity.operator.token_issued',
          outcome: 'success',
          target: { type: 'operator', id: operator.id },
          // Details are flat: the scopes space-separated; null: the token carries every platform permission.
          details: {
            issuedId: issued.id,
            label,
            expiresAt: issued.expiresAt.toISOString(),
            scopes: scopes ? scopes.join(' ') : null,
          },
        });
        return {
          operatorId: operator.id,
          email,
          tokenId: issued.id,
          token: issued.token,
          expiresAt: issued.expiresAt,
          scopes,
        };
      });
    },

    /** The operator behind a bearer token, or null: unknown, expired, revoked and disabled look the same. */
    async authenticate(token: string): Promise<Actor | null> {
      return (await verify(token))?.actor ?? null;
    },

    verify,
  };
}

export type OperatorService = ReturnType<typeof createOperatorService>;
