/**
 * A JSON syntax error in the RAMPART_CONFIG file. Regression (security review, minor): the problem quoted
 * V8's message, which for an unexpected token quotes the text around it ("Unexpected token 'x',
 * "{"secretKey": "…" is not valid JSON"), so a typo next to the secret key printed the key's start to the
 * terminal or the service log. Now the problem says where the error is, by line and column, and nothing of
 * what is there.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'rampart-config-json-'));
// Fixed, so the error's place is too: a random key may begin with a digit or '-', which JSON reads on.
const secretKey = 'Zm9yLXRoZS10ZXN0cy1vbmx5LW5vdC1hLXJlYWwta2V';

function problemsFor(content: string): string[] {
  const path = join(dir, `${randomBytes(4).toString('hex')}.json`);
  writeFileSync(path, content);
  try {
    loadConfig({ RAMPART_CONFIG: path });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`RAMPART_CONFIG: ${path} is not a JSON object`);
    return problems.map((problem) => problem.replace(path, 'FILE'));
  }
  return expect.fail('the file was accepted');
}

it.each([
  // An unquoted value: V8 quotes the text around the token it stopped at.
  [`{\n  "port": 3000,\n  "secretKey": ${secretKey}\n}`, 'line 3, column 16'],
  [`{"secretKey": "${secretKey}" x}`, 'line 1, column 61'],
  [`{"secretKey": "${secretKey}",\n"port": tru}`, 'line 2, column 12'],
  [`{"secretKey": "${secretKey}"`, 'line 1, column 60'],
  ['', 'line 1, column 1'],
])('names the line and column of a syntax error, never the content (%#)', (content, where) => {
  const [problem] = problemsFor(content);
  expect(problem).toBe(`RAMPART_CONFIG: FILE is not a JSON object (JSON syntax error at ${where})`);
  expect(problem).not.toContain(secretKey.slice(0, 4));
});

it('still refuses valid JSON that is not an object', () => {
  expect(problemsFor('[1, 2]')).toEqual(['RAMPART_CONFIG: FILE is not a JSON object']);
});
