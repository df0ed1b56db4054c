import { defineErrors } from '../platform/http/problem.ts';

export const identityError = defineErrors({
  invalid_credentials: { status: 401, title: 'Sign-in failed' },
  invalid_code: { status: 401, title: 'Code not accepted' },
  password_rejected: { status: 422, title: 'Password does not meet the policy' },
  user_exists: { status: 409, title: 'User already exists' },
  user_not_found: { status: 404, title: 'No such user' },
  user_already_disabled: { status: 409, title: 'User already disabled' },
  user_not_disabled: { status: 409, title: 'User is not disabled' },
  cannot_disable_self: { status: 409, title: 'You cannot disable your own account' },
  last_tenant_admin: { status: 409, title: 'Last tenant administrator' },
  session_not_found: { status: 404, title: 'No such session' },
  invalid_email: { status: 400, title: 'Invalid email address' },
  token_invalid: { status: 400, title: 'Link invalid or expired' },
  signup_closed: { status: 403, title: 'Self sign-up is off' },
  step_up_required: { status: 403, title: 'Confirm with your second factor' },
  mfa_not_enrolled: { status: 409, title: 'No second factor enrolled' },
  mfa_already_enrolled: { status: 409, title: 'Second factor already enrolled' },
  web_only: { status: 403, title: 'Only on the web' },
  busy: { status: 503, title: 'Too many sign-ins at once' },
  throttled: { status: 429, title: 'Too many attempts' },
  csrf_failed: { status: 403, title: 'Missing or wrong CSRF token' },
});
