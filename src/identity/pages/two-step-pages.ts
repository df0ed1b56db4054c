import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ActionContext } from '../../platform/context.ts';
import { actionContext } from '../../platform/http/context.ts';
import type { TenantRef } from '../deps.ts';
import { signedIn } from '../http-auth.ts';
import { removeOwnAuthenticator } from '../mfa-removal.ts';
import type { ValidSession } from '../session-stage.ts';
import {
  cookieJar,
  csrfFor,
  formFailure,
  type PagesOptions,
  pathsFor,
  reauthPasswordField,
  seeOther,
  sendHtml,
} from './context.ts';
import { CodeForm, RemoveAuthenticatorForm, TenantParams } from './forms.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, type FormError, field, form, renderPage, submit } from './layout.ts';

const TITLE = 'Two-step sign-in';

/**
 * The signed-in user's own authenticator (Keycloak's account console): new recovery codes, or removing
 * the authenticator to replace it. Both ask for a second factor in the same form (the API's step-up),
 * and removing it for the password too unless the sign-in is recent (mfa-removal.ts): a copied session
 * alone can do neither. The code's check rotates the session, so what follows runs under the new one.
 */
export const twoStepPages: FastifyPluginAsyncTypebox<PagesOptions> = async (
  app,
  { identity, findTenant, publicUrl },
) => {
  const cookies = cookieJar(publicUrl);
  const active = { access: 'user', permission: 'self' } as const;

  const codeField = (error?: FormError) =>
    field({
      name: 'code',
      label: 'Code from your authenticator app',
      autocomplete: 'one-time-code',
      inputMode: 'text',
      maxLength: 64,
      invalid: Boolean(error),
      hint: 'The 6-digit code it shows now, or one of your recovery codes.',
    });

  const page = async (tenant: TenantRef, session: ValidSession, error?: FormError, shown?: SafeHtml) => {
    const paths = pathsFor(tenant.slug);
    const [{ name }, status] = await Promise.all([
      findTenant(tenant.slug),
      identity.mfa.status(tenant, session.userId),
    ]);
    const csrf = csrfFor(identity, session);
    const body = !status.totp
      ? html`<p>Two-step sign-in is off for your account.</p>
<p><a href="${paths.enrol}">Set up two-step sign-in</a></p>`
      : html`${shown ?? ''}<p>Two-step sign-in is on, with ${status.recoveryCodesLeft} recovery codes left.</p>
<h2>New recovery codes</h2>
<p>Replaces every recovery code you have with 10 new ones.</p>
${form(`${paths.twoStep}/recovery-codes`, html`${csrfField(csrf)}${codeField()}${submit('Make new recovery codes', 'secondary')}`)}
<h2>Remove your authenticator</h2>
<p>To move to a new phone, remove it here and set up the new one at your next sign-in. Your recovery codes stop working and every session of yours ends, this one too.</p>
${form(
  `${paths.twoStep}/remove`,
  html`${csrfField(csrf)}${codeField()}${reauthPasswordField(identity, session)}${submit('Remove authenticator', 'danger')}`,
)}`;
    return renderPage(
      { title: TITLE, tenantName: name, error },
      html`${body}<p><a href="${paths.account}">Back to your account</a></p>`,
    );
  };

  /**
   * A form that takes a second factor with it: the code is checked as a step-up (counted like any
   * second-factor attempt), which rotates the session (the answer carries the new cookie), and `act`
   * runs under the new one. A refusal, of the code or of the act, gives the page back with the error.
   */
  async function withStepUp(
    request: FastifyRequest,
    reply: FastifyReply,
    code: string,
    act: (current: ValidSession, ctx: ActionContext) => Promise<unknown>,
  ) {
    const { tenant, session } = signedIn(request);
    const ctx = actionContext(request);
    let current = session;
    try {
      const { token } = await identity.mfa.verify(tenant, session, code.replace(/\s+/g, ''), ctx);
      cookies.set(reply, tenant.slug, token);
      const fresh = await identity.sessions.validate(tenant, token);
      if (!fresh) throw new Error('the session a second factor just rotated to does not validate');
      current = fresh;
      return await act(current, ctx);
    } catch (error) {
      const failure = formFailure(reply, error);
      return sendHtml(reply, reply.statusCode, await page(tenant, current, failure));
    }
  }

  app.get(
    '/t/:tenant/account/two-step',
    { config: active, schema: { hide: true, params: TenantParams } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      return sendHtml(reply, 200, await page(tenant, session));
    },
  );

  app.post(
    '/t/:tenant/account/two-step/recovery-codes',
    { config: active, schema: { hide: true, params: TenantParams, body: CodeForm } },
    (request, reply) =>
      withStepUp(request, reply, request.body.code, async (current, ctx) => {
        const { tenant } = signedIn(request);
        const codes = await identity.mfa.regenerateRecoveryCodes(tenant, current, ctx);
        const shown = html`<p role="status">Your new recovery codes. Keep them somewhere safe: each signs you in once. They are shown only now, and the old ones no longer work.</p>
<ul id="recovery-codes" class="codes">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ul>`;
        return sendHtml(reply, 200, await page(tenant, current, undefined, shown));
      }),
  );

  app.post(
    '/t/:tenant/account/two-step/remove',
    { config: active, schema: { hide: true, params: TenantParams, body: RemoveAuthenticatorForm } },
    (request, reply) =>
      withStepUp(request, reply, request.body.code, async (current, ctx) => {
        const { tenant } = signedIn(request);
        const password = request.body.currentPassword || undefined;
        await removeOwnAuthenticator(identity.deps, tenant, current, ctx, password);
        // Every session of the user ended, this one too.
        cookies.clear(reply, tenant.slug);
        return seeOther(reply, `${pathsFor(tenant.slug).signIn}?notice=authenticator`);
      }),
  );
};
