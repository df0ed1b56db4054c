/**
 * Anchoring the chain outside the database (security review, HIGH: cutting off the newest events could
 * not be detected). Whoever owns the database can delete the newest events and checkpoints and set the
 * head back; verify alone then passes. Each signed checkpoint now also goes to the SIEM sinks
 * (`audit.checkpoint`), and `rampart audit verify --expect chain:seq:hash` fails when such a point is no
 * longer on the chain; `--max-checkpoint-age` fails when events wait too long for a checkpoint.
 * Runs on PGlite and, with DATABASE_URL, PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAuditCommands } from '../src/audit/cli.ts';
import {
  type CheckpointMessage,
  checkpointSigner,
  createCheckpoint,
  createForwarder,
  createSinkService,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { verifyCheckpointSignature } from '../src/audit/signer.ts';
import { listChains } from '../src/audit/store.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { createSecretBox } from '../src/platform/crypto/keys.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';
import { approvedForTest } from './sink-helpers.ts';

let t: TestDatabase;
const clock = fakeClock(new Date('2026-03-01T00:00:00Z'));
const signer = checkpointSigner(Buffer.from('audit-anchor-test-root-key-0123456789'));
const keys = trustedKeys([signer.publicKey]);
const box = createSecretBox(Buffer.alloc(32, 7));
const ctx: ActionContext = {
  actor: { type: 'operator', id: 'op-1' },
  ip: null,
  userAgent: null,
  requestId: null,
};
const dir = mkdtempSync(join(tmpdir(), 'rampart-audit-anchor-'));
/** Chains the CLI under test knows as tenants, by slug. */
const tenants = new Map<string, string>();

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

async function write(tenantId: string, count: number) {
  for (let i = 0; i < count; i++) {
    clock.advance(1000);
    await t.db.withTenant(asTenantId(tenantId), (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId,
        action: 'tenancy.tenant.suspended',
        outcome: 'success',
        details: { n: i },
      }),
    );
  }
}

async function newChain(slug: string, count: number): Promise<string> {
  const tenantId = randomUUID();
  tenants.set(slug, tenantId);
  await write(tenantId, count);
  return tenantId;
}

/** `rampart audit verify ARGS` against this file's database and clock. */
async function verifyCli(...args: string[]): Promise<{ ok: boolean; out: string; error: string }> {
  let out = '';
  const sink = (keep: boolean) =>
    new Writable({
      write(chunk, _encoding, done) {
        if (keep) out += String(chunk);
        done();
      },
    });
  const root = new Command().exitOverride().configureOutput({ writeErr: () => {} });
  registerAuditCommands(root, {
    out: sink(true),
    err: sink(false),
    clock,
    withDatabase: (fn) => fn(t.db),
    tenantId: async (_db, slug) => tenants.get(slug) ?? '',
    async *tenants() {
      for (const [slug, id] of tenants) yield { id, label: `tenant ${slug}` };
    },
    signer: () => signer,
    retentionDays: async () => 400,
    context: ctx,
  });
  try {
    await root.parseAsync(['audit', 'verify', ...args], { from: 'user' });
    return { ok: true, out, error: '' };
  } catch (error) {
    return { ok: false, out, error: (error as Error).message };
  }
}

const hashAt = async (tenantId: string, seq: number) =>
  (
    await t.engine.asOwner((o) =>
      o.query<{ hash: string }>(
        `SELECT encode(hash, 'hex') AS hash FROM audit_events WHERE tenant_id = $1 AND chain_seq = $2`,
        [tenantId, seq],
      ),
    )
  )[0]?.hash ?? '';

/** What the SIEM was sent: the queued checkpoint messages of a chain, oldest first. */
async function queuedCheckpoints(tenantId: string): Promise<CheckpointMessage[]> {
  const rows = await t.engine.asOwner((o) =>
    o.query<{ payload: CheckpointMessage | string }>(
      `SELECT payload FROM audit_outbox WHERE tenant_id = $1 AND message = 'audit.checkpoint'
       ORDER BY (payload->>'seq')::int`,
      [tenantId],
    ),
  );
  return rows.map((r) => (typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload));
}

/** The owner's attack: cut the chain back to `seq`, with the checkpoints after it, and set the head there. */
async function truncate(tenantId: string, seq: number) {
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    await o.exec('ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only');
    // A head never moves back (migration 0084): the owner turns that trigger off too.
    await o.exec('ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_no_rewind');
    try {
      await o.query('DELETE FROM audit_events WHERE tenant_id = $1 AND chain_seq > $2', [tenantId, seq]);
      await o.query('DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq > $2', [tenantId, seq]);
      await o.query(
        `UPDATE audit_chain_heads SET seq = $2, head_hash =
           (SELECT hash FROM audit_events WHERE tenant_id = $1 AND chain_seq = $2) WHERE chain = $3`,
        [tenantId, seq, tenantId],
      );
    } finally {
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      await o.exec('ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only');
      await o.exec('ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_no_rewind');
    }
  });
}

describe('checkpoints go to the SIEM sinks', () => {
  it('each signed checkpoint is queued for every sink with it, and delivered as audit.checkpoint', async () => {
    const sinks = createSinkService({ db: t.db, clock, box });
    const webhook = await sinks.create(
      ctx,
      { kind: 'webhook', url: 'http://127.0.0.1:9/hook' },
      approvedForTest,
    );
    const syslog = await sinks.create(
      ctx,
      { kind: 'syslog', url: 'syslog+tcp://127.0.0.1:9' },
      approvedForTest,
    );
    try {
      const tenantId = await newChain('sent', 3);
      const cp = await createCheckpoint(t.db, signer, clock, tenantId);
      expect(cp).not.toBeNull();
      expect(await createCheckpoint(t.db, signer, clock, tenantId)).toBeNull(); // unchanged head: none

      // One row per sink, the same message (one id: a SIEM fed by both drops the copy).
      const queued = await queuedCheckpoints(tenantId);
      expect(queued).toHaveLength(2);
      const [message, copy] = queued as [CheckpointMessage, CheckpointMessage];
      expect(copy).toEqual(message);
      expect(message).toMatchObject({
        chain: tenantId,
        tenantId,
        seq: 3,
        head: await hashAt(tenantId, 3),
        at: cp?.signedAt.toISOString(),
        keyId: signer.keyId,
        macFromSeq: 1,
        legacyEvents: 0,
      });
      // What the SIEM holds verifies with the public key alone (the chain constants are signed too,
      // migration 0085).
      const body = {
        tenantId,
        seq: message.seq,
        headHash: Buffer.from(message.head, 'hex'),
        signedAt: new Date(message.at),
        constants: { macFromSeq: Number(message.macFromSeq), legacyEvents: Number(message.legacyEvents) },
      };
      expect(verifyCheckpointSignature(signer.publicKey, body, Buffer.from(message.signature, 'hex'))).toBe(
        true,
      );

      const posted: { headers: Record<string, string>; body: string }[] = [];
      const framed: string[] = [];
      const forwarder = createForwarder({
        db: t.db,
        clock,
        box,
        send: async (r) => {
          posted.push({ headers: r.headers, body: r.body });
          return { status: 204 };
        },
        sendSyslog: async (_target, messages) => {
          framed.push(...messages);
        },
      });
      clock.advance(1000);
      for (let i = 0; i < 5 && (await forwarder.deliverDue()).delivered > 0; i++) clock.advance(1000);

      const hook = posted
        .map((p) => ({ ...p, json: JSON.parse(p.body) }))
        .find((p) => p.json.type === 'audit.checkpoint');
      expect(hook?.json.data).toEqual(message);
      expect(hook?.headers['webhook-id']).toBe(message.id);
      // Signed like every webhook message (Standard Webhooks).
      const sentAt = new Date(Number(hook?.headers['webhook-timestamp']) * 1000);
      const signed = new Webhook(webhook.secret ?? '').sign(message.id, sentAt, hook?.body ?? '');
      expect(hook?.headers['webhook-signature']).toBe(signed);

      const line = framed.find((m) => m.includes(' checkpoint [')) ?? '';
      const msgAt = line.indexOf('] {') + 2;
      expect(line.slice(0, msgAt)).toBe(
        `<110>1 ${message.at} ${line.split(' ')[2]} rampart - checkpoint [rampart@32473 ` +
          `checkpointId="${message.id}" chain="${tenantId}" seq="3" head="${message.head}" ` +
          `keyId="${signer.keyId}"] `,
      );
      expect(JSON.parse(line.slice(msgAt))).toEqual(message);
      expect(await queuedCheckpoints(tenantId)).toEqual([]); // delivered to both, nothing left
    } finally {
      await sinks.disable(ctx, webhook.id);
      await sinks.disable(ctx, syslog.id);
    }
  });
});

describe('verify --expect: points kept outside the database', () => {
  it('catches the newest events cut off with their checkpoints and the head set back', async () => {
    const sinks = createSinkService({ db: t.db, clock, box });
    const sink = await sinks.create(
      ctx,
      { kind: 'webhook', url: 'http://127.0.0.1:9/hook' },
      approvedForTest,
    );
    try {
      const tenantId = await newChain('cut', 5);
      await createCheckpoint(t.db, signer, clock, tenantId);
      await write(tenantId, 4);
      await createCheckpoint(t.db, signer, clock, tenantId);
      const [at5, at9] = (await queuedCheckpoints(tenantId)).map((m) => `${m.chain}:${m.seq}:${m.head}`);
      expect(at9).toMatch(/:9:[0-9a-f]{64}$/);

      await truncate(tenantId, 5);
      // The hole: nothing inside the database shows the cut.
      expect(await verifyAuditChain(t.db, tenantId, { keys })).toMatchObject({ headSeq: 5, broken: null });
      expect((await verifyCli('--tenant', 'cut')).ok).toBe(true);

      const cut = await verifyCli('--tenant', 'cut', '--expect', at5 as string, '--expect', at9 as string);
      expect(cut.ok).toBe(false);
      expect(cut.out).toMatch(/^tenant cut: ok, 5 events up to seq 5/m);
      expect(cut.out).toMatch(/^tenant cut: expected .+:5:.+: seq 5 is on the chain/m);
      expect(cut.out).toMatch(
        /^tenant cut: BROKEN, truncated at seq 9: the chain ends at seq 5, but seq 9 .* was seen outside the database/m,
      );
      // The same from a file, as a SIEM export would give it.
      const file = join(dir, 'points.txt');
      writeFileSync(file, `# from the SIEM\n${at5}\n\n${at9}\n`);
      const fromFile = await verifyCli('--expect-file', file);
      expect(fromFile.ok).toBe(false);
      expect(fromFile.out).toMatch(/^tenant cut: BROKEN, truncated at seq 9/m);
    } finally {
      await sinks.disable(ctx, sink.id);
    }
  });

  it('names a point whose hash differs (rewritten), and refuses a malformed point', async () => {
    const tenantId = await newChain('other', 4);
    const other = `${tenantId}:3:${'ab'.repeat(32)}`;
    const rewritten = await verifyCli('--tenant', 'other', '--expect', other);
    expect(rewritten.ok).toBe(false);
    expect(rewritten.out).toMatch(
      /^tenant other: BROKEN, rewritten at seq 3: the event at seq 3 has another hash/m,
    );
    expect(
      (await verifyCli('--tenant', 'other', '--expect', `${tenantId}:3:${await hashAt(tenantId, 3)}`)).ok,
    ).toBe(true);
    for (const bad of [
      `${tenantId}:3`,
      `nope:3:${'ab'.repeat(32)}`,
      `${tenantId}:0:${'ab'.repeat(32)}`,
      `${tenantId}:3:xyz`,
    ]) {
      const refused = await verifyCli('--tenant', 'other', '--expect', bad);
      expect(refused.ok, bad).toBe(false);
      expect(refused.error, bad).toMatch(/expected point/);
    }
  });
});

describe('verify --max-checkpoint-age', () => {
  it('fails when events wait longer than that for a checkpoint; a quiet chain may keep an old one', async () => {
    tenants.clear();
    // Verify covers every chain with a head, those of the tests above too: sign them all, so they and the
    // platform chain (the sinks' events) are quiet.
    for (const chain of await listChains(t.db)) await createCheckpoint(t.db, signer, clock, chain);
    const quiet = await newChain('quiet', 2);
    await createCheckpoint(t.db, signer, clock, quiet);
    const busy = await newChain('busy', 2);
    await createCheckpoint(t.db, signer, clock, busy);
    await write(busy, 3); // the signer stops here
    clock.advance(3_600_000);

    const lenient = await verifyCli('--max-checkpoint-age', '7200');
    expect(lenient.ok, lenient.out).toBe(true);
    expect(lenient.out).toMatch(
      /^tenant quiet: newest signed checkpoint at seq 2, \d+ s old; every event signed$/m,
    );
    expect(lenient.out).toMatch(
      /^tenant busy: newest signed checkpoint at seq 2, \d+ s old; 3 event\(s\) after it, the oldest written \d+ s ago$/m,
    );

    const strict = await verifyCli('--max-checkpoint-age', '600');
    expect(strict.ok).toBe(false);
    expect(strict.out).toMatch(/^tenant quiet: newest signed checkpoint at seq 2/m);
    expect(strict.out).toMatch(/^tenant busy: BROKEN, stale checkpoint: newest signed checkpoint at seq 2/m);
    expect(strict.error, strict.out).toMatch(/1 check\(s\) failed/);

    // Once the signer runs again, the chain passes.
    await createCheckpoint(t.db, signer, clock, busy);
    expect((await verifyCli('--max-checkpoint-age', '600')).ok).toBe(true);
    expect((await verifyCli('--max-checkpoint-age', 'soon')).error).toMatch(/whole number of seconds/);
  });
});
