/**
 * Real server processes (`node bin/rampart.js start` from a fresh build): two nodes starting together
 * against one PostgreSQL database, and a graceful SIGTERM in the middle of a stream of requests.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allMigrations } from '../src/migrations.ts';
import { createPostgresDatabase, engineUnderTest } from './helpers.ts';
import {
  bootstrapToken,
  parseJsonLine,
  runningServers,
  type ServerProcess,
  startServerProcess,
} from './server-process.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'rampart-proc-'));

beforeAll(() => {
  // The processes run the compiled build, so build it from the sources under test.
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'pipe',
    },
  );
  execFileSync(process.execPath, ['scripts/copy-assets.mjs'], { cwd: root, stdio: 'pipe' });
}, 120_000);

afterAll(() => {
  for (const child of runningServers) child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

function startNode(env: Record<string, string>): ServerProcess {
  return startServerProcess(root, ['bin/rampart.js', 'start'], { SHUTDOWN_GRACE_MS: '20000', ...env });
}

interface Answer {
  id: string;
  status?: number;
  body?: string;
  error?: string;
}

/** One GET on a given agent; settles with the complete answer or the error, never rejects. */
function get(agent: http.Agent, url: string, id: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, headers: { ...headers, 'x-request-id': id } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ id, status: res.statusCode ?? 0, body }));
      res.on('error', (error) => resolve({ id, error: `${error.message} (mid-response)` }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ id, error: error.code ?? error.message }));
  });
}

describe.skipIf(engineUnderTest !== 'postgres')(
  'two nodes starting together on one PostgreSQL database',
  () => {
    it('both become ready; each migration ran once; one operator was bootstrapped', async () => {
      const database = await createPostgresDatabase();
      try {
        const env = (n: number) => ({
          DATABASE_URL: database.app,
          DATABASE_OWNER_URL: database.owner,
          DATA_DIR: join(scratch, `node-${n}`),
          SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLXByb2Nlc3MtdGVzdHMtMDEyMzQ1Njc4OQ',
        });
        const nodes = [startNode(env(1)), startNode(env(2))];
        const urls = await Promise.all(nodes.map((n) => n.ready));
        for (const url of urls) {
          const res = await fetch(`${url}/readyz`);
          expect(res.status).toBe(200);
          expect(await res.json()).toEqual({ status: 'ready', engine: 'postgres' });
        }

        const owner = new pg.Client({ connectionString: database.owner });
        await owner.connect();
        try {
          const { rows } = await owner.query<{ name: string; n: number }>(
            'SELECT name, count(*)::int AS n FROM schema_migrations GROUP BY name ORDER BY name',
          );
          expect(rows).toEqual(allMigrations.map((m) => ({ name: m.name, n: 1 })));
          const operators = await owner.query<{ n: number }>('SELECT count(*)::int AS n FROM operators');
          expect(operators.rows).toEqual([{ n: 1 }]);
        } finally {
          await owner.end();
        }
        // Exactly one node printed the one-time credential, and it works on the other node too.
        const tokens = nodes.map(bootstrapToken).filter((t): t is string => t !== undefined);
        expect(tokens).toHaveLength(1);
        for (const url of urls) {
          const res = await fetch(`${url}/api/v1/tenants`, {
            headers: { authorization: `Bearer ${tokens[0]}` },
          });
          expect(res.status).toBe(200);
        }

        for (const node of nodes) node.child.kill('SIGTERM');
        expect(await Promise.all(nodes.map((n) => n.exited))).toEqual([0, 0]);
      } finally {
        await database.drop();
      }
    });
  },
);

describe.skipIf(engineUnderTest !== 'postgres' || !process.env.REDIS_URL)(
  'two server processes sharing the Redis on 127.0.0.1',
  () => {
    it('after the sign-in limit is used up on node A, node B refuses the next request', async () => {
      const database = await createPostgresDatabase();
      // A fresh client address per run (sent through X-Forwarded-For from the trusted loopback peer):
      // the Redis outlives the test and is shared with other runs.
      const ip = `198.18.${randomInt(256)}.${randomInt(1, 255)}`;
      try {
        const env = (n: number) => ({
          DATABASE_URL: database.app,
          DATABASE_OWNER_URL: database.owner,
          DATA_DIR: join(scratch, `redis-node-${n}`),
          SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLXByb2Nlc3MtdGVzdHMtMDEyMzQ1Njc4OQ',
          REDIS_URL: process.env.REDIS_URL ?? '',
          RATE_LIMIT_STORE: 'redis',
          RATE_LIMITS: 'signin.ip=3/60',
          TRUST_PROXY: '127.0.0.1',
        });
        const a = startNode(env(1));
        const urlA = await a.ready;
        const b = startNode(env(2));
        const urlB = await b.ready;
        const token = bootstrapToken(a);
        expect(token).toBeDefined();
        const created = await fetch(`${urlA}/api/v1/tenants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ slug: 'acme', displayName: 'Acme', region: 'eu-de' }),
        });
        expect(created.status).toBe(201);
        const signIn = (url: string, email: string) =>
          fetch(`${url}/api/v1/t/acme/auth/signin`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
            body: JSON.stringify({ email, password: 'not-the-password-123' }),
          });
        for (let i = 0; i < 3; i++) expect((await signIn(urlA, `u${i}@acme.test`)).status).toBe(401);
        const refused = await signIn(urlB, 'u9@acme.test');
        expect(refused.status).toBe(429);
        expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        // Another address is still served by node B: the refusal is this address's, not B's.
        const other = await fetch(`${urlB}/api/v1/t/acme/auth/signin`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.19.0.1' },
          body: JSON.stringify({ email: 'u9@acme.test', password: 'not-the-password-123' }),
        });
        expect(other.status).toBe(401);
        for (const node of [a, b]) node.child.kill('SIGTERM');
        expect(await Promise.all([a.exited, b.exited])).toEqual([0, 0]);
      } finally {
        await database.drop();
      }
    }, 120_000);
  },
);

describe('SIGTERM under load', () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined;
  afterAll(async () => {
    await database?.drop();
  });

  it('answers every request it accepted (200 or 503), then exits 0', async () => {
    // At debug level every request is logged on arrival ("incoming request"), not only on completion.
    const env: Record<string, string> = { DATA_DIR: join(scratch, 'sigterm'), LOG_LEVEL: 'debug' };
    if (engineUnderTest === 'postgres') {
      database = await createPostgresDatabase();
      Object.assign(env, {
        DATABASE_URL: database.app,
        DATABASE_OWNER_URL: database.owner,
        SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLXByb2Nlc3MtdGVzdHMtMDEyMzQ1Njc4OQ',
      });
    }
    const node = startNode(env);
    const url = await node.ready;
    const token = bootstrapToken(node);
    expect(token).toMatch(/^rmp_op_/);

    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const total = 200;
    let answered = 0;
    let signalled = false;
    const answers = await Promise.all(
      Array.from({ length: total }, (_, i) =>
        get(agent, `${url}/api/v1/tenants`, `load-${String(i).padStart(6, '0')}`, {
          authorization: `Bearer ${token}`,
        }).then((answer) => {
          answered += 1;
          // Mid-load: a quarter answered, the rest queued or in flight.
          if (answered === total / 4 && !signalled) {
            signalled = true;
            node.child.kill('SIGTERM');
          }
          return answer;
        }),
      ),
    );
    agent.destroy();
    const exitCode = await node.exited;

    // The server's own log says which requests it accepted: "incoming request" carries our request id.
    const accepted = new Set(
      node.lines
        .map(parseJsonLine)
        .filter((e) => e?.msg === 'incoming request')
        .map((e) => String(e?.reqId)),
    );
    expect(signalled).toBe(true);
    expect(accepted.size).toBeGreaterThan(total / 4);
    for (const answer of answers) {
      if (accepted.has(answer.id)) {
        expect(answer.error, `${answer.id} was accepted but not answered`).toBeUndefined();
        expect([200, 503], `${answer.id}: ${answer.status}`).toContain(answer.status);
        const body = JSON.parse(answer.body ?? '');
        // Regression: Fastify's built-in closing answer was plain JSON and skipped the request log.
        if (answer.status === 503) expect(body).toMatchObject({ code: 'unavailable', status: 503 });
      } else {
        // Never reached the app (refused or reset while closing): a client may retry it elsewhere.
        expect(answer.status, `${answer.id} answered without being logged`).toBeUndefined();
      }
    }
    expect(answers.filter((a) => a.status === 200).length).toBeGreaterThanOrEqual(total / 4);
    expect(exitCode).toBe(0);
  }, 120_000);
});
