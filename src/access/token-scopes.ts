import { permissionDef } from './catalogue.ts';
import { accessError } from './errors.ts';

/**
 * The scopes of a least-privilege operator API token, checked against the permission catalogue: each
 * must be a platform permission (tenant permissions reach operators only through elevations, which an
 * API token never uses). Returns them sorted, without repeats; refuses unknown ones naming them.
 */
export function checkTokenScopes(requested: readonly string[]): string[] {
  const scopes = [...new Set(requested.map((s) => s.trim()))].sort();
  if (scopes.length === 0) {
    throw accessError('invalid_token_scope', 'Name at least one platform permission as a scope.');
  }
  const unknown = scopes.filter((s) => permissionDef(s) === undefined);
  if (unknown.length > 0) {
    throw accessError(
      'invalid_token_scope',
      `Unknown permission(s) ${unknown.map((s) => `"${s}"`).join(', ')}: a scope is a platform permission ` +
        'of the catalogue (docs/access.md).',
    );
  }
  const tenant = scopes.filter((s) => permissionDef(s)?.scope !== 'platform');
  if (tenant.length > 0) {
    throw accessError(
      'invalid_token_scope',
      `${tenant.map((s) => `"${s}"`).join(', ')} ${tenant.length === 1 ? 'is a tenant permission' : 'are tenant permissions'}: ` +
        'an operator API token may carry only platform permissions.',
    );
  }
  return scopes;
}

/**
 * The 403 for a scoped token asking for a platform permission it was not issued with, or (`self`) for
 * the operator's own credentials.
 */
export const outOfScope = (permission: string, scopes: readonly string[]) =>
  accessError(
    'token_out_of_scope',
    `${permission === 'self' ? 'This acts on your own credentials' : `This needs the permission "${permission}"`}; ` +
      `this API token is limited to its scopes (${scopes.join(', ')}). ` +
      `${permission === 'self' ? 'Use a sign-in session or an unscoped token' : 'Use a token issued with that scope'}.`,
  );
