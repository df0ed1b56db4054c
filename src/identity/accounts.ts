import type { OutboundMail } from '../mail/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { hashToken, newToken } from '../platform/crypto/tokens.ts';
import { acceptNewPassword, storePassword } from './credentials.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { controlCharactersError, hasControlCharacters, normaliseEmail } from './email.ts';
import { identityError } from './errors.ts';
import { revokeAllInTx, type ValidSession } from './sessions.ts';
import { loadSettings } from './settings.ts';
import type { UserRole, UserTokensTable } from './tables.ts';
import { createUserRepository, toPublicUser } from './users.ts';

type Purpose = UserTokensTable['purpose'];
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

/**
 * Runs fn in the tenant's transaction and sends the mail it queued only after the commit: a link to a
 * token that was rolled back must never go out, and the mailer must not hold the transaction open.
 */
async function withMail<R>(
  deps: IdentityDeps,
  tenant: TenantRef,
  fn: (tx: Tx, outbox: OutboundMail[]) => Promise<R>,
): Promise<R> {
  const outbox: OutboundMail[] = [];
  const result = await inTenant(deps, tenant, (tx) => fn(tx, outbox));
  for (const mail of outbox) await deps.mailer.send(mail);
  return result;
}

export function createAccountService(deps: IdentityDeps) {
  const mustEmail = (raw: string) => {
    if (hasControlCharacters(raw)) throw controlCharactersError();
    const email = normaliseEmail(raw);
    if (!email) throw identityError('invalid_email', `"${raw.slice(0, 100)}" is not an email address.`);
    return email;
  };

  /** A single-use, expiring link token; only its hash is stored. The link goes out by mail. */
  async function issueLink(
    tx: Tx,
    tenant: TenantRef,
    userId: string,
    email: string,
    purpose: Purpose,
    outbox: OutboundMail[],
  ) {
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
    const subject = {
      invite: 'You are invited',
      verify_email: 'Confirm your email address',
      reset_password: 'Reset your password',
    }[purpose];
    outbox.push({
      to: email,
      subject: `${subject} (${tenant.slug})`,
      text: `${subject}:\n\n${link}\n\nThe link works once and expires.`,
    });
  }

  /** Consumes a link token atomically: of two uses, exactly one succeeds. */
  async function consume(tx: Tx, token: string, purpose: Purpose) {
    const row = await tx
      .updateTable('user_tokens')
      .set({ used_at: deps.clock.now() })
      .where('token_hash', '=', hashToken(token))
      .where('purpose', '=', purpose)
      .where('used_at', 'is', null)
      .where('expires_at', '>', deps.clock.now())
      .returning(['user_id'])
      .executeTakeFirst();
    if (!row)
      throw identityError('token_invalid', 'This link is invalid, used or expired; ask for a new one.');
    // Locked, so that a disable committing meanwhile is seen: a link never re-activates a disabled user.
    const user = await createUserRepository(tx).lockById(row.user_id);
    if (!user || user.status === 'disabled')
      throw identityError('token_invalid', 'This link is invalid, used or expired; ask for a new one.');
    return user;
  }

  return {
    invite: (
      tenant: TenantRef,
      ctx: ActionContext,
      input: { email: string; displayName: string; role: UserRole },
    ) =>
      withMail(deps, tenant, async (tx, outbox) => {
        const email = mustEmail(input.email);
        const user = await createUserRepository(tx).insert({
          tenant_id: tenant.id,
          email,
          display_name: input.displayName,
          role: input.role,
          status: 'invited',
        });
        if (!user)
          throw identityError('user_exists', `A user with the email ${email} exists in this tenant.`);
        await issueLink(tx, tenant, user.id, email, 'invite', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.invited',
          outcome: 'success',
          target: { type: 'user', id: user.id },
          details: { email, role: input.role },
        });
        return toPublicUser(user, deps.clock.now());
      }),

    acceptInvite: (tenant: TenantRef, ctx: ActionContext, token: string, password: string) =>
      inTenant(deps, tenant, async (tx) => {
        const user = await consume(tx, token, 'invite');
        const hash = await acceptNewPassword(deps, tx, await loadSettings(tx, tenant.id), user, password);
        await storePassword(deps, tx, user, hash);
        await createUserRepository(tx).update(user.id, {
          status: 'active',
          email_verified_at: deps.clock.now(),
        });
        await audit(
          deps,
          tx,
          tenant,
          { ...ctx, actor: { type: 'user', id: user.id } },
          {
            action: 'identity.user.invitation_accepted',
            outcome: 'success',
            target: { type: 'user', id: user.id },
          },
        );
      }),

    signUp: (
      tenant: TenantRef,
      ctx: ActionContext,
      input: { email: string; displayName: string; password: string },
    ) =>
      withMail(deps, tenant, async (tx, outbox) => {
        const settings = await loadSettings(tx, tenant.id);
        if (!settings.self_signup)
          throw identityError(
            'signup_closed',
            'This organisation does not allow self sign-up; ask an administrator for an invitation.',
          );
        const email = mustEmail(input.email);
        const probe = {
          id: '00000000-0000-0000-0000-000000000000',
          email,
          display_name: input.displayName,
          password_hash: null,
        };
        const hash = await acceptNewPassword(deps, tx, settings, probe, input.password);
        const user = await createUserRepository(tx).insert({
          tenant_id: tenant.id,
          email,
          display_name: input.displayName,
          role: 'member',
          status: 'active',
        });
        // Same answer whether or not the address is registered: sign-up must not reveal accounts.
        if (!user) {
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.user.signup',
            outcome: 'failure',
            details: { email, reason: 'exists' },
          });
          return;
        }
        await storePassword(deps, tx, user, hash);
        await issueLink(tx, tenant, user.id, email, 'verify_email', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.signup',
          outcome: 'success',
          target: { type: 'user', id: user.id },
          details: { email },
        });
      }),

    verifyEmail: (tenant: TenantRef, ctx: ActionContext, token: string) =>
      inTenant(deps, tenant, async (tx) => {
        const user = await consume(tx, token, 'verify_email');
        await createUserRepository(tx).update(user.id, { email_verified_at: deps.clock.now() });
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.email_verified',
          outcome: 'success',
          target: { type: 'user', id: user.id },
        });
      }),

    /** Always answers the same; mails a link only when the account exists. */
    forgotPassword: (tenant: TenantRef, ctx: ActionContext, rawEmail: string) =>
      withMail(deps, tenant, async (tx, outbox) => {
        if (hasControlCharacters(rawEmail)) throw controlCharactersError();
        const email = normaliseEmail(rawEmail);
        const user = email ? await createUserRepository(tx).byEmail(email) : undefined;
        if (user && user.status === 'active' && email)
          await issueLink(tx, tenant, user.id, email, 'reset_password', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.password.reset_requested',
          outcome: user ? 'success' : 'failure',
          ...(user ? { target: { type: 'user', id: user.id } } : {}),
          details: { email: email ?? null },
        });
      }),

    /** Sets a new password from a reset link; unlocks the account and ends every session. */
    resetPassword: (tenant: TenantRef, ctx: ActionContext, token: string, password: string) =>
      inTenant(deps, tenant, async (tx) => {
        const user = await consume(tx, token, 'reset_password');
        const hash = await acceptNewPassword(deps, tx, await loadSettings(tx, tenant.id), user, password);
        await storePassword(deps, tx, user, hash);
        await createUserRepository(tx).update(user.id, { password_lockouts: 0 });
        const ended = await revokeAllInTx(deps, tx, user.id);
        await audit(
          deps,
          tx,
          tenant,
          { ...ctx, actor: { type: 'user', id: user.id } },
          {
            action: 'identity.password.reset',
            outcome: 'success',
            target: { type: 'user', id: user.id },
            details: { sessionsEnded: ended, unlocked: true },
          },
        );
      }),

    /** Web only (cookie sessions), as the fact sheets promise; needs the current password. */
    changePassword: (
      tenant: TenantRef,
      ctx: ActionContext,
      session: ValidSession,
      current: string,
      next: string,
    ) =>
      inTenant(deps, tenant, async (tx) => {
        if (session.kind !== 'cookie')
          throw identityError('web_only', 'Passwords are changed on the web only, signed in with a browser.');
        const user = await createUserRepository(tx).byId(session.userId);
        if (!user?.password_hash || !(await deps.hasher.verify(user.password_hash, current)).ok) {
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.password.changed',
            outcome: 'failure',
            target: { type: 'user', id: session.userId },
            details: { reason: 'wrong_current' },
          });
          throw identityError('invalid_credentials', 'The current password is not correct.');
        }
        const hash = await acceptNewPassword(deps, tx, await loadSettings(tx, tenant.id), user, next);
        await storePassword(deps, tx, user, hash);
        // Other sessions end; this one stays.
        await revokeAllInTx(deps, tx, user.id, session.id);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.password.changed',
          outcome: 'success',
          target: { type: 'user', id: user.id },
        });
      }),

    unlock: (tenant: TenantRef, ctx: ActionContext, userId: string) =>
      inTenant(deps, tenant, async (tx) => {
        const user = await createUserRepository(tx).byId(userId);
        if (!user) throw identityError('user_not_found', 'No user has this id in this tenant.');
        const updated = await createUserRepository(tx).update(userId, {
          password_failures: 0,
          password_locked_until: null,
          password_lockouts: 0,
          mfa_failures: 0,
          mfa_locked_until: null,
        });
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.unlocked',
          outcome: 'success',
          target: { type: 'user', id: userId },
        });
        return toPublicUser(updated, deps.clock.now());
      }),

    list: (tenant: TenantRef, after: string | null, limit: number) =>
      inTenant(deps, tenant, async (tx) => {
        const rows = await createUserRepository(tx).list(after, limit + 1);
        return {
          items: rows.slice(0, limit).map((u) => toPublicUser(u, deps.clock.now())),
          more: rows.length > limit,
        };
      }),

    get: (tenant: TenantRef, userId: string) =>
      inTenant(deps, tenant, async (tx) => {
        const user = await createUserRepository(tx).byId(userId);
        if (!user) throw identityError('user_not_found', 'No user has this id in this tenant.');
        return toPublicUser(user, deps.clock.now());
      }),
  };
}
