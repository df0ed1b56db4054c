// Two nodes (buildApp twice) on one database: an operator credential revoked or an operator disabled
// through node A is refused by node B at its next request once the bus message arrived, although B had
// the credential cached (security review, 2026-11-27: nothing published on the operator-tokens topic).
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { createOperatorService } from '../src/identity/index.ts';
import { OPERATOR_TOKENS_TOPIC } from '../src/identity/operators.ts';
import { createInProcessBus, type InvalidationBus, openInvalidationBus } from '../src/platform/bus/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { operatorSession } from './access-helpers.ts';
import {
  createTestDatabase,
  engineUnderTest,
  fakeClock,
  type TestApp,
  type TestDatabase,
  testConfig,
} from './helpers.ts';

const clock = fakeClock(new Date());
const channel = `rampart_test_${randomBytes(6).toString('hex')}`;
let database: TestDatabase;
let a: TestApp;
let b: FastifyInstance;
let busA: InvalidationBus;
let busB: InvalidationBus;

/** One bus per node on PostgreSQL (NOTIFY, or Redis when REDIS_URL is set); PGlite is one process. */
async function openBuses(): Promise<[InvalidationBus, InvalidationBus]> {
  if (!database.urls) {
    const shared = createInProcessBus();
    return [shared, shared];
  }
  const options = { databaseUrl: database.urls.app, redisUrl: process.env.REDIS_URL, channel };
  return [
    await openInvalidationBus({ ...options, name: `${channel}-a` }),
    await openInvalidationBus({ ...options, name: `${channel}-b` }),
  ];
}

async function node(bus: InvalidationBus) {
  const config = testConfig();
  return buildApp({
    config,
    db: database.db,
    clock,
    logger: false,
    bus,
    breached: await openBreachedScreen(config),
  });
}

/** Resolves when node B's bus has received the next message on the operator-tokens topic. */
function arrivalOnB(): Promise<string> {
  return new Promise((resolve) => {
    const off = busB.subscribe(OPERATOR_TOKENS_TOPIC, (key) => {
      off();
      resolve(key);
    });
  });
}

beforeAll(async () => {
  database = await createTestDatabase();
  [busA, busB] = await openBuses();
  const appA = await node(busA);
  b = await node(busB);
  const issued = await createOperatorService({
    db: database.db,
    clock,
    tokenTtlDays: 30,
    publicUrl: 'http://localhost',
  }).bootstrap('ops@example.test');
  if (!issued) throw new Error('no operator');
  a = {
    app: appA,
    db: database.db,
    database,
    config: testConfig(),
    operatorToken: issued.token,
    asOperator: { authorization: `Bearer ${issued.token}` },
    close: async () => {},
  };
});

afterAll(async () => {
  await a?.app.close();
  await b?.close();
  await busA?.close();
  if (busB !== busA) await busB?.close();
  await database?.close();
});

const tenantsOn = (app: FastifyInstance, headers: { authorization: string }) =>
  app.inject({ method: 'GET', url: '/api/v1/tenants', headers });

describe(`operator credentials on two nodes of one ${engineUnderTest} database`, () => {
  it('a sign-out through A is refused through B at its next request', async () => {
    const op = await operatorSession(a, 'out@two.test', clock);
    expect((await tenantsOn(b, op.headers)).statusCode).toBe(200); // cached on B
    const told = arrivalOnB();
    expect(
      (await a.app.inject({ method: 'POST', url: '/api/v1/operator/signout', headers: op.headers }))
        .statusCode,
    ).toBe(204);
    await told;
    expect((await tenantsOn(b, op.headers)).statusCode).toBe(401);
    expect((await tenantsOn(b, op.apiHeaders)).statusCode).toBe(200);
  });

  it('disabling an operator through A ends every credential of theirs on B', async () => {
    const op = await operatorSession(a, 'gone@two.test', clock);
    expect((await tenantsOn(b, op.headers)).statusCode).toBe(200);
    expect((await tenantsOn(b, op.apiHeaders)).statusCode).toBe(200);
    const told = arrivalOnB();
    const res = await a.app.inject({
      method: 'POST',
      url: `/api/v1/operators/${op.operatorId}/disable`,
      headers: a.asOperator,
      payload: { reason: 'two-node test' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(await told).toBe(`operator:${op.operatorId}`);
    expect((await tenantsOn(b, op.headers)).statusCode).toBe(401);
    expect((await tenantsOn(b, op.apiHeaders)).statusCode).toBe(401);
  });

  it('a token revoked by id through A is refused through B', async () => {
    const op = await operatorSession(a, 'one@two.test', clock);
    expect((await tenantsOn(b, op.apiHeaders)).statusCode).toBe(200);
    const list = await a.app.inject({ method: 'GET', url: '/api/v1/operator/tokens', headers: op.headers });
    const api = (list.json() as Array<{ id: string; kind: string }>).find((x) => x.kind === 'api');
    const told = arrivalOnB();
    const res = await a.app.inject({
      method: 'DELETE',
      url: `/api/v1/operator/tokens/${api?.id}`,
      headers: op.headers,
    });
    expect(res.statusCode).toBe(204);
    await told;
    expect((await tenantsOn(b, op.apiHeaders)).statusCode).toBe(401);
    expect((await tenantsOn(b, op.headers)).statusCode).toBe(200);
  });
});
