import { defineErrors } from '../platform/http/problem.ts';

export const protectError = defineErrors({
  invalid_client_address: { status: 400, title: 'The client address is not valid' },
  address_blocked: { status: 403, title: 'Address blocked' },
  admin_address_not_allowed: { status: 403, title: 'Address not allowed for administration' },
  would_lock_out: { status: 400, title: 'The change would lock you out' },
  invalid_policy: { status: 400, title: 'The policy is not valid' },
  invalid_waf_event: { status: 400, title: 'The WAF event is not valid' },
});
