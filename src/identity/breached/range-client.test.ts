import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPwnedRangeClient, type FetchLike, findSuffix } from './range-client.ts';

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex').toUpperCase();
const breachedPw = 'P@ssw0rd-in-a-breach';
const rarePw = 'seen-only-once-pw';
const paddedPw = 'only-in-padding-pw';

/** What the server saw: the client must send only the 5-digit prefix and ask for padding. */
const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
let server: Server;
let base: string;

/** A synthetic range response: real rows, padding rows (count 0), CRLF endings, as the API serves them. */
function rangeBody(prefix: string): string {
  const rows: string[] = [];
  for (const [pw, count] of [
    [breachedPw, 4211],
    [rarePw, 1],
    [paddedPw, 0],
  ] as const) {
    const h = sha1(pw);
    if (h.startsWith(prefix)) rows.push(`${h.slice(5)}:${count}`);
  }
  for (let i = 0; i < 50; i++)
    rows.push(`${i.toString(16).toUpperCase().padStart(35, '0')}:${i % 3 === 0 ? 0 : i}`);
  return rows.join('\r\n');
}

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const prefix = (req.url ?? '').split('/').pop() ?? '';
    if (prefix === 'FFFFF') return; // never answers: exercises the timeout
    if (prefix === 'EEEEE') {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(rangeBody(prefix));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/range/`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const fetchLike: FetchLike = (url, init) => fetch(url, init);

describe('Pwned Passwords range client', () => {
  it('finds a breached password from its prefix alone, sending Add-Padding', async () => {
    const client = createPwnedRangeClient({ fetch: fetchLike, baseUrl: base, failMode: 'open' });
    expect(await client.check(breachedPw)).toEqual({ breached: true, count: 4211, unavailable: false });
    const last = seen.at(-1);
    expect(last?.url).toBe(`/range/${sha1(breachedPw).slice(0, 5)}`);
    expect(last?.headers['add-padding']).toBe('true');
    // The full hash (or any part past the prefix) never leaves the process.
    expect(JSON.stringify(seen)).not.toContain(sha1(breachedPw).slice(5, 15));
  });

  it('ignores padding rows (count 0) and applies a minimum count', async () => {
    const client = createPwnedRangeClient({ fetch: fetchLike, baseUrl: base, failMode: 'open', minCount: 2 });
    expect((await client.check(paddedPw)).breached).toBe(false);
    expect(await client.check(rarePw)).toEqual({ breached: false, count: 1, unavailable: false });
    expect((await client.check('a-password-not-in-the-response')).breached).toBe(false);
  });

  it('fails open or closed on a timeout, as configured', async () => {
    const hex = `FFFFF${'0'.repeat(35)}`;
    const open = createPwnedRangeClient({ fetch: fetchLike, baseUrl: base, failMode: 'open', timeoutMs: 50 });
    const closed = createPwnedRangeClient({
      fetch: fetchLike,
      baseUrl: base,
      failMode: 'closed',
      timeoutMs: 50,
    });
    expect(await open.checkSha1(hex)).toEqual({ breached: false, count: 0, unavailable: true });
    expect(await closed.checkSha1(hex)).toEqual({ breached: true, count: 0, unavailable: true });
  });

  it('fails per the setting on an error status or a failing transport', async () => {
    const closed = createPwnedRangeClient({ fetch: fetchLike, baseUrl: base, failMode: 'closed' });
    expect(await closed.checkSha1(`EEEEE${'1'.repeat(35)}`)).toMatchObject({
      breached: true,
      unavailable: true,
    });
    const refused: FetchLike = () => Promise.reject(new Error('egress denied'));
    const open = createPwnedRangeClient({ fetch: refused, failMode: 'open' });
    expect(await open.check('anything')).toEqual({ breached: false, count: 0, unavailable: true });
  });

  it('refuses input that is not a SHA-1', async () => {
    const client = createPwnedRangeClient({ fetch: fetchLike, baseUrl: base, failMode: 'open' });
    await expect(client.checkSha1('123')).rejects.toThrow(TypeError);
  });
});

describe('findSuffix', () => {
  it('matches case-insensitively across LF and CRLF bodies', () => {
    const suffix = 'A'.repeat(35);
    expect(findSuffix(`${'b'.repeat(35)}:3\n${'a'.repeat(35)}:9`, suffix)).toBe(9);
    expect(findSuffix(`${suffix}:12\r\n`, suffix)).toBe(12);
    expect(findSuffix(`${suffix}:0\r\n`, suffix)).toBe(0);
    expect(findSuffix('', suffix)).toBe(0);
  });
});
