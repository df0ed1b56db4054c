/**
 * The `rampart` command, run in-process with captured output, against an embedded database in a
 * temporary DATA_DIR (or this file's own PostgreSQL database when DATABASE_URL is set).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allMigrations } from '../src/migrations.ts';
import { runRampart } from './cli-helpers.ts';
import { createPostgresDatabase, engineUnderTest } from './helpers.ts';

let env: Record<string, string>;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  if (engineUnderTest === 'postgres') {
    const pg = await createPostgresDatabase();
    env = {
      DATABASE_URL: pg.app,
      DATABASE_OWNER_URL: pg.owner,
      SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLWNsaS10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm',
    };
    cleanup = pg.drop;
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-cli-'));
    env = { DATA_DIR: join(dir, 'data') };
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
  env.LOG_LEVEL = 'silent';
});
afterAll(async () => {
  await cleanup?.();
});

/** Runs one command line; returns its exit code and what it wrote. */
const rampart = (line: string[], extraEnv: Record<string, string> = {}) =>
  runRampart({ ...env, ...extraEnv }, line);

describe('--help', () => {
  it.each([
    [[], /Usage: rampart/],
    [['start'], /start the server/],
    [['migrate'], /apply pending migrations/],
    [['tenants'], /create.*\n.*list/s],
    [['tenants', 'create'], /--slug <slug>.*--name <name>.*--region <label>/s],
    [['tenants', 'list'], /list tenants/],
    [['tenants', 'suspend'], /--reason <text>/],
    [['tenants', 'resume'], /resume a suspended tenant/],
    [['operators', 'create'], /--email <email>/],
    [['operators', 'disable'], /--reason <text>/],
    [['operators', 'enable'], /enable a disabled operator/],
    [['operators', 'revoke-tokens'], /revoke every live credential/],
    [['operators', 'unlock'], /lockout/],
    [['operators', 'list'], /last use/],
    [['operators', 'token'], /--label <text>/],
    [['operators', 'token'], /--scope <permission>/],
    [['operators', 'tokens'], /live credentials with their scopes/],
    [['config', 'check'], /validate the configuration/],
    [['users', 'import'], /--tenant <slug>/],
    [['users', 'wrap-legacy-hashes'], /salted SHA-256.*--tenant <slug>/s],
  ])('rampart %s --help', async (command, expected) => {
    const { code, out } = await rampart([...command, '--help']);
    expect(code).toBe(0);
    expect(out).toMatch(expected);
  });

  it('exits non-zero on an unknown command, saying so', async () => {
    const { code, err } = await rampart(['frobnicate']);
    expect(code).not.toBe(0);
    // `start` is the default command, so a stray word reaches it as an extra argument.
    expect(err).toMatch(/unknown command 'frobnicate'|too many arguments/);
  });
});

describe('config check', () => {
  it('prints the configuration with secrets masked', async () => {
    const secret = 'Zq3xV8pL2mN7rT4wY9bC1dF6gH0jK5sA3eU8iO2uQ7v';
    const previous = 'Pw8nK2vL5xR9tB3mQ7yH1cJ6dF0gS4aZ8eT2uI5oP9w';
    const { code, out } = await rampart(['config', 'check'], {
      SECRET_KEY: secret,
      SECRET_KEY_PREVIOUS: previous,
      PORT: '4321',
    });
    expect(code).toBe(0);
    expect(out).toContain('PORT=4321');
    expect(out).toContain('SECRET_KEY=(set)');
    expect(out).toContain('SECRET_KEY_PREVIOUS=(set)');
    expect(out).not.toContain(previous);
    expect(out).toContain('configuration is valid');
    expect(out).not.toContain(secret);
    for (const url of [env.DATABASE_URL, env.DATABASE_OWNER_URL]) if (url) expect(out).not.toContain(url);
  });

  // Review: REDIS_URL (and feed URLs with keys) were printed whole, password included.
  it('masks the credentials and query values of URL settings', async () => {
    const { code, out } = await rampart(['config', 'check'], {
      REDIS_URL: 'redis://:redis-pass-42@127.0.0.1:6390/0',
      BREACHED_RANGE_URL: 'https://user:range-pass-7@api.pwnedpasswords.test/range/',
      IP_BLOCKLISTS: 'https://feeds.example.test/list.txt?key=feed-key-99',
    });
    expect(code).toBe(0);
    for (const secret of ['redis-pass-42', 'range-pass-7', 'feed-key-99', 'user:']) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain('REDIS_URL="redis://:(masked)@127.0.0.1:6390/0"');
    expect(out).toContain('feeds.example.test/list.txt?key=%28masked%29');
  });

  it('exits 2 on invalid configuration, naming the variable', async () => {
    const { code, err } = await rampart(['config', 'check'], { PORT: 'eighty' });
    expect(code).toBe(2);
    expect(err).toMatch(/PORT/);
  });

  it('exits 2 from any command that needs configuration', async () => {
    const { code, err } = await rampart(['tenants', 'list'], {
      RAMPART_PROFILE: 'production',
      SECRET_KEY: '',
    });
    expect(code).toBe(2);
    expect(err).toMatch(/SECRET_KEY/);
  });
});

describe('migrate, tenants, operators', () => {
  it('migrate applies every migration once, then reports them in place', async () => {
    const first = await rampart(['migrate']);
    expect(first.code, first.err).toBe(0);
    expect(first.out).toContain(`${allMigrations.length} applied, 0 already in place`);
    const again = await rampart(['migrate']);
    expect(again.out).toContain(`0 applied, ${allMigrations.length} already in place`);
  }, 120_000); // two full migrations of an on-disk PGlite: 15-35 s on a loaded 2-core machine

  it('tenants create | list | suspend | resume', async () => {
    const created = await rampart([
      'tenants',
      'create',
      '--slug',
      'cli-bank',
      '--name',
      'CLI Bank',
      '--region',
      'eu-de',
    ]);
    expect(created.code, created.err).toBe(0);
    expect(created.out).toMatch(/created cli-bank \([0-9a-f-]{36}\) in eu-de/);

    expect((await rampart(['tenants', 'list'])).out).toMatch(/^cli-bank\tactive\teu-de\tCLI Bank$/m);

    const suspended = await rampart(['tenants', 'suspend', 'cli-bank', '--reason', 'contract ended']);
    expect(suspended.code, suspended.err).toBe(0);
    expect((await rampart(['tenants', 'list'])).out).toMatch(/^cli-bank\tsuspended\t/m);

    const twice = await rampart(['tenants', 'suspend', 'cli-bank', '--reason', 'again']);
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/already suspended/);

    expect((await rampart(['tenants', 'resume', 'cli-bank'])).code).toBe(0);
    expect((await rampart(['tenants', 'list'])).out).toMatch(/^cli-bank\tactive\t/m);
  });

  it('tenants: refuses bad input with a message, not a database error', async () => {
    const badSlug = await rampart([
      'tenants',
      'create',
      '--slug',
      'Bad Slug',
      '--name',
      'X',
      '--region',
      'eu-de',
    ]);
    expect(badSlug.code).toBe(1);
    expect(badSlug.err).toMatch(/--slug/);
    expect(badSlug.err).not.toMatch(/violates|constraint/);
    const badRegion = await rampart([
      'tenants',
      'create',
      '--slug',
      'ok-slug',
      '--name',
      'X',
      '--region',
      'Europe',
    ]);
    expect(badRegion.code).toBe(1);
    expect(badRegion.err).toMatch(/--region/);
    expect(badRegion.err).not.toMatch(/violates|constraint/);
    const unknown = await rampart(['tenants', 'resume', 'no-such-co']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/no-such-co/);
    const missing = await rampart(['tenants', 'create', '--slug', 'x-co']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/--name/);
    expect((await rampart(['tenants', 'list'])).out).not.toMatch(/ok-slug|x-co/);
  });

  it('operators create prints a one-time token once', async () => {
    const res = await rampart(['operators', 'create', '--email', 'Ops@Example.com', '--name', 'Ops']);
    expect(res.code, res.err).toBe(0);
    const tokens = res.out.split('\n').filter((line) => /^rmp_op_/.test(line));
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatch(/^rmp_op_[A-Za-z0-9_-]{43}$/);
    expect(res.out).toContain('created operator ops@example.com');

    const again = await rampart(['operators', 'create', '--email', 'ops@example.com']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/exists already/);
    expect(again.out).not.toMatch(/rmp_op_/);
  });

  it('operators create refuses an invalid email', async () => {
    const res = await rampart(['operators', 'create', '--email', 'not-an-email']);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(/not-an-email/);
  });

  it('operators disable | enable | revoke-tokens | unlock, audited as the CLI; never the last active operator', async () => {
    const second = await rampart(['operators', 'create', '--email', 'second@example.com']);
    expect(second.code, second.err).toBe(0);

    const disabled = await rampart(['operators', 'disable', 'Second@Example.com', '--reason', 'left']);
    expect(disabled.code, disabled.err).toBe(0);
    expect(disabled.out).toMatch(/disabled operator second@example.com; 2 credential\(s\) revoked/);
    const twice = await rampart(['operators', 'disable', 'second@example.com']);
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/disabled already/);
    // ops@example.com (created above) is now the only active operator.
    const last = await rampart(['operators', 'disable', 'ops@example.com']);
    expect(last.code).toBe(1);
    expect(last.err).toMatch(/last active operator/);

    const enabled = await rampart(['operators', 'enable', 'second@example.com']);
    expect(enabled.code, enabled.err).toBe(0);
    expect(enabled.out).toContain('enabled operator second@example.com');
    const revoked = await rampart(['operators', 'revoke-tokens', 'ops@example.com']);
    expect(revoked.code, revoked.err).toBe(0);
    expect(revoked.out).toMatch(/revoked 2 credential\(s\) of operator ops@example.com/);
    const unlocked = await rampart(['operators', 'unlock', 'second@example.com']);
    expect(unlocked.code, unlocked.err).toBe(0);

    const unknown = await rampart(['operators', 'unlock', 'nobody@example.com']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/nobody@example.com/);
    const badReason = await rampart(['operators', 'disable', 'second@example.com', '--reason', '']);
    expect(badReason.code).toBe(1);
    expect(badReason.err).toMatch(/--reason/);

    const bundle = join(mkdtempSync(join(tmpdir(), 'rampart-cli-audit-')), 'platform.jsonl');
    const exported = await rampart(['audit', 'export', '--out', bundle]);
    expect(exported.code, exported.err).toBe(0);
    const events = readFileSync(bundle, 'utf8')
      .split('\n')
      .filter((line) => line.includes('identity.operator.'))
      .map((line) => JSON.parse(line) as { action?: string; actor?: { type: string; id: string } });
    for (const action of ['disabled', 'enabled', 'tokens_revoked', 'unlocked']) {
      const event = events.find((e) => e.action === `identity.operator.${action}`);
      expect(event?.actor, action).toMatchObject({ type: 'system', id: expect.stringMatching(/^cli:/) });
    }
  });

  it('operators token issues a further API token once, audited; operators list shows it without secrets', async () => {
    const issued = await rampart(['operators', 'token', 'Second@Example.com', '--label', 'deploy bot']);
    expect(issued.code, issued.err).toBe(0);
    const token = /^(rmp_op_\S+)$/m.exec(issued.out)?.[1];
    expect(issued.out).toMatch(/issued API token "deploy bot" to operator second@example.com/);
    expect(token).toBeDefined();

    const listed = await rampart(['operators', 'list']);
    expect(listed.code, listed.err).toBe(0);
    const line = listed.out.split('\n').find((l) => l.startsWith('second@example.com\t'));
    // active, no TOTP enrolled yet, not locked, one live credential (the new token), never used.
    expect(line).toBe('second@example.com\tactive\tno\tno\t1\tnever');
    expect(listed.out).not.toContain(token ?? 'missing');

    for (const [args, message] of [
      [['operators', 'token', 'nobody@example.com'], /nobody@example.com/],
      [['operators', 'token', 'second@example.com', '--label', ''], /--label/],
      [['operators', 'token', 'second@example.com', '--label', 'x'.repeat(101)], /--label/],
    ] as const) {
      const refused = await rampart([...args]);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.err).toMatch(message);
    }
    expect((await rampart(['operators', 'disable', 'second@example.com'])).code).toBe(0);
    const disabled = await rampart(['operators', 'token', 'second@example.com']);
    expect(disabled.code).toBe(1);
    expect(disabled.err).toMatch(/disabled; enable them first/);

    const bundle = join(mkdtempSync(join(tmpdir(), 'rampart-cli-audit-')), 'platform.jsonl');
    expect((await rampart(['audit', 'export', '--out', bundle])).code).toBe(0);
    const text = readFileSync(bundle, 'utf8');
    const events = text
      .split('\n')
      .filter((l) => l.includes('identity.operator.token_issued'))
      .map((l) => JSON.parse(l) as { details?: Record<string, unknown> });
    expect(events).toHaveLength(1);
    expect(events[0]?.details).toMatchObject({ label: 'deploy bot', issuedId: expect.any(String) });
    expect(text).not.toContain(token ?? 'missing');
  });

  // Least-privilege tokens (security review, 2026-11-27): the decision API's caller and a WAF shipper
  // each needed a full operator token.
  it('operators token --scope issues a token limited to platform permissions; unknown ones are refused', async () => {
    const issued = await rampart([
      ...['operators', 'token', 'ops@example.com', '--label', 'edge'],
      ...['--scope', 'waf-events:write', '--scope', 'decisions:check'],
    ]);
    expect(issued.code, issued.err).toBe(0);
    expect(issued.out).toMatch(
      /"edge" to operator ops@example.com \(limited to decisions:check, waf-events:write;/,
    );
    for (const [scope, message] of [
      ['nope:never', /Unknown permission\(s\) "nope:never"/],
      ['users:read', /"users:read" is a tenant permission/],
    ] as const) {
      const refused = await rampart(['operators', 'token', 'ops@example.com', '--scope', scope]);
      expect(refused.code, scope).toBe(1);
      expect(refused.err).toMatch(message);
    }
    const bundle = join(mkdtempSync(join(tmpdir(), 'rampart-cli-audit-')), 'platform.jsonl');
    expect((await rampart(['audit', 'export', '--out', bundle])).code).toBe(0);
    const details = readFileSync(bundle, 'utf8')
      .split('\n')
      .filter((l) => l.includes('identity.operator.token_issued'))
      .map((l) => (JSON.parse(l) as { details?: Record<string, unknown> }).details);
    expect(details).toContainEqual(
      expect.objectContaining({ label: 'edge', scopes: 'decisions:check waf-events:write' }),
    );
    expect(details).toHaveLength(2);

    expect((await rampart(['operators', 'token', 'ops@example.com', '--label', 'full'])).code).toBe(0);
    const listed = await rampart(['operators', 'tokens', 'ops@example.com']);
    expect(listed.code, listed.err).toBe(0);
    const rows = listed.out.split('\n').map((l) => l.split('\t'));
    expect(rows.find((r) => r[2] === 'edge')?.slice(1, 3)).toEqual(['api', 'edge']);
    expect(rows.find((r) => r[2] === 'edge')?.[5]).toBe('decisions:check,waf-events:write');
    expect(rows.find((r) => r[2] === 'full')?.[5]).toBe('all');
    expect(listed.out).not.toMatch(/rmp_op_/);
  });
});

describe('operators disable ends elevations', () => {
  // Review: the CLI's disable left the operator's live elevation in place, so an enable within its window
  // gave it back (the API's disable ends them). Rows are written as the database owner, as an approval
  // would leave them: what is checked is what the CLI does to them. The second stands for one the
  // disable's run after its commit failed to end: the enable ends it before the operator is back.
  it.runIf(engineUnderTest === 'postgres')(
    'a CLI disable revokes the operator’s live elevation; the enable gives none back, nor one left over',
    async () => {
      expect(
        (await rampart(['tenants', 'create', '--slug', 'elev-co', '--name', 'E', '--region', 'eu-de'])).code,
      ).toBe(0);
      expect((await rampart(['operators', 'create', '--email', 'elevated@example.com'])).code).toBe(0);
      const owner = new pg.Client({ connectionString: env.DATABASE_OWNER_URL });
      await owner.connect();
      const liveElevation = async () => {
        const { rows } = await owner.query<{ id: string }>(
          `INSERT INTO access_elevations (tenant_id, operator_id, role_key, reason, duration_minutes,
             approvals_needed, approver, permissions, decide_by, status, requested_at, starts_at, expires_at)
           SELECT t.id, o.id, 'tenant-admin', 'incident 42', 60, 1, 'operator', ARRAY['users:read'],
             now() + interval '1 hour', 'active', now(), now(), now() + interval '1 hour'
           FROM tenants t, operators o WHERE t.slug = 'elev-co' AND o.email = 'elevated@example.com'
           RETURNING id`,
        );
        expect(rows[0]?.id).toBeDefined();
        return rows[0]?.id;
      };
      try {
        const id = await liveElevation();
        const disabled = await rampart(['operators', 'disable', 'elevated@example.com', '--reason', 'left']);
        expect(disabled.code, disabled.err).toBe(0);
        const leftOver = await liveElevation();
        expect((await rampart(['operators', 'enable', 'elevated@example.com'])).code).toBe(0);
        const { rows: after } = await owner.query<{ id: string; status: string; ended_by_id: string | null }>(
          'SELECT id, status, ended_by_id FROM access_elevations WHERE id = ANY($1) ORDER BY id',
          [[id, leftOver]],
        );
        expect(after).toHaveLength(2);
        for (const row of after) {
          expect(row.status).toBe('revoked');
          expect(row.ended_by_id).toMatch(/^cli:/);
        }
      } finally {
        await owner.end();
      }
    },
  );
});

describe('keys rewrap', () => {
  it('reports what it sealed anew, per kind of sealed value', async () => {
    const { code, out } = await rampart(['keys', 'rewrap']);
    expect(code).toBe(0);
    expect(out).toMatch(
      /^user TOTP seeds \(\d+ tenants\): \d+ resealed, \d+ already under the current key, 0 opening/m,
    );
    expect(out).toMatch(/^SIEM sink secrets: 0 resealed/m);
  });
});

describe('users import | wrap-legacy-hashes', () => {
  it('import says how many fast hashes remain; wrap-legacy-hashes wraps them, per tenant or all', async () => {
    for (const slug of ['cli-wrap-a', 'cli-wrap-b']) {
      const made = await rampart(['tenants', 'create', '--slug', slug, '--name', slug, '--region', 'eu-de']);
      expect(made.code, made.err).toBe(0);
    }
    const file = join(mkdtempSync(join(tmpdir(), 'rampart-cli-import-')), 'users.jsonl');
    const digest = createHash('sha256').update('0a0bcli-pw').digest('hex');
    writeFileSync(
      file,
      ['one', 'two']
        .map((n) => JSON.stringify({ email: `${n}@cli.test`, passwordHash: `sha256$0a0b$${digest}` }))
        .join('\n'),
    );
    for (const slug of ['cli-wrap-a', 'cli-wrap-b']) {
      const imported = await rampart(['users', 'import', file, '--tenant', slug]);
      expect(imported.code, imported.err).toBe(0);
      expect(imported.out).toContain('2 imported, 0 rejected');
      expect(imported.out).toContain(`2 password hashes in a fast legacy format`);
      expect(imported.out).toContain(`rampart users wrap-legacy-hashes --tenant ${slug}`);
    }
    const one = await rampart(['users', 'wrap-legacy-hashes', '--tenant', 'cli-wrap-a']);
    expect(one.code, one.err).toBe(0);
    expect(one.out).toBe('cli-wrap-a: 2 wrapped, 0 changed meanwhile (left as they are), 0 remaining\n');
    const all = await rampart(['users', 'wrap-legacy-hashes']);
    expect(all.code, all.err).toBe(0);
    expect(all.out).toContain('cli-wrap-a: no fast password hashes\n');
    expect(all.out).toContain('cli-wrap-b: 2 wrapped, 0 changed meanwhile (left as they are), 0 remaining\n');
    const unknown = await rampart(['users', 'wrap-legacy-hashes', '--tenant', 'no-such-tenant']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/^error: /);
  });
});
