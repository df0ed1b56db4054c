import { Type } from '@sinclair/typebox';
import { strictObject, Text, Timestamp, Uuid } from '../platform/http/schemas.ts';

// Bounded so a 1 MB "password" is refused by validation before anything hashes it.
export const Password = Type.String({ minLength: 1, maxLength: 1024 });
// No control characters (C0, DEL, C1): PostgreSQL text refuses NUL, which would otherwise surface as a 500.
export const Email = Type.String({
  minLength: 3,
  maxLength: 254,
  pattern: '^[^\\u0000-\\u001f\\u007f-\\u009f]*$',
});
export const Code = Type.String({
  minLength: 6,
  maxLength: 32,
  description: 'A 6-digit TOTP code or a recovery code',
});
export const LinkToken = Type.String({ minLength: 10, maxLength: 200 });
export const TenantParams = strictObject({
  tenant: Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' }),
});
export const UserParams = strictObject({ tenant: TenantParams.properties.tenant, id: Uuid });
export const SessionParams = strictObject({ tenant: TenantParams.properties.tenant, id: Uuid });
export const Role = Type.Union([Type.Literal('member'), Type.Literal('staff'), Type.Literal('tenant-admin')]);

export const SignInBody = strictObject({ email: Email, password: Password });
export const SignInReply = strictObject({
  stage: Type.Union([
    Type.Literal('mfa'),
    Type.Literal('enrol'),
    Type.Literal('active'),
    Type.Literal('password'),
  ]),
  token: Type.String(),
  passwordExpired: Type.Boolean(),
});
export const CodeBody = strictObject({ code: Code });
/** Needed when the session was signed in more than 5 minutes ago. */
export const EnrolStartBody = strictObject({ currentPassword: Type.Optional(Password) });
export const TokenReply = strictObject({ token: Type.String() });

export const PublicUser = strictObject(
  {
    id: Uuid,
    email: Type.String(),
    displayName: Type.String(),
    role: Role,
    status: Type.Union([Type.Literal('invited'), Type.Literal('active'), Type.Literal('disabled')]),
    emailVerified: Type.Boolean(),
    locked: Type.Boolean({ description: 'The password is locked after wrong passwords' }),
    secondFactorLocked: Type.Boolean({ description: 'The second factor is locked after wrong codes' }),
    createdAt: Timestamp,
  },
  { $id: 'User' },
);
/** What an administrator's reset of a user's second factor did. */
export const MfaResetReply = strictObject({ sessionsEnded: Type.Integer() });
export const UserPage = strictObject({
  items: Type.Array(Type.Ref('User')),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
export const InviteBody = strictObject({
  email: Email,
  displayName: Text({ maxLength: 200, default: '' }),
  role: Role,
});
export const DisableBody = strictObject({
  reason: Type.Optional(
    Text({ minLength: 1, maxLength: 500, description: 'Why; recorded in the audit trail' }),
  ),
});
export const ListQuery = strictObject({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ maxLength: 400 })),
});

export const SessionInfo = strictObject({
  id: Uuid,
  kind: Type.Union([Type.Literal('cookie'), Type.Literal('bearer')]),
  current: Type.Boolean(),
  createdAt: Timestamp,
  lastSeenAt: Timestamp,
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
});

/** The session a request was authenticated with, as validated (no database read). */
export const CurrentSession = strictObject({
  id: Uuid,
  userId: Uuid,
  email: Type.String(),
  role: Type.Union([Type.Literal('member'), Type.Literal('staff'), Type.Literal('tenant-admin')]),
  kind: Type.Union([Type.Literal('cookie'), Type.Literal('bearer')]),
  stage: Type.Literal('active'),
  createdAt: Timestamp,
  secondFactorAt: Type.Union([Timestamp, Type.Null()]),
});

export const Settings = strictObject(
  {
    passwordPolicy: strictObject({
      minLength: Type.Integer({ minimum: 8, maximum: 128 }),
      maxLength: Type.Integer({ minimum: 8, maximum: 128 }),
      requireLower: Type.Boolean(),
      requireUpper: Type.Boolean(),
      requireDigit: Type.Boolean(),
      requireSpecial: Type.Boolean(),
      forbidPersonal: Type.Boolean(),
      historyCount: Type.Integer({ minimum: 0, maximum: 24 }),
      maxAgeDays: Type.Union([Type.Integer({ minimum: 1, maximum: 3650 }), Type.Null()]),
    }),
    lockout: strictObject({
      threshold: Type.Integer({ minimum: 3, maximum: 20 }),
      mode: Type.Union([Type.Literal('temporary'), Type.Literal('admin')]),
      baseSeconds: Type.Integer({ minimum: 30, maximum: 86400 }),
    }),
    selfSignup: Type.Boolean(),
    mfaRequired: Type.Union([Type.Literal('off'), Type.Literal('staff'), Type.Literal('all')]),
    session: strictObject({
      idleMinutes: Type.Integer({ minimum: 5, maximum: 1440 }),
      absoluteHours: Type.Integer({ minimum: 1, maximum: 720 }),
    }),
  },
  { $id: 'IdentitySettings' },
);

export const Me = strictObject({
  user: Type.Ref('User'),
  mfa: strictObject({ totp: Type.Boolean(), recoveryCodesLeft: Type.Integer() }),
});
export const Enrolment = strictObject({ secret: Type.String(), uri: Type.String(), qrSvg: Type.String() });
export const Enrolled = strictObject({ recoveryCodes: Type.Array(Type.String()), token: Type.String() });
export const RecoveryCodes = strictObject({ recoveryCodes: Type.Array(Type.String()) });
export const SignUpBody = strictObject({
  email: Email,
  displayName: Text({ maxLength: 200, default: '' }),
  password: Password,
});
export const AcceptBody = strictObject({ token: LinkToken, password: Password });
export const VerifyBody = strictObject({ token: LinkToken });
export const ForgotBody = strictObject({ email: Email });
export const Accepted = strictObject({ status: Type.Literal('accepted') });
