import type { OutboundMail } from '../mail/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { hashToken, newToken } from '../platform/crypto/tokens.ts';
import { AppError } from '../platform/http/problem.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import type { UserTokensTable } from './tables.ts';
import { createUserRepository } from './users.ts';

export type Purpose = UserTokensTable['purpose'];
/**
 * New passwords a link that sets one (invitation, reset) screens at most: enough for a person's tries
 * against the policy, too few to keep the hasher busy by replaying one link (migration 0083).
 */
export const LINK_SCREENINGS = 10;

const lifetimeMs: Record<Purpose, number> = {
  invite: 7 * 86_400_000,
  verify_email: 2 * 86_400_000,
  reset_password: 3_600_000,
};
const pagePath: Record<Purpose, string> = {
  invite: 'invite',
  verify_email: 'verify-email',
  reset_password: 'reset',
};
const subjects: Record<Purpose, string> = {
  invite: 'You are invited',
  verify_email: 'Confirm your email address',
  reset_password: 'Reset your password',
};

/**
 * What the mail says besides the link. A sign-up's confirmation makes an account with a password its
 * maker chose usable by whoever knows it: the owner of the address must confirm only their own sign-up.
 */
const notes: Record<Purpose, string> = {
  invite: 'The link works once and expires.',
  verify_email:
    'Someone signed up with this address and a password of their choice. Confirm only if that was you: ' +
    'confirming lets whoever knows that password sign in with this address. If it was not you, ignore ' +
    'this mail; the account stays unusable. The link works once and expires.',
  reset_password: 'The link works once and expires. If you did not ask for it, ignore this mail.',
};

const invalid = () =>
  identityError('token_invalid', 'This link is invalid, used or expired; ask for a new one.');

/** Single-use, expiring link tokens mailed to users; only their SHA-256 is stored. */
export function createLinks(deps: IdentityDeps) {
  /** Marks the user's unused links of one purpose used: a newer link, a reset or a change voids them. */
  const voidLinks = (tx: Tx, userId: string, purpose: Purpose) =>
    tx
      .updateTable('user_tokens')
      .set({ used_at: deps.clock.now() })
      .where('user_id', '=', userId)
      .where('purpose', '=', purpose)
      .where('used_at', 'is', null)
      .execute();

  return {
    voidLinks,

    /** Issues a link and queues its mail; only the newest password-reset link of a user stays valid. */
    async issue(
      tx: Tx,
      tenant: TenantRef,
      userId: string,
      email: string,
      purpose: Purpose,
      outbox: OutboundMail[],
    ) {
      if (purpose === 'reset_password') await voidLinks(tx, userId, purpose);
      const { token, hash } = newToken('rmp_l');
      await tx
        .insertInto('user_tokens')
        .values({
          tenant_id: tenant.id,
          user_id: userId,
          purpose,
          token_hash: hash,
          expires_at: new Date(deps.clock.now().getTime() + lifetimeMs[purpose]),
          used_at: null,
        })
        .execute();
      const link = `${deps.publicUrl}/t/${tenant.slug}/${pagePath[purpose]}?token=${encodeURIComponent(token)}`;
      outbox.push({
        to: email,
        subject: `${subjects[purpose]} (${tenant.slug})`,
        text: `${subjects[purpose]}:\n\n${link}\n\n${notes[purpose]}`,
      });
    },

    /**
     * The user a link token is valid for, without using it up: what a redemption reads before the slow
     * work it does outside any transaction. `consume` decides later, exactly once. Each look counts one
     * screening of a new password, before the screening runs (a burst of them gets no more than the
     * bound): a link refuses to screen more than LINK_SCREENINGS passwords.
     */
    async peek(tx: Tx, token: string, purpose: Purpose) {
      const now = deps.clock.now();
      const counted = await tx
        .updateTable('user_tokens')
        .set((eb) => ({ screenings: eb('screenings', '+', 1) }))
        .where('token_hash', '=', hashToken(token))
        .where('purpose', '=', purpose)
        .where('used_at', 'is', null)
        .where('expires_at', '>', now)
        .where('screenings', '<', LINK_SCREENINGS)
        .returning('user_id')
        .executeTakeFirst();
      if (!counted) throw invalid();
      const user = await createUserRepository(tx).byId(counted.user_id);
      if (!user || user.status === 'disabled') throw invalid();
      return user;
    },

    /**
     * Consumes a link token atomically: of two uses, exactly one succeeds. The same statement uses up
     * the user's other unused links of that purpose (an older reset link must not outlive a reset), and
     * takes their row locks in one go before the user's, the order a disable takes them in too.
     */
    async consume(tx: Tx, token: string, purpose: Purpose) {
      const now = deps.clock.now();
      const hash = hashToken(token);
      const rows = await tx
        .updateTable('user_tokens')
        .set({ used_at: now })
        .where('purpose', '=', purpose)
        .where('used_at', 'is', null)
        .where('user_id', '=', (eb) =>
          eb
            .selectFrom('user_tokens as t')
            .select('t.user_id')
            .where('t.token_hash', '=', hash)
            .where('t.purpose', '=', purpose)
            .where('t.used_at', 'is', null)
            .where('t.expires_at', '>', now),
        )
        .returning(['user_id', 'token_hash'])
        .execute();
      // PGlite hands bytea back as a Uint8Array, node-postgres as a Buffer.
      const row = rows.find((r) => Buffer.from(r.token_hash).equals(hash));
      if (!row) throw invalid();
      // Locked, so that a disable committing meanwhile is seen: a link never re-activates a disabled user.
      const user = await createUserRepository(tx).lockById(row.user_id);
      if (!user || user.status === 'disabled') throw invalid();
      return user;
    },

    /**
     * Runs a redemption; a refused link is audited in its own transaction (the redemption's rolled
     * back), with why it was refused and never the token itself.
     */
    async redeeming<R>(
      tenant: TenantRef,
      ctx: ActionContext,
      token: string,
      purpose: Purpose,
      run: () => Promise<R>,
    ): Promise<R> {
      try {
        return await run();
      } catch (error) {
        if (error instanceof AppError && error.code === 'token_invalid') {
          await inTenant(deps, tenant, async (tx) => {
            const known = await tx
              .selectFrom('user_tokens as t')
              .innerJoin('users as u', 'u.id', 't.user_id')
              .select(['t.user_id', 't.used_at', 't.expires_at', 't.screenings', 'u.status'])
              .where('t.token_hash', '=', hashToken(token))
              .where('t.purpose', '=', purpose)
              .executeTakeFirst();
            const reason = !known
              ? 'unknown'
              : known.used_at
                ? 'used'
                : known.expires_at <= deps.clock.now()
                  ? 'expired'
                  : known.status === 'disabled'
                    ? 'user_disabled'
                    : known.screenings >= LINK_SCREENINGS
                      ? 'too_many_attempts'
                      : 'used';
            await audit(deps, tx, tenant, ctx, {
              action: 'identity.link.refused',
              outcome: 'failure',
              ...(known ? { target: { type: 'user', id: known.user_id } } : {}),
              details: { purpose, reason },
            });
          });
        }
        throw error;
      }
    },
  };
}
