import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { actionContext } from '../../platform/http/context.ts';
import { signedIn } from '../http-auth.ts';
import {
  cookieJar,
  csrfFor,
  formFailure,
  type PagesOptions,
  pathsFor,
  seeOther,
  sendHtml,
} from './context.ts';
import { pageError } from './errors.ts';
import {
  ChangePasswordForm,
  CsrfForm,
  NoticeQuery,
  noticeText,
  SessionParams,
  TenantParams,
} from './forms.ts';
import { html } from './html.ts';
import { csrfField, type FormError, field, form, newPasswordFields, renderPage, submit } from './layout.ts';

const when = (d: Date) => d.toISOString().replace('T', ' ').slice(0, 16);

/** The signed-in user's own pages: a landing page, change password, sessions. */
export const accountPages: FastifyPluginAsyncTypebox<PagesOptions> = async (
  app,
  { identity, findTenant, publicUrl },
) => {
  const cookies = cookieJar(publicUrl);
  const active = { access: 'user', permission: 'self' } as const;
  // The password pages are also where a session whose password has expired is sent (stage `password`).
  const passwordStages = { ...active, stages: ['active', 'password'] } as const;

  app.get(
    '/t/:tenant/account',
    { config: active, schema: { hide: true, params: TenantParams, querystring: NoticeQuery } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      const [user, mfa, { name }] = await Promise.all([
        identity.accounts.get(tenant, session.userId),
        identity.mfa.status(tenant, session.userId),
        findTenant(tenant.slug),
      ]);
      const csrf = csrfFor(identity, session);
      const body = html`<p>Signed in as <strong id="signed-in-as">${user.email}</strong>${user.displayName && ` (${user.displayName})`}.</p>
<dl class="facts">
<dt>Role</dt><dd>${user.role}</dd>
<dt>Two-step sign-in</dt><dd>${mfa.totp ? `On (${mfa.recoveryCodesLeft} recovery codes left)` : 'Off'}</dd>
</dl>
<nav class="links" aria-label="Your account"><ul>
<li><a href="${paths.password}">Change your password</a></li>
<li><a href="${paths.sessions}">Your sessions</a></li>
${mfa.totp ? html`<li><a href="${paths.twoStep}">Recovery codes and authenticator</a></li>` : html`<li><a href="${paths.enrol}">Set up two-step sign-in</a></li>`}
</ul></nav>
${form(paths.signOut, html`${csrfField(csrf)}${submit('Sign out', 'secondary')}`, 'inline')}`;
      const shell = { title: 'Your account', tenantName: name, notice: noticeText(request.query.notice) };
      return sendHtml(reply, 200, renderPage(shell, body));
    },
  );

  const passwordPage = async (slug: string, csrf: string, error?: FormError) => {
    const { name, ref } = await findTenant(slug);
    const { passwordPolicy } = await identity.settings.get(ref);
    const paths = pathsFor(slug);
    return renderPage(
      { title: 'Change your password', tenantName: name, error },
      html`${form(
        paths.password,
        html`${csrfField(csrf)}
${field({ name: 'currentPassword', label: 'Current password', type: 'password', autocomplete: 'current-password', maxLength: 1024 })}
${newPasswordFields(passwordPolicy, Boolean(error))}
${submit('Change password')}`,
      )}
<p><a href="${paths.account}">Back to your account</a></p>`,
    );
  };

  app.get(
    '/t/:tenant/account/password',
    { config: passwordStages, schema: { hide: true, params: TenantParams } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      return sendHtml(reply, 200, await passwordPage(tenant.slug, csrfFor(identity, session)));
    },
  );

  app.post(
    '/t/:tenant/account/password',
    { config: passwordStages, schema: { hide: true, params: TenantParams, body: ChangePasswordForm } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const { currentPassword, newPassword, confirmPassword } = request.body;
      try {
        if (newPassword !== confirmPassword)
          throw pageError('passwords_differ', 'The two new passwords differ; type the same one twice.');
        const { token } = await identity.accounts.changePassword(
          tenant,
          actionContext(request),
          session,
          currentPassword,
          newPassword,
        );
        // The session goes on under a new token (change-password.ts): the old cookie is dead.
        cookies.set(reply, tenant.slug, token);
        return seeOther(reply, `${pathsFor(tenant.slug).account}?notice=password`);
      } catch (error) {
        const failure = formFailure(reply, error);
        return sendHtml(
          reply,
          reply.statusCode,
          await passwordPage(tenant.slug, csrfFor(identity, session), failure),
        );
      }
    },
  );

  app.get(
    '/t/:tenant/account/sessions',
    { config: active, schema: { hide: true, params: TenantParams, querystring: NoticeQuery } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      const [rows, { name }] = await Promise.all([
        identity.sessions.list(tenant, session.userId),
        findTenant(tenant.slug),
      ]);
      const csrf = csrfFor(identity, session);
      const body = html`<table class="sessions">
<caption>Where you are signed in</caption>
<thead><tr><th scope="col">Started</th><th scope="col">Last active</th><th scope="col">Address</th><th scope="col">Browser or app</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead>
<tbody>${rows.map(
        (r) => html`<tr${r.id === session.id && html` class="current"`}>
<td>${when(r.created_at)} UTC${r.id === session.id && html` <strong>(this browser)</strong>`}</td>
<td>${when(r.last_seen_at)} UTC</td>
<td>${r.ip ?? 'unknown'}</td>
<td class="agent">${r.kind === 'bearer' ? 'API client: ' : ''}${r.user_agent ?? 'unknown'}</td>
<td>${form(paths.revoke(r.id), html`${csrfField(csrf)}<button type="submit" class="button danger">${r.id === session.id ? 'Sign out' : 'End session'}<span class="visually-hidden"> started ${when(r.created_at)} UTC</span></button>`, 'inline')}</td>
</tr>`,
      )}</tbody>
</table>
<p><a href="${paths.account}">Back to your account</a></p>`;
      const shell = {
        title: 'Your sessions',
        tenantName: name,
        notice: noticeText(request.query.notice),
        wide: true,
      };
      return sendHtml(reply, 200, renderPage(shell, body));
    },
  );

  app.post(
    '/t/:tenant/account/sessions/:id/revoke',
    { config: active, schema: { hide: true, params: SessionParams, body: CsrfForm } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      await identity.sessions.revokeOwn(tenant, session.userId, request.params.id, actionContext(request));
      if (request.params.id === session.id) {
        cookies.clear(reply, tenant.slug);
        return seeOther(reply, `${paths.signIn}?notice=signedout`);
      }
      return seeOther(reply, `${paths.sessions}?notice=revoked`);
    },
  );
};
