/** `rampart audit ...`: verify, checkpoint, public-key, export and offline verify-file. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runRampart } from './cli-helpers.ts';
import { createPostgresDatabase, engineUnderTest } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'rampart-audit-cli-'));
let env: Record<string, string>;
let drop = async () => {};

beforeAll(async () => {
  env = { DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'silent' };
  if (engineUnderTest === 'postgres') {
    const pg = await createPostgresDatabase();
    Object.assign(env, {
      DATABASE_URL: pg.app,
      DATABASE_OWNER_URL: pg.owner,
      SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWNsaS10ZXN0cy0wMTIzNDU2Nzg5',
    });
    drop = pg.drop;
  }
});
afterAll(async () => {
  await drop();
  rmSync(dir, { recursive: true, force: true });
});

async function rampart(...args: string[]) {
  return rampartWith(env, ...args);
}

function rampartWith(env: Record<string, string>, ...args: string[]) {
  return runRampart(env, args);
}

it('verifies, signs, exports a bundle and verifies it offline; a doctored bundle fails', async () => {
  if (engineUnderTest === 'postgres') expect((await rampart('migrate')).code).toBe(0);
  for (const slug of ['alpha', 'bravo', 'charlie']) {
    expect(
      (await rampart('tenants', 'create', '--slug', slug, '--name', slug, '--region', 'eu-de')).code,
    ).toBe(0);
  }
  const checkpoint = await rampart('audit', 'checkpoint');
  expect(checkpoint.out).toMatch(/^platform: signed seq 3$/m);

  const verify = await rampart('audit', 'verify');
  expect(verify.code).toBe(0);
  expect(verify.out).toMatch(/^platform: ok, 3 events up to seq 3, 1 signed checkpoints$/m);
  expect(verify.out).toMatch(/^tenant alpha: ok/m);
  expect((await rampart('audit', 'verify', '--tenant', 'nope')).code).not.toBe(0);

  const key = await rampart('audit', 'public-key');
  const pem = key.out.slice(key.out.indexOf('-----BEGIN'));
  expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
  writeFileSync(join(dir, 'key.pem'), pem);

  const bundle = join(dir, 'platform.jsonl');
  // Regression: an existing file kept its mode (0644 here): the trail was written world-readable.
  writeFileSync(bundle, '', { mode: 0o644 });
  expect((await rampart('audit', 'export', '--out', bundle)).out).toMatch(/wrote 3 events/);
  expect(statSync(bundle).mode & 0o777).toBe(0o600);
  const offline = await rampart('audit', 'verify-file', bundle, '--public-key', join(dir, 'key.pem'));
  expect(offline.out).toMatch(
    /^platform: ok, 3 events, 1 signed checkpoints, signed through seq 3 at \d{4}-\d\d-\d\dT[\d:.]+Z$/m,
  );
  expect(offline.code).toBe(0);

  // The export itself is the chain's fourth event (review: the shell's export left no trace), a fourth
  // tenant its fifth: both after the last checkpoint. The bundle of that head fails offline (a named
  // failure) unless the unsigned tail is allowed, and then it is counted.
  expect(
    (await rampart('tenants', 'create', '--slug', 'delta', '--name', 'delta', '--region', 'eu-de')).code,
  ).toBe(0);
  const tailed = join(dir, 'tailed.jsonl');
  expect((await rampart('audit', 'export', '--out', tailed)).out).toMatch(/wrote 5 events/);
  const exported = readFileSync(tailed, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { seq?: number; action?: string; actor?: { id: string }; details?: unknown })
    .find((e) => e.action === 'audit.trail.exported');
  expect(exported).toMatchObject({ seq: 4, details: { format: 'bundle', events: 3 } });
  expect(exported?.actor?.id).toMatch(/^cli:/);
  const unsigned = await rampart('audit', 'verify-file', tailed, '--public-key', join(dir, 'key.pem'));
  expect(unsigned.code).not.toBe(0);
  expect(unsigned.out).toMatch(
    /^platform: BROKEN, unsigned at seq 4: 2 event\(s\) after the last signed checkpoint, seq 3/m,
  );
  expect(unsigned.err).toContain('--allow-unsigned-tail');
  const allowed = await rampart(
    'audit',
    'verify-file',
    tailed,
    '--public-key',
    join(dir, 'key.pem'),
    '--allow-unsigned-tail',
  );
  expect(allowed.code).toBe(0);
  expect(allowed.out).toMatch(
    /^platform: ok, 5 events, 1 signed checkpoints, signed through seq 3 at .*, 2 events after it unsigned$/m,
  );

  // Change one event's slug in the bundle: verify-file names that event.
  const lines = readFileSync(bundle, 'utf8').trimEnd().split('\n');
  const second = JSON.parse(lines.find((l) => l.includes('"seq":2,"id"')) ?? '{}') as { id: string };
  writeFileSync(
    bundle,
    `${lines.map((l) => (l.includes(second.id) ? l.replace('"bravo"', '"bravo2"') : l)).join('\n')}\n`,
  );
  const doctored = await rampart('audit', 'verify-file', bundle, '--public-key', join(dir, 'key.pem'));
  expect(doctored.code).not.toBe(0);
  expect(doctored.out).toContain(`BROKEN, modified at seq 2 (event ${second.id})`);

  // Nothing here is older than the retention: prune (and its dry run) delete nothing and say so.
  const dry = await rampart('audit', 'prune', '--dry-run');
  expect(dry.code).toBe(0);
  expect(dry.out).toMatch(/^platform: nothing to prune \(retention 400 days, verified from seq 0\)$/m);
  const prune = await rampart('audit', 'prune', '--tenant', 'alpha');
  expect(prune.code).toBe(0);
  expect(prune.out).toMatch(/^tenant alpha: nothing to prune/m);
}, 60_000);

it('a SECRET_KEY rotation through the CLI: the new key endorses SECRET_KEY_PREVIOUS when it first signs', async () => {
  const a = 'cli-rotation-secret-a-0123456789-0123456789-0123456789';
  const b = 'cli-rotation-secret-b-0123456789-0123456789-0123456789';
  const c = 'cli-rotation-secret-c-0123456789-0123456789-0123456789';
  const own: Record<string, string> = { DATA_DIR: join(dir, 'rotation'), LOG_LEVEL: 'silent', SECRET_KEY: a };
  let dropOwn = async () => {};
  if (engineUnderTest === 'postgres') {
    const pg = await createPostgresDatabase();
    Object.assign(own, { DATABASE_URL: pg.app, DATABASE_OWNER_URL: pg.owner });
    dropOwn = pg.drop;
  }
  try {
    const run = (...args: string[]) => rampartWith(own, ...args);
    if (engineUnderTest === 'postgres') expect((await run('migrate')).code).toBe(0);
    expect(
      (await run('tenants', 'create', '--slug', 'echo', '--name', 'echo', '--region', 'eu-de')).code,
    ).toBe(0);
    const first = await run('audit', 'checkpoint');
    expect(first.out, first.err).toMatch(/^platform: signed seq 1$/m);
    // B with A as SECRET_KEY_PREVIOUS (the procedure): its first checkpoint endorses A.
    Object.assign(own, { SECRET_KEY: b, SECRET_KEY_PREVIOUS: a });
    const bKey = await run('audit', 'public-key');
    writeFileSync(join(dir, 'b.pem'), bKey.out.slice(bKey.out.indexOf('-----BEGIN')));
    expect((await run('tenants', 'create', '--slug', 'fox', '--name', 'fox', '--region', 'eu-de')).code).toBe(
      0,
    );
    expect((await run('audit', 'checkpoint')).out).toMatch(/^platform: signed seq 2$/m);
    const verified = await run('audit', 'verify', '--platform');
    expect(verified.out).toMatch(/^platform: ok, 2 events up to seq 2, 2 signed checkpoints$/m);
    expect(verified.code).toBe(0);
    // C started without SECRET_KEY_PREVIOUS: nothing endorses B (nor A through it)...
    own.SECRET_KEY = c;
    delete own.SECRET_KEY_PREVIOUS;
    const unendorsed = await run('audit', 'verify', '--platform');
    expect(unendorsed.code).not.toBe(0);
    expect(unendorsed.out).toContain('unknown key');
    // ...unless the operator gives B's public key: B is trusted, and A through B's endorsement.
    const given = await run('audit', 'verify', '--platform', '--public-key', join(dir, 'b.pem'));
    expect(given.out).toMatch(/^platform: ok, 2 events up to seq 2, 2 signed checkpoints$/m);
    expect(given.code).toBe(0);
  } finally {
    await dropOwn();
  }
}, 60_000);
