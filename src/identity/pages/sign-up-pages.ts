import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { actionContext } from '../../platform/http/context.ts';
import { formFailure, type PagesOptions, type PageTenant, pathsFor, seeOther, sendHtml } from './context.ts';
import { pageError } from './errors.ts';
import { SignUpForm, TenantParams } from './forms.ts';
import { html } from './html.ts';
import { type FormError, field, form, newPasswordFields, renderPage, submit } from './layout.ts';

/** Self sign-up, where the tenant allows it. The answer never tells whether the address had an account. */
export const signUpPages: FastifyPluginAsyncTypebox<PagesOptions> = async (app, { identity, findTenant }) => {
  const signUpPage = async (
    tenant: PageTenant,
    values: { email?: string; displayName?: string },
    error?: FormError,
  ) => {
    const settings = await identity.settings.get(tenant.ref);
    const paths = pathsFor(tenant.ref.slug);
    const shell = { title: 'Create an account', tenantName: tenant.name, error };
    if (!settings.selfSignup) {
      return renderPage(
        shell,
        html`<p>${tenant.name} does not allow signing up here. Ask an administrator for an invitation.</p>
<p><a href="${paths.signIn}">Back to sign-in</a></p>`,
      );
    }
    return renderPage(
      shell,
      html`${form(
        paths.signUp,
        html`${field({ name: 'email', label: 'Email address', type: 'email', autocomplete: 'username', value: values.email, maxLength: 254 })}
${field({ name: 'displayName', label: 'Your name', autocomplete: 'name', value: values.displayName, maxLength: 200, required: false })}
${newPasswordFields(settings.passwordPolicy, Boolean(error))}
${submit('Create account')}`,
      )}
<p><a href="${paths.signIn}">I have an account</a></p>`,
    );
  };

  app.get(
    '/t/:tenant/signup',
    { config: { access: 'public' }, schema: { hide: true, params: TenantParams } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      return sendHtml(reply, 200, await signUpPage(tenant, {}));
    },
  );

  app.post(
    '/t/:tenant/signup',
    { config: { access: 'public' }, schema: { hide: true, params: TenantParams, body: SignUpForm } },
    async (request, reply) => {
      const tenant = await findTenant(request.params.tenant);
      const { email, displayName, newPassword, confirmPassword } = request.body;
      try {
        if (newPassword !== confirmPassword)
          throw pageError('passwords_differ', 'The two passwords differ; type the same one twice.');
        await identity.accounts.signUp(tenant.ref, actionContext(request), {
          email,
          displayName,
          password: newPassword,
        });
        return seeOther(reply, `${pathsFor(tenant.ref.slug).signIn}?notice=signup`);
      } catch (error) {
        const failure = formFailure(reply, error);
        return sendHtml(reply, reply.statusCode, await signUpPage(tenant, { email, displayName }, failure));
      }
    },
  );
};
