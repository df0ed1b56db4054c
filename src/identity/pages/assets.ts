import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The one stylesheet of the hosted pages. The CSP allows styles from 'self' only (no inline styles), so
 * everything visual lives here. Its URL carries a content hash, so it can be cached for a year and a
 * new release still reaches every browser at once.
 */
export const stylesheet = (() => {
  const body = readFileSync(new URL('../assets/rampart.css', import.meta.url));
  const version = createHash('sha256').update(body).digest('hex').slice(0, 12);
  return { body, version, href: `/assets/rampart.css?v=${version}` };
})();
