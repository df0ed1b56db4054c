/**
 * ARGON2_* against the hasher's bounds. Regression (security review, minor): the configuration took
 * ARGON2_MEMORY_KIB up to 4 GiB and ARGON2_ITERATIONS up to 64, the hasher only 1 GiB and 32, so
 * `config check` passed and `start` then failed in the hasher ("argon2 memoryKiB must be …") without
 * naming the variable. Both now read one set of bounds (argon2Limits in src/platform/config/schema.ts).
 */
import { expect, it } from 'vitest';
import { assertValidArgon2Params } from '../src/identity/passwords/params.ts';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  return [];
}

const hasherTakes = (memoryKiB: number, iterations: number) => {
  try {
    assertValidArgon2Params({ memoryKiB, iterations, parallelism: 1 });
    return true;
  } catch {
    return false;
  }
};

it.each([
  ['ARGON2_MEMORY_KIB', 1024 * 1024, (n: number) => hasherTakes(n, 2)],
  ['ARGON2_ITERATIONS', 32, (n: number) => hasherTakes(19_456, n)],
])('%s: takes up to %i, as the hasher does, and refuses more by name', (name, highest, hasher) => {
  expect(problemsOf({ [name]: String(highest) })).toEqual([]);
  expect(hasher(highest)).toBe(true);
  for (const beyond of [highest + 1, highest * 2, highest * 4]) {
    expect(hasher(beyond)).toBe(false);
    const problems = problemsOf({ [name]: String(beyond) });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^${name} \\(argon2\\w+\\): .*less or equal to ${highest}$`));
  }
});
