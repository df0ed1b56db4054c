import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { actionContext } from '../../platform/http/context.ts';
import { signedIn } from '../http-auth.ts';
import type { ValidSession } from '../session-stage.ts';
import {
  cookieJar,
  csrfFor,
  formFailure,
  type PagesOptions,
  type Paths,
  pathsFor,
  reauthPasswordField,
  sendHtml,
} from './context.ts';
import { CodeForm, EnrolStartForm, TenantParams } from './forms.ts';
import { html, type SafeHtml } from './html.ts';
import { csrfField, type FormError, field, form, renderPage, submit } from './layout.ts';

const enrolStages = { access: 'user', permission: 'self', stages: ['enrol', 'active'] } as const;
const TITLE = 'Set up two-step sign-in';

// The secret in groups of four is easier to type into an authenticator by hand.
const grouped = (secret: string) => secret.replace(/(.{4})(?=.)/g, '$1 ');

/**
 * TOTP enrolment. Starting it is a POST (it replaces any pending secret), and the secret and the recovery
 * codes are shown in the POST's answer, once: they are never stored readable, so no later GET could
 * show them again.
 */
export const enrolPages: FastifyPluginAsyncTypebox<PagesOptions> = async (
  app,
  { identity, findTenant, publicUrl },
) => {
  const cookies = cookieJar(publicUrl);

  const confirmForm = (paths: Paths, csrf: string, error?: FormError) =>
    form(
      paths.enrol,
      html`${csrfField(csrf)}
${field({ name: 'code', label: 'Code from the app', autocomplete: 'one-time-code', inputMode: 'numeric', maxLength: 6, invalid: Boolean(error), hint: 'The 6-digit code your authenticator app shows now.' })}
${submit('Confirm')}`,
    );

  const startForm = (paths: Paths, session: ValidSession, label: string, error?: FormError) =>
    form(
      paths.enrolStart,
      html`${csrfField(csrfFor(identity, session))}${reauthPasswordField(identity, session, error)}${submit(label)}`,
    );

  const restart = (paths: Paths, session: ValidSession, label: string) =>
    form(
      paths.enrolStart,
      html`${csrfField(csrfFor(identity, session))}${reauthPasswordField(identity, session)}${submit(label, 'secondary')}`,
      'inline',
    );

  const page = async (slug: string, body: SafeHtml, error?: FormError) =>
    renderPage({ title: TITLE, tenantName: (await findTenant(slug)).name, error }, body);

  app.get(
    '/t/:tenant/mfa/enrol',
    { config: enrolStages, schema: { hide: true, params: TenantParams } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      const status = await identity.mfa.status(tenant, session.userId);
      const csrf = csrfFor(identity, session);
      const body = status.totp
        ? html`<p>An authenticator app is already set up for your account.</p><p><a href="${paths.account}">Back to your account</a></p>`
        : html`<p>${
            session.stage === 'enrol' ? 'Your organisation asks for a second step at sign-in. ' : ''
          }You will need an authenticator app on your phone (for example FreeOTP, Aegis or Google Authenticator).</p>
${startForm(paths, session, 'Set up an authenticator app')}
${form(paths.signOut, html`${csrfField(csrf)}${submit('Sign out', 'secondary')}`, 'inline')}`;
      return sendHtml(reply, 200, await page(tenant.slug, body));
    },
  );

  app.post(
    '/t/:tenant/mfa/enrol/start',
    { config: enrolStages, schema: { hide: true, params: TenantParams, body: EnrolStartForm } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      const csrf = csrfFor(identity, session);
      try {
        const password = request.body.currentPassword || undefined;
        const enrolment = await identity.mfa.beginEnrol(tenant, session, actionContext(request), password);
        // An <img> with a data: URI: the SVG cannot run script there, and the CSP allows img-src data:.
        const qr = `data:image/svg+xml;base64,${Buffer.from(enrolment.qrSvg).toString('base64')}`;
        const body = html`<ol class="steps">
<li>Scan this QR code with your authenticator app.
<img class="qr" src="${qr}" alt="QR code for your authenticator app" width="200" height="200"></li>
<li>Or enter this key by hand: <code id="totp-secret" class="secret">${grouped(enrolment.secret)}</code></li>
<li>Enter the code the app shows.</li>
</ol>
${confirmForm(paths, csrf)}`;
        return sendHtml(reply, 200, await page(tenant.slug, body));
      } catch (error) {
        const failure = formFailure(reply, error);
        const body = html`${startForm(paths, session, 'Set up an authenticator app', failure)}
<p><a href="${paths.account}">Back to your account</a></p>`;
        return sendHtml(reply, reply.statusCode, await page(tenant.slug, body, failure));
      }
    },
  );

  app.post(
    '/t/:tenant/mfa/enrol',
    { config: enrolStages, schema: { hide: true, params: TenantParams, body: CodeForm } },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const paths = pathsFor(tenant.slug);
      try {
        const code = request.body.code.replace(/\s+/g, '');
        const done = await identity.mfa.confirmEnrol(tenant, session, code, actionContext(request));
        // A second factor raises the session's privilege: the backend rotated its token.
        cookies.set(reply, tenant.slug, done.token);
        const body = html`<p>Two-step sign-in is on. Keep these recovery codes somewhere safe: each one signs you in once if you lose your phone. They are shown only now.</p>
<ul id="recovery-codes" class="codes">${done.recoveryCodes.map((c) => html`<li><code>${c}</code></li>`)}</ul>
<p><a class="button primary" href="${paths.account}">I have saved them, continue</a></p>`;
        return sendHtml(reply, 200, await page(tenant.slug, body));
      } catch (error) {
        const failure = formFailure(reply, error);
        const csrf = csrfFor(identity, session);
        const body = html`<p>The key you added to your app stays valid: enter its current code. If the app has no entry for this account, start again.</p>
${confirmForm(paths, csrf, failure)}
${restart(paths, session, 'Start again with a new QR code')}`;
        return sendHtml(reply, reply.statusCode, await page(tenant.slug, body, failure));
      }
    },
  );
};
