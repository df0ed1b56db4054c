/**
 * Settings of Protect that loadConfig accepted but that did not do what they said.
 * - RATE_LIMIT_FAIL_CLOSED took any lowercase word: a typo ("sigin") was accepted, and sign-in then
 *   failed OPEN while the counter store was down, silently (the brute-force window the setting closes).
 * - TRUST_PROXY took a /0 CIDR; Fastify's proxy-addr then threw "invalid range on address" when the app
 *   was built: a start-up crash naming no setting, the kind proxyProblems() exists to prevent. A /0
 *   would trust every peer's X-Forwarded-For anyway.
 * Both are now refused by the configuration check with a message naming the setting and what to write.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';
import { routeClasses } from '../src/protect/rate-limit/policy.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('RATE_LIMIT_FAIL_CLOSED', () => {
  it('refuses a name that is no route class, naming the entry and the classes; takes the classes', () => {
    expect(problemsOf({ RATE_LIMIT_FAIL_CLOSED: 'sigin,token' })).toEqual([
      'RATE_LIMIT_FAIL_CLOSED (rateLimitFailClosed): "sigin" is not a rate-limit route class; name some of ' +
        'signin, token, api, public (default signin,token)',
    ]);
    expect(problemsOf({ RATE_LIMIT_FAIL_CLOSED: 'Signin' }).join('\n')).toMatch(
      /"Signin" is not a rate-limit/,
    );
    expect(loadConfig({ RATE_LIMIT_FAIL_CLOSED: routeClasses.join(',') }).rateLimitFailClosed).toEqual([
      ...routeClasses,
    ]);
  });
});

describe('TRUST_PROXY', () => {
  it('refuses a /0 (every address), naming the setting; still takes an address, a /1 and a /32', () => {
    for (const entry of ['0.0.0.0/0', '::/0', '10.0.0.0/0']) {
      const problems = problemsOf({ TRUST_PROXY: `10.0.0.1,${entry}` });
      expect(problems, entry).toEqual([
        `TRUST_PROXY (trustProxy): "${entry}" would trust every address, so any client could choose its own ` +
          'address with X-Forwarded-For (for rate limits, block lists and the audit trail); list your reverse ' +
          "proxies' own addresses or CIDRs",
      ]);
    }
    expect(loadConfig({ TRUST_PROXY: '10.0.0.1,128.0.0.0/1,192.0.2.1/32' }).trustProxy).toHaveLength(3);
  });
});
