import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { actionContext } from '../../platform/http/context.ts';
import { signedIn } from '../http-auth.ts';
import {
  browserSession,
  cookieJar,
  csrfFor,
  formFailure,
  landingFor,
  type PagesOptions,
  pathsFor,
  seeOther,
  sendHtml,
} from './context.ts';
import { CodeForm, CsrfForm, NoticeQuery, noticeText, SignInForm, TenantParams } from './forms.ts';
import { html } from './html.ts';
import { csrfField, type FormError, field, form, renderPage, submit } from './layout.ts';

/** Sign in with email and password, then the second factor; sign out. */
export const signInPages: FastifyPluginAsyncTypebox<PagesOptions> = async (
  app,
  { identity, findTenant, publicUrl },
) => {
  const cookies = cookieJar(publicUrl);

  const signInPage = (
    slug: string,
    tenantName: string,
    view: { email?: string; error?: FormError | null; notice?: string | null; signUp: boolean },
  ) => {
    const paths = pathsFor(slug);
    return renderPage(
      { title: 'Sign in', tenantName, error: view.error, notice: view.notice },
      html`${form(
        paths.signIn,
        html`${field({ name: 'email', label: 'Email address', type: 'email', autocomplete: 'username', value: view.email, maxLength: 254, invalid: Boolean(view.error), autofocus: !view.email })}
${field({ name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', maxLength: 1024, invalid: Boolean(view.error), autofocus: Boolean(view.email) })}
${submit('Sign in')}`,
      )}
<nav class="links" aria-label="Other options"><ul>
<li><a href="${paths.forgot}">Forgot your password?</a></li>
${view.signUp && html`<li><a href="${paths.signUp}">Create an account</a></li>`}
</ul></nav>`,
    );
  };

  app.get(
    '/t/:tenant/signin',
    { config: { access: 'public' }, schema: { hide: true, params: TenantParams, querystring: NoticeQuery } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      const session = await browserSession(identity, tenant.ref, request, publicUrl);
      if (session && !request.query.notice)
        return seeOther(reply, landingFor(pathsFor(tenant.ref.slug), session.stage));
      const settings = await identity.settings.get(tenant.ref);
      return sendHtml(
        reply,
        200,
        signInPage(tenant.ref.slug, tenant.name, {
          notice: noticeText(request.query.notice),
          signUp: settings.selfSignup,
        }),
      );
    },
  );

  app.post(
    '/t/:tenant/signin',
    { config: { access: 'public' }, schema: { hide: true, params: TenantParams, body: SignInForm } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      const { email, password } = request.body;
      try {
        const result = await identity.signIn(tenant.ref, email, password, 'cookie', actionContext(request));
        cookies.set(reply, tenant.ref.slug, result.token);
        return seeOther(reply, landingFor(pathsFor(tenant.ref.slug), result.stage, result.passwordExpired));
      } catch (error) {
        // Wrong password, unknown account and locked account all carry the same message by design.
        const failure = formFailure(reply, error);
        const settings = await identity.settings.get(tenant.ref);
        return sendHtml(
          reply,
          reply.statusCode,
          signInPage(tenant.ref.slug, tenant.name, { email, error: failure, signUp: settings.selfSignup }),
        );
      }
    },
  );

  const codePage = (
    slug: string,
    tenantName: string,
    csrf: string,
    next: string | undefined,
    error?: FormError,
  ) => {
    const paths = pathsFor(slug);
    const action = next ? `${paths.code}?next=${encodeURIComponent(next)}` : paths.code;
    return renderPage(
      { title: 'Enter your code', tenantName, error },
      html`<p>Open your authenticator app and enter the 6-digit code it shows for this account. Lost your device? Enter one of your recovery codes instead.</p>
${form(
  action,
  html`${csrfField(csrf)}
${field({ name: 'code', label: 'Code', autocomplete: 'one-time-code', inputMode: 'text', maxLength: 64, invalid: Boolean(error), autofocus: true, hint: 'A 6-digit code, or a recovery code like abcde-fghij.' })}
${submit('Continue')}`,
)}
${form(paths.signOut, html`${csrfField(csrf)}${submit('Cancel and sign out', 'secondary')}`, 'inline')}`,
    );
  };

  const mfaStage = { access: 'user', permission: 'self', stages: ['mfa'] } as const;

  app.get(
    '/t/:tenant/signin/code',
    { config: mfaStage, schema: { hide: true, params: TenantParams, querystring: NoticeQuery } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const { name } = await findTenant(tenant.slug);
      return sendHtml(
        reply,
        200,
        codePage(tenant.slug, name, csrfFor(identity, session), request.query.next),
      );
    },
  );

  app.post(
    '/t/:tenant/signin/code',
    {
      config: mfaStage,
      schema: { hide: true, params: TenantParams, querystring: NoticeQuery, body: CodeForm },
    },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const code = request.body.code.replace(/\s+/g, '');
      try {
        const result = await identity.mfa.verify(tenant, session, code, actionContext(request));
        cookies.set(reply, tenant.slug, result.token);
        return seeOther(
          reply,
          landingFor(pathsFor(tenant.slug), 'active', request.query.next === 'password'),
        );
      } catch (error) {
        const failure = formFailure(reply, error);
        const { name } = await findTenant(tenant.slug);
        const page = codePage(tenant.slug, name, csrfFor(identity, session), request.query.next, failure);
        return sendHtml(reply, reply.statusCode, page);
      }
    },
  );

  app.post(
    '/t/:tenant/signout',
    {
      config: { access: 'user', permission: 'self', stages: ['mfa', 'enrol', 'active', 'password'] },
      schema: { hide: true, params: TenantParams, body: CsrfForm },
    },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      await identity.sessions.revoke(tenant, session.userId, session.id, actionContext(request));
      cookies.clear(reply, tenant.slug);
      return seeOther(reply, `${pathsFor(tenant.slug).signIn}?notice=signedout`);
    },
  );
};
