import { TOTP } from 'otpauth';
import { type IdentitySettingsView, toTenantRef } from '../src/identity/index.ts';
import { systemContext } from '../src/platform/context.ts';
import type { TestApp } from './helpers.ts';

/**
 * The newest outbox link for a recipient, as a person would click it. Mails without a link (security
 * notices) are passed over: the newest mail to an address may be a notice sent after the link.
 */
export async function linkFromOutbox(t: TestApp, to: string): Promise<{ url: URL; token: string }> {
  const mails = await t.app.services.mailer.outbox(50);
  const link = /https?:\/\/\S+/;
  const mail = mails.find((m) => m.to === to && link.test(m.text));
  const match = mail && link.exec(mail.text);
  if (!match) throw new Error(`no mail with a link for ${to}`);
  const url = new URL(match[0]);
  return { url, token: url.searchParams.get('token') ?? '' };
}

export const totpCode = (secret: string, at = Date.now()) =>
  new TOTP({ secret, digits: 6, period: 30, algorithm: 'SHA1' }).generate({ timestamp: at });

export const strongPassword = 'Correct-Horse-Battery-42';

/**
 * Invites a tenant administrator: the tenant's first through the operator route, as in production. That
 * route refuses once the tenant has an administrator (`tenant_has_admin`); later administrators are
 * invited as the tenant's own admins would be, but through the service, as an approved four-eyes
 * invitation would run (so suites can set up several admins without going through approvals).
 */
export async function inviteTenantAdmin(t: TestApp, slug: string, email: string, displayName = 'Ada Admin') {
  const invite = await t.app.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/admins`,
    headers: t.asOperator,
    payload: { email, displayName },
  });
  if (invite.statusCode === 201) return;
  if (invite.statusCode !== 409 || invite.json().code !== 'tenant_has_admin') {
    throw new Error(`invite: ${invite.body}`);
  }
  const tenant = toTenantRef(await t.app.services.tenancy.requireActive(slug));
  await t.app.services.identity.accounts.invite(tenant, systemContext('test'), {
    email,
    displayName,
    role: 'tenant-admin',
  });
}

/**
 * Changes a tenant's identity settings through the service, as an approved four-eyes change runs: for
 * set-up that weakens them (self sign-up turned on, longer session limits), which the route holds for a
 * second person's approval.
 */
export async function changeSettingsAsApproved(
  t: TestApp,
  slug: string,
  change: (s: IdentitySettingsView) => void,
): Promise<void> {
  const tenant = toTenantRef(await t.app.services.tenancy.requireActive(slug));
  const settings = await t.app.services.identity.settings.get(tenant);
  change(settings);
  await t.app.services.identity.settings.update(tenant, systemContext('test'), settings);
}

/**
 * Creates a tenant admin through the real invitation flow and signs them in (enrolling TOTP). `now` is
 * the time the authenticator shows (the app's fake clock, when the test runs on one).
 */
export async function adminSession(
  t: TestApp,
  slug: string,
  email = `admin@${slug}.test`,
  now: () => number = Date.now,
) {
  await inviteTenantAdmin(t, slug, email);
  const { token } = await linkFromOutbox(t, email);
  const accept = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/invitations/accept`,
    payload: { token, password: strongPassword },
  });
  if (accept.statusCode !== 200) throw new Error(`accept: ${accept.body}`);
  const signIn = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/auth/signin`,
    payload: { email, password: strongPassword },
  });
  const first = signIn.json() as { stage: string; token: string };
  const auth = { authorization: `Bearer ${first.token}` };
  const enrol = await t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}/me/mfa/totp`, headers: auth });
  const { secret } = enrol.json() as { secret: string };
  const confirm = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/me/mfa/totp/confirm`,
    headers: auth,
    payload: { code: totpCode(secret, now()) },
  });
  const done = confirm.json() as { token: string; recoveryCodes: string[] };
  return {
    userId: '',
    email,
    secret,
    recoveryCodes: done.recoveryCodes,
    firstStage: first.stage,
    headers: { authorization: `Bearer ${done.token}` },
  };
}

/** Invites a user as the admin and accepts the invitation with `password` (or the strong default). */
export async function inviteAndAccept(
  t: TestApp,
  slug: string,
  admin: { headers: Record<string, string> },
  email: string,
  password = strongPassword,
) {
  const invited = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/users`,
    headers: admin.headers,
    payload: { email, role: 'member' },
  });
  if (invited.statusCode !== 201) throw new Error(`invite ${email}: ${invited.body}`);
  const { token } = await linkFromOutbox(t, email);
  const accepted = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/invitations/accept`,
    payload: { token, password },
  });
  return { user: invited.json() as { id: string }, accepted };
}

/** A user's authenticator and recovery-code rows, as the owner sees them (no row-level security). */
export const factorRows = (t: TestApp, userId: string) =>
  t.database.engine.asOwner(async (o) => {
    const [totp] = (await o.query('SELECT count(*)::int AS n FROM user_totp WHERE user_id = $1', [
      userId,
    ])) as { n: number }[];
    const [codes] = (await o.query('SELECT count(*)::int AS n FROM recovery_codes WHERE user_id = $1', [
      userId,
    ])) as { n: number }[];
    return { totp: totp?.n, recoveryCodes: codes?.n };
  });
