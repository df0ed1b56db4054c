// The access log: one line per request, with what an operator needs and nothing a query string carries.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { loggerOptions } from '../src/platform/log.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { createTestDatabase, type TestDatabase, testConfig } from './helpers.ts';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

async function appLogging(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const config = testConfig();
  const app = await buildApp({
    config,
    db: database.db,
    logger: { ...loggerOptions(level), stream },
    breached: await openBreachedScreen(config),
  });
  return { app, lines };
}

describe('access log', () => {
  it('writes one "request completed" line per request, with the path but not the query string', async () => {
    const { app, lines } = await appLogging('info');
    try {
      const res = await app.inject({ url: '/healthz?token=rmp_s_must-not-be-logged' });
      expect(res.statusCode).toBe(200);
      const forRequest = lines.filter((l) => l.reqId === res.headers['x-request-id']);
      expect(forRequest).toHaveLength(1);
      expect(forRequest[0]).toMatchObject({
        msg: 'request completed',
        method: 'GET',
        path: '/healthz',
        route: '/healthz',
        status: 200,
      });
      expect(typeof forRequest[0]?.ms).toBe('number');
      expect(JSON.stringify(lines)).not.toContain('must-not-be-logged');
    } finally {
      await app.close();
    }
  });

  it('logs refusals with their problem code and status, and arrivals too at debug level', async () => {
    const { app, lines } = await appLogging('debug');
    try {
      const res = await app.inject({ url: '/api/v1/tenants', headers: { authorization: 'Bearer nope' } });
      expect(res.statusCode).toBe(401);
      const forRequest = lines.filter((l) => l.reqId === res.headers['x-request-id']).map((l) => l.msg);
      expect(forRequest).toEqual(['incoming request', 'request refused', 'request completed']);
      expect(lines.find((l) => l.msg === 'request completed')).toMatchObject({ status: 401 });
      // The Authorization header never reaches a line.
      expect(JSON.stringify(lines)).not.toContain('Bearer nope');
    } finally {
      await app.close();
    }
  });
});
