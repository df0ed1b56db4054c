/**
 * SECRET_KEY rotation of sealed TOTP seeds and recovery codes (security review, MEDIUM): there was one
 * root key and no fallback, so starting the nodes with a new SECRET_KEY (docs/audit.md, "Key rotation")
 * made every operator sign-in a 500 (the seed threw inside the transaction, after the attempt was
 * reserved), locked every TOTP user out, and broke recovery codes and webhook signing secrets. Nodes
 * built one after another on one database, as a restart with another key; `rampart keys rewrap`'s
 * work (rewrapAll) run between them. PGlite and PostgreSQL.
 */
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { rewrapAll, sealingBoxes } from '../src/cli/keys.ts';
import { createOperatorService, toTenantRef } from '../src/identity/index.ts';
import { csrfTokenFor } from '../src/identity/session-tokens.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import {
  createTestDatabase,
  fakeClock,
  seedTenant,
  type TestApp,
  type TestDatabase,
  testConfig,
} from './helpers.ts';
import { adminSession, strongPassword, totpCode } from './identity-helpers.ts';

const KEY_A = 'rotation-test-key-A-0123456789abcdefghijklmnopqrstuvwxyzABCD';
const KEY_B = 'rotation-test-key-B-9876543210zyxwvutsrqponmlkjihgfedcbaZYXW';
const slug = 'rotation';
const opPassword = 'Operator-Long-Passphrase-1';
const clock = fakeClock(new Date());
let database: TestDatabase;
let first: TestApp;
let tenantId: string;
let admin: Awaited<ReturnType<typeof adminSession>>;
/** A second tenant's admin, whose seed no sign-in touches before the rewrap. */
let idle: Awaited<ReturnType<typeof adminSession>>;
const sinkId = '5b0c3a3e-0000-4000-8000-00000000a001';
const alertSecret = 'whsec_rotation-test-alert-secret';
const sinkSecret = 'whsec_rotation-test-sink-secret';
let operatorSecret: string;
const nodes: FastifyInstance[] = [];

/** A node started with SECRET_KEY and SECRET_KEY_PREVIOUS as given. */
async function node(secretKey: string, previous?: string): Promise<FastifyInstance> {
  const config = testConfig({
    SECRET_KEY: secretKey,
    ...(previous ? { SECRET_KEY_PREVIOUS: previous } : {}),
  });
  const app = await buildApp({
    config,
    db: database.db,
    clock,
    logger: false,
    breached: await openBreachedScreen(config),
  });
  nodes.push(app);
  return app;
}

beforeAll(async () => {
  database = await createTestDatabase();
  const app = await node(KEY_A);
  const issued = await createOperatorService({
    db: database.db,
    clock,
    tokenTtlDays: 30,
    publicUrl: 'http://localhost',
  }).bootstrap('ops@example.test');
  if (!issued) throw new Error('no operator');
  first = {
    app,
    db: database.db,
    database,
    config: testConfig(),
    operatorToken: issued.token,
    asOperator: { authorization: `Bearer ${issued.token}` },
    close: async () => {},
  };
  tenantId = (await seedTenant(first, slug)).id;
  admin = await adminSession(first, slug, undefined, () => clock.now().getTime());
  await seedTenant(first, `${slug}-idle`);
  idle = await adminSession(first, `${slug}-idle`, undefined, () => clock.now().getTime());
  // A tenant's alert webhook secret and a SIEM sink's, sealed under key A as the services seal them.
  const underA = (purpose: string) => createSecretBox(deriveKey(Buffer.from(KEY_A), purpose));
  const alertSealed = underA('audit-alerts').seal(alertSecret, `audit-alert-webhook:${tenantId}`);
  await database.db.withTenant(asTenantId(tenantId), (tx) =>
    sql`INSERT INTO audit_alert_settings (tenant_id, webhook_url, webhook_secret_sealed, updated_at)
      VALUES (${tenantId}, 'https://hooks.example.test/alerts', ${alertSealed}, now())`.execute(tx),
  );
  const sinkSealed = underA('audit-sinks').seal(sinkSecret, `audit-sink:${sinkId}`);
  await database.db.withSystem((tx) =>
    sql`INSERT INTO audit_sinks (id, kind, url, secret_sealed, created_at, disabled_at)
      VALUES (${sinkId}, 'webhook', 'https://siem.example.test/', ${sinkSealed}, now(), now())`.execute(tx),
  );
  const created = await app.services.operators.create(
    { actor: { type: 'system', id: 'test' }, ip: null, userAgent: null, requestId: null },
    'rotating@ops.test',
    'Op',
  );
  const token = new URL(created.setupLink).searchParams.get('token') ?? '';
  const begin = await app.inject({
    method: 'POST',
    url: '/api/v1/operator/setup',
    payload: { token, password: opPassword },
  });
  operatorSecret = (begin.json() as { secret: string }).secret;
  const confirm = await app.inject({
    method: 'POST',
    url: '/api/v1/operator/setup/confirm',
    payload: { token, code: totpCode(operatorSecret, clock.now().getTime()) },
  });
  if (confirm.statusCode !== 200) throw new Error(`operator set-up: ${confirm.body}`);
});

afterAll(async () => {
  for (const app of nodes) await app.close();
  await database?.close();
});

/** A tenant sign-in's second step with `code`, a time step later than the last one. */
async function secondFactor(app: FastifyInstance, code: (at: number) => string, who = admin, at = slug) {
  clock.advance(30_000);
  const signIn = await app.inject({
    method: 'POST',
    url: `/api/v1/t/${at}/auth/signin`,
    payload: { email: who.email, password: strongPassword },
  });
  expect(signIn.json()).toMatchObject({ stage: 'mfa' });
  return app.inject({
    method: 'POST',
    url: `/api/v1/t/${at}/auth/second-factor`,
    headers: { authorization: `Bearer ${signIn.json().token}` },
    payload: { code: code(clock.now().getTime()) },
  });
}

function operatorSignIn(app: FastifyInstance) {
  clock.advance(30_000);
  return app.inject({
    method: 'POST',
    url: '/api/v1/operator/signin',
    payload: {
      email: 'rotating@ops.test',
      password: opPassword,
      code: totpCode(operatorSecret, clock.now().getTime()),
    },
  });
}

const failures = async () => {
  const user = await database.db.withTenant(asTenantId(tenantId), (tx) =>
    sql<{ n: number }>`SELECT mfa_failures AS n FROM users WHERE email = ${admin.email}`.execute(tx),
  );
  const operator = await database.db.withSystem((tx) =>
    sql<{
      n: number;
    }>`SELECT password_failures AS n FROM operators WHERE email = 'rotating@ops.test'`.execute(tx),
  );
  return { user: user.rows[0]?.n, operator: operator.rows[0]?.n };
};

describe('SECRET_KEY rotation with SECRET_KEY_PREVIOUS', () => {
  it('the new key alone: a clear 503 that does not count against the user, never a 500', async () => {
    const app = await node(KEY_B);
    for (let i = 0; i < 6; i++) {
      const tenant = await secondFactor(app, (at) => totpCode(admin.secret, at));
      expect(tenant.statusCode).toBe(503);
      expect(tenant.json()).toMatchObject({ code: 'factor_unavailable' });
      const operator = await operatorSignIn(app);
      expect(operator.statusCode).toBe(503);
      expect(operator.json()).toMatchObject({ code: 'factor_unavailable' });
    }
    // Six refusals, none counted: neither is locked out (the threshold is five).
    expect(await failures()).toEqual({ user: 0, operator: 0 });
  });

  it('new key with the old one previous: TOTP and recovery codes work, and seeds are sealed anew', async () => {
    const app = await node(KEY_B, KEY_A);
    expect((await secondFactor(app, (at) => totpCode(admin.secret, at))).statusCode).toBe(200);
    expect((await operatorSignIn(app)).statusCode).toBe(200);
    const recovery = await secondFactor(app, () => admin.recoveryCodes[0] ?? '');
    expect(recovery.statusCode).toBe(200);

    // A page rendered before the rotation still submits: its CSRF token verifies under the previous key.
    const browser = await first.app.services.identity.signIn(
      toTenantRef({ id: tenantId, slug }),
      admin.email,
      strongPassword,
      'cookie',
      { actor: { type: 'anonymous', id: null }, ip: '127.0.0.1', userAgent: null, requestId: null },
    );
    const signOut = (app: FastifyInstance) =>
      app.inject({
        method: 'POST',
        url: `/api/v1/t/${slug}/auth/signout`,
        headers: {
          cookie: `rampart_session=${browser.token}`,
          'x-csrf-token': csrfTokenFor(first.app.services.identity.deps, browser.sessionId),
        },
      });
    expect((await signOut(await node(KEY_B))).json()).toMatchObject({ code: 'csrf_failed' });
    expect((await signOut(app)).statusCode).toBe(200);

    // The uses sealed both seeds under the new key: it alone now opens them.
    const alone = await node(KEY_B);
    expect((await secondFactor(alone, (at) => totpCode(admin.secret, at))).statusCode).toBe(200);
    expect((await operatorSignIn(alone)).statusCode).toBe(200);
    // A recovery code issued under the old key needs it listed: HMACs cannot be re-keyed.
    expect((await secondFactor(alone, () => admin.recoveryCodes[1] ?? '')).statusCode).toBe(401);
  });

  it("rampart keys rewrap seals the rest anew, in each tenant's scope; then the new key alone does", async () => {
    const tenants = await database.db.withSystem((tx) =>
      sql<{ id: string; slug: string }>`SELECT id, slug FROM tenants ORDER BY slug`.execute(tx),
    );
    const refs = tenants.rows.map(toTenantRef);
    const ctx = {
      actor: { type: 'system' as const, id: 'cli:test' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const boxes = sealingBoxes(testConfig({ SECRET_KEY: KEY_B, SECRET_KEY_PREVIOUS: KEY_A }));
    const counts = await rewrapAll({ db: database.db, clock }, boxes, refs, ctx);
    // The first admin's and the operator's seeds were sealed anew by their use above.
    expect(counts).toMatchObject({
      seeds: { resealed: 1, current: 1, unreadable: 0 },
      operators: { resealed: 0, current: 1, unreadable: 0 },
      alerts: { resealed: 1, current: 0, unreadable: 0 },
      sinks: { resealed: 1, current: 0, unreadable: 0 },
    });
    const again = await rewrapAll({ db: database.db, clock }, boxes, refs, ctx);
    expect(again).toMatchObject({ seeds: { resealed: 0, current: 2 }, alerts: { resealed: 0, current: 1 } });

    const alone = await node(KEY_B);
    expect(
      (await secondFactor(alone, (at) => totpCode(idle.secret, at), idle, `${slug}-idle`)).statusCode,
    ).toBe(200);
    // The webhook secrets open under key B alone (what the sink transport and alert delivery do).
    const onlyB = sealingBoxes(testConfig({ SECRET_KEY: KEY_B }));
    const sealed = await database.db.withSystem((tx) =>
      sql<{ s: string }>`SELECT secret_sealed AS s FROM audit_sinks WHERE id = ${sinkId}`.execute(tx),
    );
    expect(onlyB.sinks.open(sealed.rows[0]?.s ?? '', `audit-sink:${sinkId}`)).toBe(sinkSecret);
    const alert = await database.db.withTenant(asTenantId(tenantId), (tx) =>
      sql<{ s: string }>`SELECT webhook_secret_sealed AS s FROM audit_alert_settings`.execute(tx),
    );
    expect(onlyB.alerts.open(alert.rows[0]?.s ?? '', `audit-alert-webhook:${tenantId}`)).toBe(alertSecret);
  });
});
