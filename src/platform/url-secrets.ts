/**
 * A setting's value with what a URL may carry of a secret masked: its user and password (a Redis or
 * proxy URL's credentials) and its query values (an API key of a block-list feed), in a string or in
 * a list of them. Whatever does not parse as a URL with a scheme is shown as it is. For what is printed
 * (`config check`) or logged.
 */
export function withoutUrlSecrets(value: string): string;
export function withoutUrlSecrets(value: unknown): unknown;
export function withoutUrlSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutUrlSecrets);
  if (typeof value !== 'string' || !/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return value;
  }
  if (url.username) url.username = '(masked)';
  if (url.password) url.password = '(masked)';
  for (const key of [...url.searchParams.keys()]) url.searchParams.set(key, '(masked)');
  return url.toString();
}
