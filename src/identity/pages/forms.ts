import { Type } from '@sinclair/typebox';
import { strictObject, Text } from '../../platform/http/schemas.ts';
import { LinkToken, SessionParams, TenantParams } from '../schemas.ts';

// Form fields may arrive empty: the service answers with the message a person needs ("not an email
// address", "use at least 12 characters"), which is better than a schema pointer. Lengths stay bounded.
const Csrf = Type.String({ minLength: 1, maxLength: 200 });
const FormEmail = Type.String({ maxLength: 254 });
const FormPassword = Type.String({ maxLength: 1024 });

export { SessionParams, TenantParams };
export const SignInForm = strictObject({ email: FormEmail, password: FormPassword });
export const CsrfForm = strictObject({ _csrf: Csrf });
export const EnrolStartForm = strictObject({ _csrf: Csrf, currentPassword: Type.Optional(FormPassword) });
export const CodeForm = strictObject({ _csrf: Csrf, code: Type.String({ maxLength: 64 }) });
export const RemoveAuthenticatorForm = strictObject({
  _csrf: Csrf,
  code: Type.String({ maxLength: 64 }),
  currentPassword: Type.Optional(FormPassword),
});
export const ChangePasswordForm = strictObject({
  _csrf: Csrf,
  currentPassword: FormPassword,
  newPassword: FormPassword,
  confirmPassword: FormPassword,
});
export const NewPasswordForm = strictObject({
  token: LinkToken,
  newPassword: FormPassword,
  confirmPassword: FormPassword,
});
export const SignUpForm = strictObject({
  email: FormEmail,
  displayName: Text({ maxLength: 200 }),
  newPassword: FormPassword,
  confirmPassword: FormPassword,
});
export const EmailForm = strictObject({ email: FormEmail });
export const TokenForm = strictObject({ token: LinkToken });
export const TokenQuery = strictObject({ token: LinkToken });

/** One-line confirmations shown after a redirect (POST-redirect-GET), chosen by a fixed key. */
export const notices = {
  invited: 'Your password is set. Sign in to continue.',
  reset: 'Your password was changed and every session ended. Sign in with the new password.',
  signedout: 'You are signed out.',
  signup:
    'Check your inbox: we sent a message to this address. If it was new, confirm it with the link in the ' +
    'message, then sign in.',
  verified: 'Your email address is confirmed. You can sign in now.',
  sent: 'If an account uses this address, we sent it a link to reset the password. The link works once, for one hour.',
  password: 'Your password was changed. Your other sessions were ended, and this one renewed.',
  revoked: 'The session was ended.',
  authenticator:
    'Your authenticator was removed and every session ended. Sign in again; where your organisation ' +
    'asks for two-step sign-in, you will set up the new one then.',
} as const;
export type NoticeKey = keyof typeof notices;
export const NoticeQuery = strictObject({
  notice: Type.Optional(Type.Union(Object.keys(notices).map((k) => Type.Literal(k)))),
  next: Type.Optional(Type.Literal('password')),
});
export const noticeText = (key: string | undefined) =>
  key && Object.hasOwn(notices, key) ? notices[key as NoticeKey] : null;
