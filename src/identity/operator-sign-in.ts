import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import { newToken } from '../platform/crypto/tokens.ts';
import type { SystemTx } from '../platform/db/index.ts';
import { normaliseEmail } from './email.ts';
import { identityError } from './errors.ts';
import { chargedAttempt, type FailureBudget } from './failure-budget.ts';
import { attemptAllowed, countAttempt, doublingLockSeconds, doublingLockUntil } from './lockout.ts';
import { auditOperator, createOperatorSetup, type OperatorSetupDeps } from './operator-setup.ts';
import { HasherBusyError, normalisePassword } from './passwords/index.ts';
import { isFactorUnavailable, openTotpSeed } from './sealed-totp.ts';
import type { IdentityTables } from './tables.ts';
import { totpStep } from './totp.ts';

const SESSION_TTL_MS = 8 * 3_600_000;
const THRESHOLD = 5;
/**
 * The first lock; each further one without a successful sign-in in between doubles it (15 min, 30, 60,
 * … at most 24 h, operators.password_lockouts): a fixed lock after which the count started afresh let
 * whoever held the password guess codes without end, 480 a day.
 */
const LOCK_SECONDS = 15 * 60;

export interface OperatorAuthDeps extends OperatorSetupDeps {
  /** Failed sign-ins per client address, across accounts: the budget tenant sign-in is charged to. */
  failedSignIns: FailureBudget;
}

type Tx = SystemTx<IdentityTables>;
type OperatorEvent = Parameters<typeof auditOperator> extends [Tx, Clock, ...infer Rest] ? Rest : never;

/**
 * Interactive operator sign-in. Operators always use two factors: a password and a TOTP code in the same
 * request, so there is no half-signed-in operator state. Set-up goes through a one-time link.
 */
export function createOperatorSignIn(deps: OperatorAuthDeps) {
  const system = <R>(fn: (tx: Tx) => Promise<R>) => deps.db.withSystem(fn);
  const audit = (tx: Tx, ...event: OperatorEvent) => auditOperator(tx, deps.clock, ...event);
  const setup = createOperatorSetup(deps);

  /**
   * Verifies the password of a reserved attempt; unknown, disabled and locked operators cost a dummy
   * verification, so the answer time says nothing. When the hasher refuses (busy) or fails, the
   * attempt never happened: its slot is given back (else five busy answers would lock the operator out)
   * and the refusal is audited.
   */
  async function checkPassword(
    ctx: ActionContext,
    reserved: { id: string; password_hash: string | null } | undefined,
    password: string,
  ): Promise<boolean> {
    try {
      if (reserved?.password_hash) {
        return (await deps.hasher.verify(reserved.password_hash, normalisePassword(password))).ok;
      }
      await deps.hasher.verifyDummy(password);
      return false;
    } catch (error) {
      const busy = error instanceof HasherBusyError;
      await giveBack(ctx, reserved?.id ?? null, busy ? 'busy' : 'error');
      if (busy) {
        throw identityError('busy', 'The server is handling many sign-ins; try again shortly.', {
          retryAfterSeconds: error.retryAfterSeconds,
        });
      }
      throw error;
    }
  }

  /** An attempt that never happened (the server could not check it): its slot back, the refusal audited. */
  async function giveBack(ctx: ActionContext, id: string | null, reason: string) {
    await system(async (tx) => {
      if (id) {
        await tx
          .updateTable('operators')
          .set({ password_failures: sql`GREATEST(password_failures - 1, 0)` })
          .where('id', '=', id)
          .execute();
      }
      await audit(tx, ctx, 'identity.operator.signin', 'failure', id, reason);
    });
  }

  /** Why a verified attempt failed: both factors right but no token means a replayed code or a disable. */
  async function failedAfterVerifying(tx: Tx, id: string, passwordOk: boolean, step: number | null) {
    if (!passwordOk) return 'wrong_password';
    if (step === null) return 'wrong_code';
    const row = await tx.selectFrom('operators').select('status').where('id', '=', id).executeTakeFirst();
    return row?.status === 'disabled' ? 'disabled' : 'replayed_code';
  }

  /** Why no attempt was reserved, for the audit trail only (the caller's answer is the same). */
  async function refusedBeforeVerifying(tx: Tx, email: string) {
    const row = await tx
      .selectFrom('operators')
      .select(['id', 'status'])
      .where('email', '=', email)
      .executeTakeFirst();
    if (!row) return { id: null, reason: 'unknown_operator' };
    return { id: row.id, reason: row.status === 'disabled' ? 'disabled' : 'locked_or_not_enrolled' };
  }

  /**
   * The per-address failure budget was used up (429 `throttled`): recorded like any failed attempt, the
   * operator the address names (if any) as target, for the trail only (the answer is the same).
   */
  const auditThrottled = (ctx: ActionContext, email: string) =>
    system(async (tx) => {
      const row = await tx.selectFrom('operators').select('id').where('email', '=', email).executeTakeFirst();
      await audit(tx, ctx, 'identity.operator.signin', 'failure', row?.id ?? null, 'throttled');
    });

  /**
   * Sets the lock once the count reached the threshold, exactly once however many failures finish
   * together. Also run when no attempt was reserved: a count left at the threshold without a lock (a
   * process that died between reservation and verdict) would otherwise refuse every attempt forever;
   * this turns it into an ordinary lock that ends. Each lock doubles the one before it (password_lockouts,
   * read before its increment), until a successful sign-in or an unlock.
   */
  async function lockAtThreshold(tx: Tx, ctx: ActionContext, email: string, now: Date) {
    const locked = await tx
      .updateTable('operators')
      .set({
        password_locked_until: doublingLockUntil(now, LOCK_SECONDS, 'password_lockouts'),
        password_lockouts: sql`password_lockouts + 1`,
      })
      .where('email', '=', email)
      .where('password_failures', '>=', THRESHOLD)
      .where('password_locked_until', 'is', null)
      .returning(['id', 'password_lockouts'])
      .executeTakeFirst();
    if (locked) {
      await audit(tx, ctx, 'identity.operator.locked', 'success', locked.id, 'password_failures', {
        lockouts: locked.password_lockouts,
        lockSeconds: doublingLockSeconds(LOCK_SECONDS, locked.password_lockouts - 1),
      });
    }
  }

  return {
    ...setup,

    /**
     * Password and TOTP code together; returns an 8-hour operator session token. Each attempt is charged
     * to the caller's address first (as a tenant sign-in is): the per-operator lock stops guessing one
     * operator's password, this stops one address from trying many.
     */
    signIn(
      ctx: ActionContext,
      rawEmail: string,
      password: string,
      code: string,
    ): Promise<{ token: string; expiresAt: Date }> {
      const email = normaliseEmail(rawEmail) ?? '';
      return chargedAttempt(
        deps.failedSignIns,
        ctx,
        () => attempt(ctx, email, password, code),
        () => auditThrottled(ctx, email),
      );
    },
  };

  async function attempt(
    ctx: ActionContext,
    email: string,
    password: string,
    code: string,
  ): Promise<{ token: string; expiresAt: Date }> {
    const now = deps.clock.now();
    // Reserve an attempt atomically, as for tenant users: concurrent guesses cannot exceed the threshold.
    const reserved = await system((tx) =>
      tx
        .updateTable('operators')
        .set(countAttempt(now))
        .where('email', '=', email)
        .where('status', '=', 'active')
        .where('totp_confirmed_at', 'is not', null)
        .where(attemptAllowed(now, THRESHOLD))
        .returning(['id', 'password_hash', 'totp_ciphertext'])
        .executeTakeFirst(),
    );
    const passwordOk = await checkPassword(ctx, reserved, password);
    return system(async (tx) => {
      const seed =
        passwordOk && reserved?.totp_ciphertext
          ? openTotpSeed(deps.totpBox, reserved.totp_ciphertext, `operator:${reserved.id}`)
          : null;
      const step = seed ? totpStep(seed.plaintext, code, now) : null;
      // A seed sealed under a previous SECRET_KEY is sealed again under the current one with the use.
      const resealed = seed?.resealed ? { totp_ciphertext: seed.resealed } : {};
      // The status guard waits for a disable holding the row and then sees it: no token for a
      // disabled operator even when the disable committed during the verification.
      const fresh =
        step !== null && reserved
          ? await tx
              .updateTable('operators')
              .set({
                totp_last_step: step,
                password_failures: 0,
                password_locked_until: null,
                password_lockouts: 0,
                ...resealed,
              })
              .where('id', '=', reserved.id)
              .where('status', '=', 'active')
              .where(sql<boolean>`totp_last_step < ${step}`)
              .executeTakeFirst()
          : null;
      if (!reserved || !fresh || fresh.numUpdatedRows === 0n) {
        const why = reserved
          ? { id: reserved.id, reason: await failedAfterVerifying(tx, reserved.id, passwordOk, step) }
          : await refusedBeforeVerifying(tx, email);
        await lockAtThreshold(tx, ctx, email, now);
        await audit(tx, ctx, 'identity.operator.signin', 'failure', why.id, why.reason);
        // Thrown after the transaction body so the audit event and the counter still commit.
        return null;
      }
      const { token, hash } = newToken('rmp_op');
      const expiresAt = new Date(now.getTime() + SESSION_TTL_MS);
      await tx
        .insertInto('operator_tokens')
        .values({
          operator_id: reserved.id,
          token_hash: hash,
          label: 'session',
          kind: 'session',
          expires_at: expiresAt,
          // The sign-in is its first use.
          last_used_at: now,
          revoked_at: null,
          mfa_at: now,
        })
        .execute();
      await audit(
        tx,
        { ...ctx, actor: { type: 'operator', id: reserved.id } },
        'identity.operator.signin',
        'success',
        reserved.id,
      );
      return { token, expiresAt };
    }).then(
      (result) => {
        if (!result)
          throw identityError('invalid_credentials', 'The email, password or code is not correct.');
        return result;
      },
      async (error: unknown) => {
        // The seed opens under no configured key: the server's fault, not a guess. The reserved slot is
        // given back (as for a busy hasher) and the refusal recorded; the answer is a 503.
        if (isFactorUnavailable(error) && reserved) await giveBack(ctx, reserved.id, 'secret_unreadable');
        throw error;
      },
    );
  }
}

export type OperatorSignIn = ReturnType<typeof createOperatorSignIn>;
