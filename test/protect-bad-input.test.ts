import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { adminSession } from './identity-helpers.ts';

/** Sends raw bytes on a fresh connection and returns the status line of the answer ('' if the socket just closed). */
function raw(port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('end', () => resolve(answer.split('\r\n')[0] ?? ''));
    socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' ? resolve(answer.split('\r\n')[0] ?? '') : reject(error),
    );
    socket.end(request);
  });
}

const statusOf = (line: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(line)?.[1] ?? 0);

describe('malformed and oversized headers on the wire', () => {
  let t: TestApp;
  let port = 0;
  beforeAll(async () => {
    t = await buildTestApp();
    const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = Number(new URL(url).port);
  });
  afterAll(async () => {
    await t?.close();
  });

  const cases: [string, string | Buffer][] = [
    ['a header line without a colon', 'GET /healthz HTTP/1.1\r\nHost: x\r\nno-colon-here\r\n\r\n'],
    ['a control character in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n'],
    ['a space inside a header name', 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n'],
    [
      'two different Content-Length headers',
      'POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    ],
    [
      'a non-numeric Content-Length',
      'POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n',
    ],
    [
      'Content-Length with Transfer-Encoding (smuggling)',
      'POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
    [
      'a bad chunk size',
      'POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    ],
    [
      "a 64 KiB header (over Node's 16 KiB limit)",
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
    ],
    ['ten thousand small headers', `GET /healthz HTTP/1.1\r\nHost: x\r\n${'X-H: 1\r\n'.repeat(10_000)}\r\n`],
    ['an invalid HTTP version', 'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n'],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0x00])],
  ];

  it.each(cases)(
    'answers %s with a 4xx (or closes), never a 5xx, and keeps serving',
    async (_label, request) => {
      const status = statusOf(await raw(port, request));
      expect(status === 0 || (status >= 400 && status < 500), `status ${status}`).toBe(true);
      expect(statusOf(await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))).toBe(
        200,
      );
    },
  );

  it('answers a large but legal header set without a 5xx', async () => {
    const headers = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x-h-${i}`, 'v'.repeat(200)]));
    const res = await t.app.inject({ url: '/healthz', headers });
    expect(res.statusCode).toBe(200);
  });
});

describe('X-Forwarded-For', () => {
  it('from an untrusted peer is ignored: the socket address is the client (limits and audit use it)', async () => {
    const t = await buildTestApp({ env: { RATE_LIMITS: 'signin.ip=2/60' } });
    try {
      await seedTenant(t, 'acme');
      const codes: number[] = [];
      for (const xff of [
        'not-an-ip',
        '1.2.3.4',
        '::::, 999.1.1.1',
        `${'9'.repeat(5000)}`,
        '203.0.113.1, 198.51.100.2',
      ]) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/v1/t/acme/auth/signin',
          remoteAddress: '192.0.2.50',
          headers: { 'x-forwarded-for': xff },
          payload: { email: 'x@acme.test', password: 'not-the-password-1' },
        });
        codes.push(res.statusCode);
      }
      // Varying the header does not give a fresh quota: the third attempt on is refused.
      expect(codes).toEqual([401, 401, 429, 429, 429]);
    } finally {
      await t.close();
    }
  });

  it('from a trusted proxy: malformed entries are answered without a 5xx', async () => {
    const t = await buildTestApp({ env: { TRUST_PROXY: '127.0.0.1' } });
    try {
      await seedTenant(t, 'acme');
      for (const xff of [
        'not-an-ip',
        '::::',
        '999.1.1.1',
        '1.2.3.4:80',
        `${'9'.repeat(5000)}`,
        ', ,',
        '[::1]',
      ]) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/v1/t/acme/auth/signin',
          remoteAddress: '127.0.0.1',
          headers: { 'x-forwarded-for': xff },
          payload: { email: 'x@acme.test', password: 'not-the-password-1' },
        });
        expect(res.statusCode, xff).toBeLessThan(500);
      }
    } finally {
      await t.close();
    }
  });
});

describe('paging cursors', () => {
  it('a users cursor that decodes to a NUL byte is a 400, not a 500 (found by sqlmap: PostgreSQL text cannot hold NUL)', async () => {
    const t = await buildTestApp();
    try {
      await seedTenant(t, 'acme');
      const admin = await adminSession(t, 'acme');
      for (const cursor of [Buffer.from('m@acme.test\0').toString('base64url'), 'bUBhY21lLnRlc3QA!', '%00']) {
        const res = await t.app.inject({
          url: `/api/v1/t/acme/users?limit=5&cursor=${cursor}`,
          headers: admin.headers,
        });
        expect(res.statusCode, cursor).toBe(400);
        expect(res.json()).toMatchObject({ code: 'validation_failed' });
      }
      const first = await t.app.inject({ url: '/api/v1/t/acme/users?limit=1', headers: admin.headers });
      expect(first.statusCode).toBe(200);
    } finally {
      await t.close();
    }
  });
});
