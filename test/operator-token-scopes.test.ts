// Least-privilege operator API tokens (security review, 2026-11-27, HIGH: every operator API token
// carried every platform permission, so the decision API's caller and a WAF log shipper each held a
// token that could disable other operators and suspend tenants, with no second factor).
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTokenScopes } from '../src/access/index.ts';
import { systemContext } from '../src/platform/context.ts';
import type { AppError } from '../src/platform/http/problem.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
let otherId: string;

beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, 'scoped-bank');
  const other = await t.app.services.operators.create(systemContext('test'), 'other@ops.test', 'Other');
  otherId = other.operatorId;
});
afterAll(async () => {
  await t?.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const call = (method: 'GET' | 'POST' | 'DELETE', url: string, token: string, payload?: object) =>
  t.app.inject({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });
const issue = (label: string, scopes: string[] | null) =>
  t.app.services.operators.issueToken(systemContext('test'), 'ops@example.test', label, scopes);
const decide = (token: string) =>
  call('POST', '/api/v1/access/decisions', token, {
    checks: [
      {
        tenantId: '00000000-0000-4000-8000-000000000001',
        userId: '00000000-0000-4000-8000-000000000002',
        permission: 'users:read',
      },
    ],
  });

/** The details of the audited refusals of one route. */
async function denials(route: string): Promise<unknown[]> {
  const rows = await t.db.withSystem((tx) =>
    sql<{ details: unknown }>`SELECT details FROM audit_events
      WHERE action = 'access.request.denied' AND target_id = ${route}`.execute(tx),
  );
  return rows.rows.map((r) => (typeof r.details === 'string' ? JSON.parse(r.details) : r.details));
}

function expectOutOfScope(res: Awaited<ReturnType<typeof call>>, permission: string) {
  expect(res.statusCode, res.body).toBe(403);
  expect(res.headers['content-type']).toMatch(/problem\+json/);
  const body = res.json() as { type: string; detail: string };
  expect(body.type).toMatch(/token-out-of-scope$/);
  expect(body.detail).toContain(`"${permission}"`);
  expect(body.detail).toMatch(/limited to its scopes \(decisions:check\)/);
}

describe('a scoped operator API token', () => {
  it('calls the decision API, and gets 403 naming the permission on operator disable and tenant suspend', async () => {
    const { token } = await issue('decision api', ['decisions:check']);
    expect((await decide(token)).statusCode).toBe(200);
    // Twice: the second answer comes from the node's credential cache, which must carry the scopes too.
    for (let i = 0; i < 2; i++) {
      expectOutOfScope(await call('POST', `/api/v1/operators/${otherId}/disable`, token), 'operators:write');
      expectOutOfScope(
        await call('POST', '/api/v1/tenants/scoped-bank/suspend', token, { reason: 'leaked token' }),
        'tenants:write',
      );
      expectOutOfScope(await call('GET', '/api/v1/tenants', token), 'tenants:read');
      expectOutOfScope(
        await call('POST', `/api/v1/operators/${otherId}/revoke-tokens`, token),
        'operators:write',
      );
    }
    // Each refusal is in the audit trail, as for any 403.
    expect(await denials('POST /api/v1/tenants/:slug/suspend')).toContainEqual({
      reason: 'token_out_of_scope',
    });
    // Nothing changed: the other operator is active, the tenant is not suspended.
    const status = await t.db.withSystem((tx) =>
      sql<{ status: string }>`SELECT status FROM operators WHERE id = ${otherId}`.execute(tx),
    );
    expect(status.rows[0]?.status).toBe('active');
    await expect(t.app.services.tenancy.requireActive('scoped-bank')).resolves.toBeDefined();
  });

  it('with several scopes carries each of them (a WAF log shipper and the decision API)', async () => {
    const { token } = await issue('edge', ['waf-events:write', 'decisions:check']);
    expect((await decide(token)).statusCode).toBe(200);
    const at = new Date().toISOString();
    const waf = await call('POST', '/api/v1/protect/waf-events', token, {
      source: 'edge-modsecurity',
      events: [{ at, clientIp: '203.0.113.66', action: 'blocked', ruleId: '942100' }],
    });
    expect(waf.statusCode, waf.body).toBe(202);
    const refused = await call('GET', '/api/v1/operators', token);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().detail).toMatch(
      /"operators:read".*limited to its scopes \(waf-events:write, decisions:check\)/,
    );
  });

  it("cannot list or revoke the operator's own credentials (self routes)", async () => {
    const { token } = await issue('shipper', ['waf-events:write']);
    const bootstrap = await t.app.services.operators.verify(t.operatorToken);
    expect(bootstrap?.scopes).toBeNull();
    const listed = await call('GET', '/api/v1/operator/tokens', token);
    expect(listed.statusCode).toBe(403);
    expect(listed.json().detail).toMatch(/own credentials; this API token is limited to its scopes/);
    expect((await call('POST', '/api/v1/operator/signout', token)).statusCode).toBe(403);
    expect(await denials('GET /api/v1/operator/tokens')).toContainEqual({
      reason: 'token_out_of_scope',
    });
    // The operator's full token still works, and its list shows every token's scopes, never a token.
    const own = await call('GET', '/api/v1/operator/tokens', t.operatorToken);
    expect(own.statusCode).toBe(200);
    const rows = own.json() as Array<{
      id: string;
      label: string;
      scopes: string[] | null;
      current: boolean;
    }>;
    expect(rows.find((r) => r.label === 'shipper')?.scopes).toEqual(['waf-events:write']);
    expect(rows.find((r) => r.current)?.scopes).toBeNull();
    expect(own.body).not.toContain(token);
    // Revoked by the operator, it stops at once.
    const id = rows.find((r) => r.label === 'shipper')?.id ?? '';
    expect((await call('DELETE', `/api/v1/operator/tokens/${id}`, t.operatorToken)).statusCode).toBe(204);
    expect((await call('POST', '/api/v1/protect/waf-events', token, {})).statusCode).toBe(401);
  });

  it('is audited with its scopes; unscoped tokens keep every platform permission', async () => {
    const scoped = await issue('audited', ['decisions:check', 'waf-events:write']);
    const full = await issue('full', null);
    const events = await t.db.withSystem((tx) =>
      sql<{ details: Record<string, unknown> }>`SELECT details FROM audit_events
        WHERE action = 'identity.operator.token_issued' ORDER BY chain_seq`.execute(tx),
    );
    const details = events.rows.map((r) =>
      typeof r.details === 'string' ? JSON.parse(r.details) : r.details,
    );
    expect(details).toContainEqual(
      expect.objectContaining({ issuedId: scoped.tokenId, scopes: 'decisions:check waf-events:write' }),
    );
    expect(details).toContainEqual(expect.objectContaining({ issuedId: full.tokenId, scopes: null }));
    expect((await call('GET', '/api/v1/tenants', full.token)).statusCode).toBe(200);
    expect((await call('GET', '/api/v1/operators', full.token)).statusCode).toBe(200);
    expect((await call('GET', '/api/v1/operator/tokens', full.token)).statusCode).toBe(200);
  });

  it('is never scoped to nothing (the database refuses an empty list)', async () => {
    await expect(
      t.db.withSystem((tx) => sql`UPDATE operator_tokens SET scopes = '{}' WHERE kind = 'api'`.execute(tx)),
    ).rejects.toThrow(/operator_tokens_scopes_api/);
  });
});

describe('checkTokenScopes', () => {
  it('keeps platform permissions (sorted, once) and refuses unknown and tenant ones by name', () => {
    expect(checkTokenScopes(['waf-events:write', 'decisions:check', 'waf-events:write'])).toEqual([
      'decisions:check',
      'waf-events:write',
    ]);
    const refusal = (scopes: string[]) => {
      try {
        checkTokenScopes(scopes);
      } catch (error) {
        return error as AppError;
      }
      throw new Error('accepted');
    };
    expect(refusal(['decisions:check', 'nope:never'])).toMatchObject({
      spec: { status: 422 },
      code: 'invalid_token_scope',
      detail: expect.stringContaining('"nope:never"'),
    });
    expect(refusal(['users:read']).detail).toMatch(/"users:read" is a tenant permission/);
    expect(refusal([]).spec.status).toBe(422);
  });
});
