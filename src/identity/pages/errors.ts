import { defineErrors } from '../../platform/http/problem.ts';

export const pageError = defineErrors({
  cross_origin: { status: 403, title: 'Form sent from another site' },
  form_only: { status: 415, title: 'Unsupported content type' },
  passwords_differ: { status: 422, title: 'Passwords differ' },
});
