import { defineErrors } from '../platform/http/problem.ts';

export const tenancyError = defineErrors({
  tenant_not_found: { status: 404, title: 'No such tenant' },
  slug_taken: { status: 409, title: 'Slug already in use' },
  tenant_state_conflict: { status: 409, title: 'Tenant is already in that state' },
  tenant_suspended: { status: 403, title: 'Tenant suspended' },
  bad_cursor: { status: 400, title: 'Invalid cursor' },
});
