import { defineErrors } from '../platform/http/problem.ts';

export const identityError = defineErrors({
  invalid_credentials: { status: 401, title: 'Sign-in failed' },
  invalid_code: { status: 401, title: 'Code not accepted' },
  password_rejected: { status: 422, title: 'Password does not meet the policy' },
  user_exists: { status: 409, title: 'User already exists' },
  user_not_found: { status: 404, title: 'No such user' },
  user_already_disabled: { status: 409, title: 'User already disabled' },
  user_not_disabled: { status: 409, title: 'User is not disabled' },
  approval_now_required: {
    status: 409,
    title: 'Something changed while the request was checked; it now needs approval',
  },
  cannot_disable_self: { status: 409, title: 'You cannot disable your own account' },
  cannot_reset_own_mfa: { status: 409, title: 'You cannot reset your own second factor' },
  last_tenant_admin: { status: 409, title: 'Last tenant administrator' },
  tenant_has_admin: { status: 409, title: 'The tenant already has an administrator' },
  session_not_found: { status: 404, title: 'No such session' },
  invalid_email: { status: 400, title: 'Invalid email address' },
  token_invalid: { status: 400, title: 'Link invalid or expired' },
  signup_closed: { status: 403, title: 'Self sign-up is off' },
  step_up_required: { status: 403, title: 'Confirm with your second factor' },
  reauthentication_required: { status: 403, title: 'Confirm with your password' },
  password_expired: { status: 403, title: 'Password expired' },
  mfa_not_enrolled: { status: 409, title: 'No second factor enrolled' },
  mfa_already_enrolled: { status: 409, title: 'Second factor already enrolled' },
  mfa_enrolment_discarded: { status: 409, title: 'Enrolment discarded after too many wrong codes' },
  web_only: { status: 403, title: 'Only on the web' },
  busy: { status: 503, title: 'Too many sign-ins at once' },
  factor_unavailable: { status: 503, title: 'Second factor cannot be checked' },
  changed_meanwhile: { status: 409, title: 'Changed while the password was checked' },
  throttled: { status: 429, title: 'Too many attempts' },
  csrf_failed: { status: 403, title: 'Missing or wrong CSRF token' },
});

/** Refusals of operator administration (operator-admin.ts and its parts). */
export const operatorAdminError = defineErrors({
  operator_not_found: { status: 404, title: 'Operator not found' },
  token_not_found: { status: 404, title: 'Token not found' },
  cannot_disable_self: { status: 409, title: 'You cannot disable yourself' },
  last_operator: { status: 409, title: 'The last active operator cannot be disabled' },
  operator_already_disabled: { status: 409, title: 'Operator already disabled' },
  operator_not_disabled: { status: 409, title: 'Operator is not disabled' },
  approval_required: { status: 403, title: 'This needs another operator\u2019s approval first' },
});
