import { defineErrors } from './problem.ts';

/** Errors raised by the platform itself, before a capability's handler runs. */
export const platformError = defineErrors({
  validation_failed: { status: 400, title: 'The request is not valid' },
  malformed_url: { status: 400, title: 'The URL is not valid' },
  uri_too_long: { status: 414, title: 'The URL is too long' },
  malformed_json: { status: 400, title: 'The body is not valid JSON' },
  body_too_large: { status: 413, title: 'The body is too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  not_found: { status: 404, title: 'No such resource' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  rate_limited: { status: 429, title: 'Too many requests' },
  unavailable: { status: 503, title: 'Temporarily unavailable' },
  value_not_accepted: { status: 400, title: 'A value is not accepted' },
  internal: { status: 500, title: 'Internal error' },
});
