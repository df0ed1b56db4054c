import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { actionContext } from '../../platform/http/context.ts';
import { formFailure, type PagesOptions, type PageTenant, pathsFor, seeOther, sendHtml } from './context.ts';
import { pageError } from './errors.ts';
import {
  EmailForm,
  NewPasswordForm,
  NoticeQuery,
  noticeText,
  TenantParams,
  TokenForm,
  TokenQuery,
} from './forms.ts';
import { html } from './html.ts';
import { type FormError, field, form, hidden, newPasswordFields, renderPage, submit } from './layout.ts';

const publicRoute = { access: 'public' } as const;

/**
 * The pages mailed links point at: accept an invitation, confirm an address, reset a password, and the
 * form that asks for a reset link. All are public; the link's token is the credential.
 */
export const linkPages: FastifyPluginAsyncTypebox<PagesOptions> = async (app, { identity, findTenant }) => {
  const setPasswordPage = async (
    tenant: PageTenant,
    kind: 'invite' | 'reset',
    token: string,
    error?: FormError,
  ) => {
    const { passwordPolicy } = await identity.settings.get(tenant.ref);
    const paths = pathsFor(tenant.ref.slug);
    const title = kind === 'invite' ? 'Accept your invitation' : 'Choose a new password';
    const intro =
      kind === 'invite'
        ? `You were invited to ${tenant.name}. Choose a password to finish setting up your account.`
        : 'Choose a new password. Every session of your account will end, and a lock on it is lifted.';
    return renderPage(
      { title, tenantName: tenant.name, error },
      html`<p>${intro}</p>
${form(
  kind === 'invite' ? paths.invite : paths.reset,
  html`${hidden('token', token)}
${newPasswordFields(passwordPolicy, Boolean(error))}
${submit(kind === 'invite' ? 'Set password' : 'Change password')}`,
)}`,
    );
  };

  for (const kind of ['invite', 'reset'] as const) {
    app.get(
      `/t/:tenant/${kind}`,
      { config: publicRoute, schema: { hide: true, params: TenantParams, querystring: TokenQuery } },
      async (request, reply) => {
        const tenant = await findTenant(request.params.tenant);
        return sendHtml(reply, 200, await setPasswordPage(tenant, kind, request.query.token));
      },
    );

    app.post(
      `/t/:tenant/${kind}`,
      { config: publicRoute, schema: { hide: true, params: TenantParams, body: NewPasswordForm } },
      async (request, reply) => {
        const tenant = await findTenant(request.params.tenant);
        const { token, newPassword, confirmPassword } = request.body;
        try {
          if (newPassword !== confirmPassword)
            throw pageError('passwords_differ', 'The two passwords differ; type the same one twice.');
          const ctx = actionContext(request);
          if (kind === 'invite') await identity.accounts.acceptInvite(tenant.ref, ctx, token, newPassword);
          else await identity.accounts.resetPassword(tenant.ref, ctx, token, newPassword);
          const notice = kind === 'invite' ? 'invited' : 'reset';
          return seeOther(reply, `${pathsFor(tenant.ref.slug).signIn}?notice=${notice}`);
        } catch (error) {
          const failure = formFailure(reply, error);
          return sendHtml(reply, reply.statusCode, await setPasswordPage(tenant, kind, token, failure));
        }
      },
    );
  }

  // Confirming takes a click: mail scanners that fetch every link must not use up the single-use token.
  app.get(
    '/t/:tenant/verify-email',
    { config: publicRoute, schema: { hide: true, params: TenantParams, querystring: TokenQuery } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      const body = form(
        pathsFor(tenant.ref.slug).verify,
        html`<p>Confirm only if you signed up with this address yourself: confirming lets whoever chose the
            account's password sign in with it.</p>${hidden('token', request.query.token)}${submit('Confirm my email address')}`,
      );
      return sendHtml(
        reply,
        200,
        renderPage({ title: 'Confirm your email address', tenantName: tenant.name }, body),
      );
    },
  );

  app.post(
    '/t/:tenant/verify-email',
    { config: publicRoute, schema: { hide: true, params: TenantParams, body: TokenForm } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      try {
        await identity.accounts.verifyEmail(tenant.ref, actionContext(request), request.body.token);
        return seeOther(reply, `${pathsFor(tenant.ref.slug).signIn}?notice=verified`);
      } catch (error) {
        const failure = formFailure(reply, error);
        const body = html`<p><a href="${pathsFor(tenant.ref.slug).signIn}">Go to sign-in</a></p>`;
        const shell = { title: 'Confirm your email address', tenantName: tenant.name, error: failure };
        return sendHtml(reply, reply.statusCode, renderPage(shell, body));
      }
    },
  );

  const forgotPage = (tenant: PageTenant, notice: string | null, error?: FormError, email?: string) => {
    const paths = pathsFor(tenant.ref.slug);
    return renderPage(
      { title: 'Reset your password', tenantName: tenant.name, error, notice },
      html`<p>Enter the email address of your account. We will send it a link to choose a new password.</p>
${form(
  paths.forgot,
  html`${field({ name: 'email', label: 'Email address', type: 'email', autocomplete: 'username', value: email, maxLength: 254, invalid: Boolean(error) })}
${submit('Send the link')}`,
)}
<p><a href="${paths.signIn}">Back to sign-in</a></p>`,
    );
  };

  app.get(
    '/t/:tenant/forgot',
    { config: publicRoute, schema: { hide: true, params: TenantParams, querystring: NoticeQuery } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      return sendHtml(reply, 200, forgotPage(tenant, noticeText(request.query.notice)));
    },
  );

  app.post(
    '/t/:tenant/forgot',
    { config: publicRoute, schema: { hide: true, params: TenantParams, body: EmailForm } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      try {
        // The same answer whether or not the account exists.
        await identity.accounts.forgotPassword(tenant.ref, actionContext(request), request.body.email);
        return seeOther(reply, `${pathsFor(tenant.ref.slug).forgot}?notice=sent`);
      } catch (error) {
        const failure = formFailure(reply, error);
        return sendHtml(reply, reply.statusCode, forgotPage(tenant, null, failure, request.body.email));
      }
    },
  );
};
