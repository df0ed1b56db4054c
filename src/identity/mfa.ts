import { sql } from 'kysely';
import { Secret } from 'otpauth';
import type { ActionContext } from '../platform/context.ts';
import { hmac } from '../platform/crypto/keys.ts';
import type { TxGuard } from '../platform/db/index.ts';
import { platformError } from '../platform/http/errors.ts';
import { audit, type IdentityDeps, inTenant, type ServiceDeps, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { doublingLockSeconds, doublingLockUntil } from './lockout.ts';
import { withMail } from './outgoing-mail.ts';
import { confirmPasswordUnlessFresh } from './reauth.ts';
import { isFactorUnavailable, openTotpSeed } from './sealed-totp.ts';
import { securityNotice } from './security-notices.ts';
import { sessionsChanged } from './session-cache.ts';
import { revokeAllInTx, revokeSessionInTx } from './session-revocation.ts';
import type { ValidSession } from './session-stage.ts';
import { createSession } from './session-tokens.ts';
import { loadSettings } from './settings.ts';
import { enrolmentFor, newTotpSecret, totpStep } from './totp.ts';
import { refuseUnapprovedAdminChange } from './user-status.ts';
import { createUserRepository, MFA_THRESHOLD } from './users.ts';

const RECOVERY_CODES = 10;
/**
 * The first second-factor lock; each further one without a right code in between doubles it (15 min,
 * 30, 60, … at most 24 h, users.mfa_lockouts): a fixed lock after which the count started afresh let
 * whoever held the password guess codes without end, 480 a day.
 */
const MFA_LOCK_SECONDS = 15 * 60;
/** Codes checked against one pending enrolment's secret; the last wrong one discards it. */
const ENROL_TRIES = 5;

// Recovery codes: 10 groups of 5 base32 chars = 50 bits, shown once, stored as HMAC so a copied table
// alone cannot be brute-forced.
const recoveryCode = () => {
  const raw = new Secret({ size: 7 }).base32.slice(0, 10).toLowerCase();
  return `${raw.slice(0, 5)}-${raw.slice(5)}`;
};
const recoveryHash = (key: Buffer, code: string) =>
  hmac(
    key,
    `recovery:${code
      .trim()
      .toLowerCase()
      .replace(/[^a-z2-7]/g, '')}`,
  );
/** Under the current MAC key and each previous one: codes issued before a SECRET_KEY rotation still count. */
const recoveryHashes = (deps: IdentityDeps, code: string) =>
  [deps.keys.mac, ...(deps.keys.previousMacs ?? [])].map((key) => recoveryHash(key, code));

export function createMfaService(deps: ServiceDeps) {
  const secretAad = (tenant: TenantRef, userId: string) => `totp:${tenant.id}:${userId}`;

  async function issueRecoveryCodes(tx: Tx, tenant: TenantRef, userId: string): Promise<string[]> {
    await tx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    const codes = Array.from({ length: RECOVERY_CODES }, recoveryCode);
    await tx
      .insertInto('recovery_codes')
      .values(
        codes.map((c) => ({
          tenant_id: tenant.id,
          user_id: userId,
          code_hash: recoveryHash(deps.keys.mac, c),
          used_at: null,
        })),
      )
      .execute();
    return codes;
  }

  /** Checks a TOTP code (once per time step: replays are refused) or an unused recovery code. */
  async function checkFactor(tx: Tx, tenant: TenantRef, userId: string, code: string) {
    const totpRow = await tx
      .selectFrom('user_totp')
      .selectAll()
      .where('user_id', '=', userId)
      .executeTakeFirst();
    if (!totpRow?.confirmed_at) return null;
    if (/^\d{6}$/.test(code)) {
      const sealed = openTotpSeed(deps.keys.totp, totpRow.secret_ciphertext, secretAad(tenant, userId));
      const step = totpStep(sealed.plaintext, code, deps.clock.now());
      if (step === null) return null;
      // Atomic: of two requests with one code, exactly one moves last_used_step forward. A seed sealed
      // under a previous SECRET_KEY is sealed again under the current one by the same write.
      const moved = await tx
        .updateTable('user_totp')
        .set(
          sealed.resealed === null
            ? { last_used_step: step }
            : { last_used_step: step, secret_ciphertext: sealed.resealed },
        )
        .where('user_id', '=', userId)
        .where(sql<boolean>`last_used_step < ${step}`)
        .executeTakeFirst();
      return moved.numUpdatedRows > 0n ? 'totp' : null;
    }
    const used = await tx
      .updateTable('recovery_codes')
      .set({ used_at: deps.clock.now() })
      .where('user_id', '=', userId)
      .where('code_hash', 'in', recoveryHashes(deps, code))
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return used.numUpdatedRows > 0n ? 'recovery' : null;
  }

  return {
    /**
     * Starts (or restarts) enrolment: a fresh secret, its otpauth URI and a QR code as SVG. Needs the
     * current password unless the session was signed in within the last 5 minutes.
     */
    beginEnrol: async (
      tenant: TenantRef,
      session: ValidSession,
      ctx: ActionContext,
      currentPassword?: string,
    ) => {
      await confirmPasswordUnlessFresh(deps, tenant, session, currentPassword, ctx);
      return inTenant(deps, tenant, async (tx) => {
        // Locked: a confirmation committing meanwhile (another tab) is seen here and refuses, instead of
        // the pending row's replacement below deleting the authenticator it just confirmed.
        const existing = await tx
          .selectFrom('user_totp')
          .select('confirmed_at')
          .where('user_id', '=', session.userId)
          .forUpdate()
          .executeTakeFirst();
        if (existing?.confirmed_at)
          throw identityError('mfa_already_enrolled', 'An authenticator is already enrolled.');
        const secret = newTotpSecret();
        const sealed = deps.keys.totp.seal(secret, secretAad(tenant, session.userId));
        // A new pending enrolment, or one replacing the pending one; never a confirmed row (a start racing
        // this one with no row to lock above may have gone further meanwhile): nothing written, refused.
        const started = await tx
          .insertInto('user_totp')
          .values({
            tenant_id: tenant.id,
            user_id: session.userId,
            secret_ciphertext: sealed,
            confirmed_at: null,
          })
          .onConflict((oc) =>
            oc
              .columns(['tenant_id', 'user_id'])
              .doUpdateSet({
                secret_ciphertext: sealed,
                last_used_step: 0,
                enrol_failures: 0,
                created_at: sql`now()`,
              })
              .where('user_totp.confirmed_at', 'is', null),
          )
          .returning('user_id')
          .executeTakeFirst();
        if (!started) throw identityError('mfa_already_enrolled', 'An authenticator is already enrolled.');
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.mfa.enrolment_started',
          outcome: 'success',
          target: { type: 'user', id: session.userId },
        });
        return enrolmentFor(secret, session.email, tenant.slug);
      });
    },

    /**
     * Confirms enrolment with a first code; returns recovery codes (shown once) and a rotated session.
     * Each attempt first reserves a try on the pending row (its lock orders concurrent attempts), so at
     * most ENROL_TRIES codes are ever checked against one secret; the last wrong one discards it.
     */
    confirmEnrol: (tenant: TenantRef, session: ValidSession, code: string, ctx: ActionContext) =>
      withMail(deps, tenant, async (tx, outbox) => {
        const row = await tx
          .updateTable('user_totp')
          .set({ enrol_failures: sql`enrol_failures + 1` })
          .where('user_id', '=', session.userId)
          .where('confirmed_at', 'is', null)
          .where('enrol_failures', '<', ENROL_TRIES)
          .returning(['secret_ciphertext', 'enrol_failures'])
          .executeTakeFirst();
        if (!row) throw identityError('mfa_not_enrolled', 'Start enrolment first.');
        const secret = openTotpSeed(deps.keys.totp, row.secret_ciphertext, secretAad(tenant, session.userId));
        const step = totpStep(secret.plaintext, code, deps.clock.now());
        if (step === null) {
          if (row.enrol_failures < ENROL_TRIES) return 'wrong' as const;
          await tx
            .deleteFrom('user_totp')
            .where('user_id', '=', session.userId)
            .where('confirmed_at', 'is', null)
            .execute();
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.mfa.enrolment_discarded',
            outcome: 'success',
            target: { type: 'user', id: session.userId },
            details: { reason: 'too_many_wrong_codes' },
          });
          return 'discarded' as const;
        }
        await tx
          .updateTable('user_totp')
          .set({ confirmed_at: deps.clock.now(), last_used_step: step, enrol_failures: 0 })
          .where('user_id', '=', session.userId)
          .execute();
        // The user's other sessions now need this factor for 2FA enforcement and step-up: re-read them.
        sessionsChanged(deps, tx, `user:${session.userId}`);
        const recoveryCodes = await issueRecoveryCodes(tx, tenant, session.userId);
        const rotated = await rotate(tx, tenant, session, ctx);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.mfa.enrolled',
          outcome: 'success',
          target: { type: 'user', id: session.userId },
        });
        // The owner is told (security review: a phisher with the password enrolled their own authenticator
        // unnoticed, and the owner was then stuck at the second-factor step).
        outbox.push(securityNotice('mfa_enrolled', tenant, session.email, deps.clock.now()));
        return { recoveryCodes, ...rotated };
      }).then(async (result) => {
        if (typeof result !== 'string') return result;
        // Recorded in its own transaction: thrown inside the one above, the rollback would erase it (and
        // the try it used).
        await inTenant(deps, tenant, (tx) =>
          audit(deps, tx, tenant, ctx, {
            action: 'identity.mfa.enrolment_failed',
            outcome: 'failure',
            target: { type: 'user', id: session.userId },
          }),
        );
        if (result === 'discarded') {
          throw identityError(
            'mfa_enrolment_discarded',
            `That code does not match either, and after ${ENROL_TRIES} wrong codes this enrolment was discarded: start again (you may be asked for your password) and scan the new code.`,
          );
        }
        throw identityError(
          'invalid_code',
          'That code does not match; check the clock of your device and try the next code.',
        );
      }),

    /** The second step of sign-in (or step-up): a TOTP or recovery code. Separate lockout counter. */
    verify: (tenant: TenantRef, session: ValidSession, code: string, ctx: ActionContext) =>
      inTenant(deps, tenant, async (tx) => {
        const now = deps.clock.now();
        const user = await tx
          .updateTable('users')
          .set({
            mfa_failures: sql`CASE WHEN mfa_locked_until <= ${now} THEN 1 ELSE mfa_failures + 1 END`,
            mfa_locked_until: sql`CASE WHEN mfa_locked_until <= ${now} THEN NULL ELSE mfa_locked_until END`,
          })
          .where('id', '=', session.userId)
          .where((eb) =>
            eb.or([
              eb.and([eb('mfa_locked_until', 'is', null), eb('mfa_failures', '<', MFA_THRESHOLD)]),
              eb('mfa_locked_until', '<=', now),
            ]),
          )
          .returning(['mfa_failures'])
          .executeTakeFirst();
        const factor = user ? await checkFactor(tx, tenant, session.userId, code) : null;
        if (!factor) {
          // The lock is set with the count, in this transaction: set later, in one of its own, a lost write
          // would leave a count at the threshold with no lock, which refuses every code for good. A count
          // found so (a refused attempt, `user` undefined) becomes the ordinary lock too. Exactly one of
          // several failures finishing together sets it (the row lock serialises them). Each lock doubles
          // the one before it (mfa_lockouts, read before its increment), until a right code.
          const locked = await tx
            .updateTable('users')
            .set({
              mfa_locked_until: doublingLockUntil(now, MFA_LOCK_SECONDS, 'mfa_lockouts'),
              mfa_lockouts: sql`mfa_lockouts + 1`,
            })
            .where('id', '=', session.userId)
            .where('mfa_failures', '>=', MFA_THRESHOLD)
            .where('mfa_locked_until', 'is', null)
            .returning('mfa_lockouts')
            .executeTakeFirst();
          return { ok: false as const, lockouts: locked?.mfa_lockouts ?? null };
        }
        await tx
          .updateTable('users')
          .set({ mfa_failures: 0, mfa_lockouts: 0 })
          .where('id', '=', session.userId)
          .execute();
        const rotated = await rotate(tx, tenant, session, ctx);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.signin.second_factor',
          outcome: 'success',
          target: { type: 'user', id: session.userId },
          details: { factor },
        });
        return { ok: true as const, factor, ...rotated };
      }).then(
        async (result) => {
          if (result.ok) return result;
          // The failure is recorded in its own transaction: the attempt above committed its counter.
          await inTenant(deps, tenant, async (tx) => {
            await audit(deps, tx, tenant, ctx, {
              action: 'identity.signin.second_factor',
              outcome: 'failure',
              target: { type: 'user', id: session.userId },
              details:
                result.lockouts === null
                  ? { locked: false }
                  : {
                      locked: true,
                      lockouts: result.lockouts,
                      lockSeconds: doublingLockSeconds(MFA_LOCK_SECONDS, result.lockouts - 1),
                    },
            });
          });
          throw identityError('invalid_code', 'That code is not valid (or was already used).');
        },
        refusedUnreadable(tenant, session.userId, ctx),
      ),

    regenerateRecoveryCodes: (tenant: TenantRef, session: ValidSession, ctx: ActionContext) =>
      inTenant(deps, tenant, async (tx) => {
        const codes = await issueRecoveryCodes(tx, tenant, session.userId);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.mfa.recovery_regenerated',
          outcome: 'success',
          target: { type: 'user', id: session.userId },
        });
        return codes;
      }),

    /**
     * An administrator's reset of a user's second factor (Keycloak's "remove credential"): for a user who
     * lost their authenticator and recovery codes, or whose account got an authenticator that is not
     * theirs. Removes the confirmed authenticator and every recovery code, clears the second-factor
     * lockout, ends every session of the user (every node forgets them after the commit) and mails the
     * user a notice, in one transaction with its audit. Their next sign-in needs the password only, or
     * leads to enrolment when the tenant requires 2FA of them. Not on oneself: an administrator's own
     * factor is theirs to keep (another administrator resets it). The route asks the caller for a recent
     * second factor (step-up) first.
     */
    async reset(tenant: TenantRef, ctx: ActionContext, userId: string, guard?: TxGuard) {
      if (ctx.actor.type === 'user' && ctx.actor.id === userId) {
        throw identityError(
          'cannot_reset_own_mfa',
          'You cannot reset your own second factor; ask another administrator to do it.',
        );
      }
      return withMail(deps, tenant, async (tx, outbox) => {
        // An approved run (four-eyes: the user's roles give administrator powers) re-checks the approval.
        await guard?.(tx);
        // The user's row first, as a sign-in's second step (verify) and every revocation take it: the
        // confirmed authenticator's row is then locked by nobody else that waits for the user's row. A
        // pending enrolment (locked by its confirmation, which takes the user's row next) is not matched,
        // so not waited for: it is no authenticator, and an enrolment confirming meanwhile is either seen
        // here once committed or answered 409 (send it again).
        const user = await createUserRepository(tx).lockById(userId);
        if (!user) throw identityError('user_not_found', 'No user has this id in this tenant.');
        // The gate asked for approval when it read administrator powers; one granted since is seen here
        // (Access's rows read FOR SHARE until this commits), as for an enable.
        await refuseUnapprovedAdminChange(deps, tx, ctx, userId, guard, 'resetting their second factor');
        const removed = await tx
          .deleteFrom('user_totp')
          .where('user_id', '=', userId)
          .where('confirmed_at', 'is not', null)
          .returning('user_id')
          .executeTakeFirst();
        if (!removed) {
          throw identityError('mfa_not_enrolled', 'This user has no authenticator to reset.');
        }
        const codes = await tx.deleteFrom('recovery_codes').where('user_id', '=', userId).executeTakeFirst();
        await tx
          .updateTable('users')
          .set({ mfa_failures: 0, mfa_locked_until: null, mfa_lockouts: 0 })
          .where('id', '=', userId)
          .execute();
        const sessionsEnded = await revokeAllInTx(deps, tx, userId);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.mfa.reset',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: { sessionsEnded, recoveryRemoved: Number(codes.numDeletedRows) },
        });
        outbox.push(securityNotice('mfa_reset', tenant, user.email, deps.clock.now()));
        return { sessionsEnded };
      });
    },

    status: (tenant: TenantRef, userId: string) =>
      inTenant(deps, tenant, async (tx) => {
        const row = await tx
          .selectFrom('user_totp')
          .select('confirmed_at')
          .where('user_id', '=', userId)
          .executeTakeFirst();
        const left = await tx
          .selectFrom('recovery_codes')
          .select(sql<number>`count(*)::int`.as('n'))
          .where('user_id', '=', userId)
          .where('used_at', 'is', null)
          .executeTakeFirstOrThrow();
        return { totp: Boolean(row?.confirmed_at), recoveryCodesLeft: left.n };
      }),
  };

  /** The seed opens under no configured key: the attempt was rolled back; recorded, then refused. */
  function refusedUnreadable(tenant: TenantRef, userId: string, ctx: ActionContext) {
    return async (error: unknown): Promise<never> => {
      if (isFactorUnavailable(error)) {
        await inTenant(deps, tenant, (tx) =>
          audit(deps, tx, tenant, ctx, {
            action: 'identity.signin.second_factor',
            outcome: 'failure',
            target: { type: 'user', id: userId },
            details: { reason: 'secret_unreadable' },
          }),
        );
      }
      throw error;
    };
  }

  /** A second factor raises privilege: the old token is revoked and a new one issued. */
  async function rotate(tx: Tx, tenant: TenantRef, session: ValidSession, ctx: ActionContext) {
    const settings = await loadSettings(tx, tenant.id);
    const carried = await revokeSessionInTx(deps, tx, session.id);
    // Ended while this request ran (a sign-out, password reset or disable won the race): no new token.
    if (!carried) throw platformError('unauthenticated', 'This session has ended; sign in again.');
    const next = await createSession(
      deps,
      tx,
      settings,
      {
        tenantId: tenant.id,
        userId: session.userId,
        stage: 'active',
        kind: session.kind,
        mfaAt: deps.clock.now(),
        carried,
      },
      ctx,
    );
    return { sessionId: next.id, token: next.token };
  }
}
