import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemContext } from '../src/platform/context.ts';
import { buildTestApp, type TestApp } from './helpers.ts';
import { totpCode } from './identity-helpers.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

const post = (url: string, payload: object) => t.app.inject({ method: 'POST', url, payload });
const password = 'Operator-Long-Passphrase-1';

async function enrolledOperator(email: string) {
  const issued = await t.app.services.operators.create(systemContext('test'), email, 'Op');
  const token = new URL(issued.setupLink).searchParams.get('token') ?? '';
  const begin = await post('/api/v1/operator/setup', { token, password });
  expect(begin.statusCode).toBe(200);
  const { secret } = begin.json() as { secret: string };
  const confirm = await post('/api/v1/operator/setup/confirm', { token, code: totpCode(secret) });
  expect(confirm.statusCode).toBe(200);
  return { secret, token };
}

describe('operator sign-in: password and TOTP, always', () => {
  it('sets up through the one-time link, which then stops working', async () => {
    const issued = await t.app.services.operators.create(systemContext('test'), 'setup@ops.test', 'Op');
    const token = new URL(issued.setupLink).searchParams.get('token') ?? '';
    const short = await post('/api/v1/operator/setup', { token, password: 'too-short' });
    expect(short.statusCode).toBe(422);
    const begin = await post('/api/v1/operator/setup', { token, password });
    const { secret, uri } = begin.json() as { secret: string; uri: string };
    expect(uri).toMatch(/^otpauth:\/\/totp\//);
    expect((await post('/api/v1/operator/setup/confirm', { token, code: '000000' })).statusCode).toBe(401);
    expect((await post('/api/v1/operator/setup/confirm', { token, code: totpCode(secret) })).statusCode).toBe(
      200,
    );
    const again = await post('/api/v1/operator/setup', { token, password });
    expect(again.json().code).toBe('token_invalid');
    // A set-up token is never an API credential.
    const asBearer = await t.app.inject({
      url: '/api/v1/tenants',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(asBearer.statusCode).toBe(401);
  });

  it('needs both factors in one request, refuses a replayed code, and the session token works', async () => {
    const { secret } = await enrolledOperator('two@ops.test');
    const noCode = await post('/api/v1/operator/signin', { email: 'two@ops.test', password, code: '123456' });
    expect(noCode.statusCode).toBe(401);
    const wrongPassword = await post('/api/v1/operator/signin', {
      email: 'two@ops.test',
      password: 'nope-nope-nope',
      code: totpCode(secret, Date.now() + 30_000),
    });
    expect(wrongPassword.json().detail).toBe(noCode.json().detail);
    const code = totpCode(secret, Date.now() + 30_000);
    const ok = await post('/api/v1/operator/signin', { email: 'two@ops.test', password, code });
    expect(ok.statusCode).toBe(200);
    const list = await t.app.inject({
      url: '/api/v1/tenants',
      headers: { authorization: `Bearer ${ok.json().token}` },
    });
    expect(list.statusCode).toBe(200);
    const replay = await post('/api/v1/operator/signin', { email: 'two@ops.test', password, code });
    expect(replay.statusCode).toBe(401);
  });

  it('locks after five failed attempts', async () => {
    const { secret } = await enrolledOperator('lock@ops.test');
    for (let i = 0; i < 5; i++)
      await post('/api/v1/operator/signin', {
        email: 'lock@ops.test',
        password: `wrong-${i}-password`,
        code: '000000',
      });
    const right = await post('/api/v1/operator/signin', {
      email: 'lock@ops.test',
      password,
      code: totpCode(secret, Date.now() + 30_000),
    });
    expect(right.statusCode).toBe(401);
  });
});
