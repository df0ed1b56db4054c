import { sql } from 'kysely';
import type { OutboundMail } from '../mail/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { TxGuard } from '../platform/db/index.ts';
import { AppError } from '../platform/http/problem.ts';
import { createChangePassword } from './change-password.ts';
import {
  assertPasswordUnchanged,
  readPasswordSubject,
  ScreeningStale,
  screenNewPassword,
  settingPassword,
  settingsForWrite,
  storePassword,
} from './credentials.ts';
import { audit, inTenant, type ServiceDeps, type TenantRef, type Tx } from './deps.ts';
import { controlCharactersError, hasControlCharacters, normaliseEmail } from './email.ts';
import { claimMail, createEmailVerification } from './email-verification.ts';
import { identityError } from './errors.ts';
import { createLinks } from './links.ts';
import { withMail } from './outgoing-mail.ts';
import { securityNotice } from './security-notices.ts';
import { revokeAllInTx } from './session-revocation.ts';
import type { UserRole } from './tables.ts';
import { refuseUnapprovedAdminChange } from './user-status.ts';
import { createUserRepository, toPublicUser, type UserRow } from './users.ts';

export function createAccountService(deps: ServiceDeps) {
  const links = createLinks(deps);
  const verification = createEmailVerification(deps, links);
  const mustEmail = (raw: string) => {
    if (hasControlCharacters(raw)) throw controlCharactersError();
    const email = normaliseEmail(raw);
    if (!email) throw identityError('invalid_email', `"${raw.slice(0, 100)}" is not an email address.`);
    return email;
  };

  async function inviteInTx(
    tx: Tx,
    outbox: OutboundMail[],
    tenant: TenantRef,
    ctx: ActionContext,
    input: { email: string; displayName: string; role: UserRole },
  ) {
    const email = mustEmail(input.email);
    const user = await createUserRepository(tx).insert({
      tenant_id: tenant.id,
      email,
      display_name: input.displayName,
      role: input.role,
      status: 'invited',
    });
    if (!user) throw identityError('user_exists', `A user with the email ${email} exists in this tenant.`);
    await links.issue(tx, tenant, user.id, email, 'invite', outbox);
    await audit(deps, tx, tenant, ctx, {
      action: 'identity.user.invited',
      outcome: 'success',
      target: { type: 'user', id: user.id },
      details: { email, role: input.role },
    });
    return toPublicUser(user, deps.clock.now());
  }

  /**
   * An active tenant-admin (users.role is the label Access keeps: tenant-admin when any assignment is), or
   * an invited one whose link is unused and unexpired. A disabled admin or a lapsed invitation does not
   * count, so a tenant left without a working administrator can be given a first one again.
   */
  async function hasAdminOrPendingAdmin(tx: Tx): Promise<boolean> {
    const now = deps.clock.now();
    const found = await tx
      .selectFrom('users as u')
      .select('u.id')
      .where('u.role', '=', 'tenant-admin')
      .where((eb) =>
        eb.or([
          eb('u.status', '=', 'active'),
          eb.and([
            eb('u.status', '=', 'invited'),
            eb.exists(
              eb
                .selectFrom('user_tokens as k')
                .select('k.id')
                .whereRef('k.user_id', '=', 'u.id')
                .where('k.purpose', '=', 'invite')
                .where('k.used_at', 'is', null)
                .where('k.expires_at', '>', now),
            ),
          ]),
        ]),
      )
      .limit(1)
      .executeTakeFirst();
    return found !== undefined;
  }

  /**
   * Redeems a link that sets a password. The link is only looked at first (valid, unused, unexpired,
   * user not disabled) in a short transaction that also reads the policy and the user's old hashes; the
   * screening and the hash run with no transaction open; then the write transaction uses the link up
   * (exactly once, whatever runs concurrently), re-checks that the user and the policy are as screened
   * (else screens again), stores the hash and runs `finish`. A refused link is audited by `redeeming`.
   */
  const redeemWithPassword = (
    tenant: TenantRef,
    ctx: ActionContext,
    token: string,
    purpose: 'invite' | 'reset_password',
    password: string,
    finish: (tx: Tx, user: UserRow, outbox: OutboundMail[]) => Promise<void>,
  ) =>
    links.redeeming(tenant, ctx, token, purpose, () =>
      settingPassword({
        read: () =>
          inTenant(deps, tenant, async (tx) => {
            const user = await links.peek(tx, token, purpose);
            return { user, subject: await readPasswordSubject(tx, tenant.id, user) };
          }),
        screen: ({ subject }) => screenNewPassword(deps, subject, password),
        write: ({ user: read, subject }, hash) =>
          withMail(deps, tenant, async (tx, outbox) => {
            await settingsForWrite(tx, subject);
            const user = await links.consume(tx, token, purpose);
            if (user.id !== read.id || user.status !== read.status) throw new ScreeningStale();
            assertPasswordUnchanged(subject, user);
            await storePassword(deps, tx, user, hash);
            await finish(tx, user, outbox);
          }),
      }),
    );

  return {
    invite: (
      tenant: TenantRef,
      ctx: ActionContext,
      input: { email: string; displayName: string; role: UserRole },
      // An approved invitation (four-eyes) passes the approval's re-checks, run first in this transaction.
      guard?: TxGuard,
    ) =>
      withMail(deps, tenant, async (tx, outbox) => {
        await guard?.(tx);
        return inviteInTx(tx, outbox, tenant, ctx, input);
      }),

    /**
     * An operator's invitation of a tenant's first administrator, refused once the tenant has one (or a
     * pending invitation for one that can still be accepted): later administrators are the tenant's own
     * business, and an operator who needs access asks for an elevation. Two first invitations at once take
     * turns on a lock keyed by the tenant, so at most one of them is sent.
     */
    inviteFirstAdmin: (
      tenant: TenantRef,
      ctx: ActionContext,
      input: { email: string; displayName: string },
    ) =>
      withMail(deps, tenant, async (tx, outbox) => {
        await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.first_admin'), hashtext(${tenant.id}))`.execute(
          tx,
        );
        if (await hasAdminOrPendingAdmin(tx)) {
          throw identityError(
            'tenant_has_admin',
            'This tenant already has an administrator (or a pending invitation for its first one). Its own ' +
              'administrators invite further ones (POST /api/v1/t/' +
              tenant.slug +
              '/users with role tenant-admin, approved by a second person under four-eyes); an operator who ' +
              'needs access asks for an elevation (POST /api/v1/access/elevations).',
          );
        }
        return inviteInTx(tx, outbox, tenant, ctx, { ...input, role: 'tenant-admin' });
      }),

    acceptInvite: (tenant: TenantRef, ctx: ActionContext, token: string, password: string) =>
      redeemWithPassword(tenant, ctx, token, 'invite', password, async (tx, user) => {
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

    /**
     * Reads the policy (and whether sign-up is open) in one short transaction, screens and hashes the
     * password with none open, then inserts the user in a second one that re-checks both.
     */
    signUp: async (
      tenant: TenantRef,
      ctx: ActionContext,
      input: { email: string; displayName: string; password: string },
    ) => {
      const closed = () =>
        identityError(
          'signup_closed',
          'This organisation does not allow self sign-up; ask an administrator for an invitation.',
        );
      try {
        await settingPassword({
          read: () =>
            inTenant(deps, tenant, async (tx) => {
              const subject = await readPasswordSubject(tx, tenant.id, null);
              if (!subject.settings.self_signup) throw closed();
              const email = mustEmail(input.email);
              return { email, subject: { ...subject, person: { email, name: input.displayName } } };
            }),
          // Hashed whether or not the address is registered: the answer's time must not reveal accounts.
          screen: ({ subject }) => screenNewPassword(deps, subject, input.password),
          write: ({ email, subject }, hash) =>
            withMail(deps, tenant, async (tx, outbox) => {
              if (!(await settingsForWrite(tx, subject)).self_signup) throw closed();
              const user = await createUserRepository(tx).insert({
                tenant_id: tenant.id,
                email,
                display_name: input.displayName,
                role: 'member',
                status: 'active',
                // No session until the address is confirmed (sign-in.ts); invited users confirm it by
                // accepting.
                email_verification_required: true,
              });
              // Same answer whether or not the address is registered: sign-up must not reveal accounts.
              // Both paths mail the address once (a verification link, or a notice to the owner), in the
              // background.
              if (!user) {
                const existing = await createUserRepository(tx).byEmail(email);
                if (existing)
                  await verification.noticeExistingAccount(tx, tenant, existing.id, email, outbox);
                await audit(deps, tx, tenant, ctx, {
                  action: 'identity.user.signup',
                  outcome: 'failure',
                  details: { email, reason: 'exists' },
                });
                return;
              }
              await storePassword(deps, tx, user, hash);
              await links.issue(tx, tenant, user.id, email, 'verify_email', outbox);
              await audit(deps, tx, tenant, ctx, {
                action: 'identity.user.signup',
                outcome: 'success',
                target: { type: 'user', id: user.id },
                details: { email },
              });
            }),
        });
      } catch (error) {
        if (!(error instanceof AppError && error.code === 'signup_closed')) throw error;
        // Audited on its own: the transaction that refused rolled back.
        await inTenant(deps, tenant, (tx) =>
          audit(deps, tx, tenant, ctx, {
            action: 'identity.user.signup',
            outcome: 'failure',
            details: { email: normaliseEmail(input.email), reason: 'signup_closed' },
          }),
        );
        throw error;
      }
    },

    verifyEmail: (tenant: TenantRef, ctx: ActionContext, token: string) =>
      links.redeeming(tenant, ctx, token, 'verify_email', () =>
        inTenant(deps, tenant, async (tx) => {
          const user = await links.consume(tx, token, 'verify_email');
          await createUserRepository(tx).update(user.id, { email_verified_at: deps.clock.now() });
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.user.email_verified',
            outcome: 'success',
            target: { type: 'user', id: user.id },
          });
        }),
      ),

    /** Always answers the same; mails a link only when the account exists. */
    forgotPassword: (tenant: TenantRef, ctx: ActionContext, rawEmail: string) =>
      withMail(deps, tenant, async (tx, outbox) => {
        if (hasControlCharacters(rawEmail)) throw controlCharactersError();
        const email = normaliseEmail(rawEmail);
        const user = email ? await createUserRepository(tx).byEmail(email) : undefined;
        // One link per cooldown: a new link voids the older ones (links.issue), so requests without a
        // pause would flood the inbox and void the owner's link between opening and submitting it.
        // Within the cooldown the last link mailed stays the valid one; the answer is the same.
        const sent =
          user !== undefined &&
          user.status === 'active' &&
          email !== null &&
          (await claimMail(deps, tx, user.id, 'reset_mail_at'));
        if (sent) await links.issue(tx, tenant, user.id, user.email, 'reset_password', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.password.reset_requested',
          outcome: user ? 'success' : 'failure',
          ...(user ? { target: { type: 'user', id: user.id } } : {}),
          details: { email: email ?? null, ...(user ? { linkSent: sent } : {}) },
        });
      }),

    /** Sets a new password from a reset link; unlocks the account and ends every session. */
    resetPassword: (tenant: TenantRef, ctx: ActionContext, token: string, password: string) =>
      redeemWithPassword(tenant, ctx, token, 'reset_password', password, async (tx, user, outbox) => {
        // The reset link reached the address, which proves it as a verification link would.
        await createUserRepository(tx).update(user.id, {
          password_lockouts: 0,
          email_verified_at: user.email_verified_at ?? deps.clock.now(),
        });
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
        outbox.push(securityNotice('password_changed', tenant, user.email, deps.clock.now()));
      }),

    /** Web only (cookie sessions); a wrong current password counts like a wrong sign-in password. */
    changePassword: createChangePassword(deps, links),

    /**
     * Lifts the password lock (and its escalation). Not the second factor's (security review): that lock
     * holds back whoever has the password, and any users:write holder could otherwise give them 5 more
     * codes per call, as often as they liked. It ends by itself, with a right code, or with the
     * administrator's second-factor reset (step-up; four-eyes for administrators; the user enrols anew).
     */
    unlock: (tenant: TenantRef, ctx: ActionContext, userId: string, guard?: TxGuard) =>
      inTenant(deps, tenant, async (tx) => {
        // An approved run (four-eyes: the user's roles give administrator powers) re-checks the approval.
        await guard?.(tx);
        const user = await createUserRepository(tx).lockById(userId);
        if (!user) throw identityError('user_not_found', 'No user has this id in this tenant.');
        // Security review: users:write (no administrator power) lifted a tenant-admin's lock as often as
        // it liked, `threshold` more guesses at their password each time, even where the tenant locks
        // until an administrator unlocks. The gate asked for approval when it read administrator powers;
        // one granted since is seen here.
        await refuseUnapprovedAdminChange(deps, tx, ctx, userId, guard, 'lifting their lock');
        const updated = await createUserRepository(tx).update(userId, {
          password_failures: 0,
          password_locked_until: null,
          password_lockouts: 0,
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
