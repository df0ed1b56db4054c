/**
 * Crash safety of the audit trail: a real server process under a load of audited changes is killed
 * with SIGKILL; after a restart every change the server acknowledged has its audit event, and every
 * chain verifies. The server runs a private build of the sources under test (so it never races the
 * build of other test files).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { openPgliteEngine } from '../src/platform/db/index.ts';
import { createPostgresDatabase, engineUnderTest } from './helpers.ts';
import { bootstrapToken, runningServers, startServerProcess } from './server-process.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
mkdirSync(join(root, 'node_modules/.cache'), { recursive: true });
// Inside the repository (under node_modules, ignored by git) so the build resolves its packages.
const scratch = mkdtempSync(join(root, 'node_modules/.cache/audit-crash-'));

beforeAll(() => {
  const out = join(scratch, 'dist');
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', out],
    { cwd: root, stdio: 'pipe' },
  );
  const copy = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (!statSync(path).isDirectory()) continue;
      if (name === 'migrations' || name === 'assets')
        cpSync(path, join(out, relative(join(root, 'src'), path)), { recursive: true });
      else copy(path);
    }
  };
  copy(join(root, 'src'));
  writeFileSync(
    join(scratch, 'start.mjs'),
    "const { runCli } = await import('./dist/cli/main.js');\n" +
      "const code = await runCli(['start'], { out: process.stdout, err: process.stderr, env: process.env });\n" +
      'if (code !== 0) process.exit(code);\n',
  );
}, 180_000);

afterAll(() => {
  for (const child of runningServers) child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

function startNode(env: Record<string, string>) {
  return startServerProcess(root, [join(scratch, 'start.mjs')], env);
}

async function cli(args: string[], env: Record<string, string>) {
  let out = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      out += String(chunk);
      done();
    },
  });
  const code = await runCli(args, { out: sink, err: new Writable({ write: (_c, _e, d) => d() }), env });
  return { code, out };
}

it('after kill -9 under load, every acknowledged change has its event and every chain verifies', async () => {
  const env: Record<string, string> = {
    DATA_DIR: join(scratch, 'data'),
    SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWNyYXNoLXRlc3QtMDEyMzQ1Njc4OQ',
  };
  let drop = async () => {};
  if (engineUnderTest === 'postgres') {
    const database = await createPostgresDatabase();
    Object.assign(env, { DATABASE_URL: database.app, DATABASE_OWNER_URL: database.owner });
    drop = database.drop;
  }
  try {
    const node = startNode(env);
    const url = await node.ready;
    const headers = { authorization: `Bearer ${bootstrapToken(node)}`, 'content-type': 'application/json' };

    // Eight writers create tenants (each an audited change on the platform chain, plus the tenant's
    // first rows) until the server dies; only 201 answers count as acknowledged.
    const acknowledged: string[] = [];
    let killed = false;
    const writer = async (w: number) => {
      for (let i = 0; !killed; i++) {
        try {
          const res = await fetch(`${url}/api/v1/tenants`, {
            method: 'POST',
            headers,
            body: JSON.stringify({
              slug: `crash-${w}-${i}`,
              displayName: `Crash ${w} ${i}`,
              region: 'eu-de',
            }),
          });
          if (res.status === 201) acknowledged.push(((await res.json()) as { id: string }).id);
        } catch {
          return; // the connection died with the server
        }
        if (acknowledged.length >= 60 && !killed) {
          killed = true;
          node.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
    expect(await node.exited).toBe('SIGKILL');
    expect(acknowledged.length).toBeGreaterThanOrEqual(60);

    // Restart on the same data: it must come up (recovery), then stop cleanly.
    const again = startNode(env);
    await again.ready;
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);

    const audited = await createdEvents(env);
    for (const id of acknowledged)
      expect(audited.has(id), `tenant ${id} was acknowledged but has no event`).toBe(true);

    const verify = await cli(['audit', 'verify'], env);
    expect(verify.out).toMatch(/^platform: ok, \d+ events/m);
    expect(verify.out).not.toMatch(/BROKEN/);
    expect(verify.code).toBe(0);
  } finally {
    await drop();
  }
}, 240_000);

/** Targets of `tenancy.tenant.created` events, read as the owner. */
async function createdEvents(env: Record<string, string>): Promise<Set<string>> {
  const query = "SELECT target_id FROM audit_events WHERE action = 'tenancy.tenant.created'";
  if (env.DATABASE_OWNER_URL) {
    const client = new pg.Client({ connectionString: env.DATABASE_OWNER_URL });
    await client.connect();
    try {
      return new Set((await client.query<{ target_id: string }>(query)).rows.map((r) => r.target_id));
    } finally {
      await client.end();
    }
  }
  const engine = await openPgliteEngine({ dataDir: env.DATA_DIR as string });
  try {
    return new Set(
      (await engine.asOwner((o) => o.query<{ target_id: string }>(query))).map((r) => r.target_id),
    );
  } finally {
    await engine.close();
  }
}
