/**
 * The three layers in one call, cheapest first: the built-in common list, the offline filter, then (only
 * when both said no) the optional online range API.
 */
import { isCommonPassword } from './common-passwords.ts';
import type { BreachedFilter } from './load.ts';
import type { RangeClient } from './range-client.ts';

export type BreachedSourceLayer = 'common' | 'offline' | 'online';

export interface BreachedCheck {
  breached: boolean;
  source: BreachedSourceLayer | null;
  /** The online layer could not answer and its fail mode decided (only ever true when `source` is 'online' or null). */
  onlineUnavailable: boolean;
}

export interface BreachedCheckerOptions {
  filter?: BreachedFilter | null;
  rangeClient?: RangeClient | null;
  /** Default true. */
  commonList?: boolean;
}

export interface BreachedPasswordChecker {
  check(password: string): Promise<BreachedCheck>;
}

export function createBreachedPasswordChecker(options: BreachedCheckerOptions = {}): BreachedPasswordChecker {
  const { filter = null, rangeClient = null, commonList = true } = options;
  return {
    async check(password) {
      if (commonList && isCommonPassword(password)) {
        return { breached: true, source: 'common', onlineUnavailable: false };
      }
      if (filter?.has(password)) return { breached: true, source: 'offline', onlineUnavailable: false };
      if (rangeClient) {
        const online = await rangeClient.check(password);
        return {
          breached: online.breached,
          source: online.breached ? 'online' : null,
          onlineUnavailable: online.unavailable,
        };
      }
      return { breached: false, source: null, onlineUnavailable: false };
    },
  };
}
