import { describe, expect, it } from 'vitest';
import { createBreachedPasswordChecker } from './checker.ts';
import { commonPasswordCount, isCommonPassword } from './common-passwords.ts';
import type { BreachedFilter } from './load.ts';
import type { RangeClient, RangeResult } from './range-client.ts';

const filterOf = (members: string[]): BreachedFilter => ({
  has: (pw) => members.includes(pw),
  hasSha1: () => false,
  entries: members.length,
  bitsPerEntry: 9,
  shardCount: 1,
  minCount: 1,
  bytes: 0,
});

const rangeClientOf = (result: RangeResult) => {
  const calls: string[] = [];
  const client: RangeClient = {
    check: async (pw) => {
      calls.push(pw);
      return result;
    },
    checkSha1: async () => result,
  };
  return { client, calls };
};

describe('isCommonPassword', () => {
  it('knows the usual suspects, case-insensitively and after NFKC', () => {
    expect(commonPasswordCount()).toBeGreaterThan(10_000);
    for (const pw of ['123456', 'password', 'PASSWORD', 'Qwerty', 'ｐａｓｓｗｏｒｄ'])
      expect(isCommonPassword(pw)).toBe(true);
    expect(isCommonPassword('vivid-anchor-tundra-41')).toBe(false);
    expect(isCommonPassword('')).toBe(false);
  });
});

describe('createBreachedPasswordChecker', () => {
  it('answers from the cheapest layer that knows the password', async () => {
    const online = rangeClientOf({ breached: true, count: 3, unavailable: false });
    const checker = createBreachedPasswordChecker({
      filter: filterOf(['offline-only-pw']),
      rangeClient: online.client,
    });
    expect(await checker.check('letmein')).toEqual({
      breached: true,
      source: 'common',
      onlineUnavailable: false,
    });
    expect(await checker.check('offline-only-pw')).toEqual({
      breached: true,
      source: 'offline',
      onlineUnavailable: false,
    });
    expect(online.calls).toEqual([]); // the network is asked only when both local layers said no
    expect(await checker.check('online-only-pw')).toEqual({
      breached: true,
      source: 'online',
      onlineUnavailable: false,
    });
    expect(online.calls).toEqual(['online-only-pw']);
  });

  it('passes a clean password and reports a fail-open online outage', async () => {
    const down = rangeClientOf({ breached: false, count: 0, unavailable: true });
    const checker = createBreachedPasswordChecker({ rangeClient: down.client });
    expect(await checker.check('vivid-anchor-tundra-41')).toEqual({
      breached: false,
      source: null,
      onlineUnavailable: true,
    });
  });

  it('can run without the common list, and with no layers at all', async () => {
    expect((await createBreachedPasswordChecker({ commonList: false }).check('123456')).breached).toBe(false);
    expect((await createBreachedPasswordChecker().check('123456')).source).toBe('common');
  });
});
