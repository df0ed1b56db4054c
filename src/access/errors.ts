import { defineErrors } from '../platform/http/problem.ts';

export const accessError = defineErrors({
  role_not_found: { status: 404, title: 'No such role' },
  role_exists: { status: 409, title: 'Role already exists' },
  builtin_role: { status: 409, title: 'Built-in roles cannot be changed' },
  unknown_permission: { status: 422, title: 'Unknown permission' },
  user_not_found: { status: 404, title: 'No such user' },
  last_tenant_admin: { status: 409, title: 'Last tenant administrator' },
  elevation_not_found: { status: 404, title: 'No such elevation request' },
  elevation_not_pending: { status: 409, title: 'The elevation request is no longer pending' },
  elevation_too_long: { status: 422, title: 'Elevation longer than allowed' },
  self_approval: { status: 403, title: 'You cannot approve your own request' },
  already_approved: { status: 409, title: 'You have already approved this request' },
  wrong_approver: { status: 403, title: 'This request is approved by someone else' },
  step_up_required: { status: 403, title: 'Confirm with your second factor' },
  approval_not_found: { status: 404, title: 'No such approval request' },
  approval_not_pending: { status: 409, title: 'The request was already decided' },
  approval_not_approved: { status: 409, title: 'The request is not approved' },
  approval_expired: { status: 409, title: 'The request or its approval has expired' },
  params_changed: { status: 409, title: 'The parameters differ from the approved ones' },
  not_requester: { status: 403, title: 'Only the requester runs an approved action' },
  unknown_action: { status: 422, title: 'Unknown critical action' },
});
