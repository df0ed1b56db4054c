import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { type ChainedEvent, chainHash } from '../src/audit/canonical.ts';
import { type AuditCliDeps, registerAuditCommands } from '../src/audit/cli.ts';
import { recordAuditEvent } from '../src/audit/record.ts';
import type { ActionContext, Clock } from '../src/platform/context.ts';
import { asTenantId, type Database, type Engine } from '../src/platform/db/index.ts';

/** An event as someone writing the table directly would make it: no service recorded it. */
export function outsideEvent(id: string, tenantId: string, occurredAt: Date, actorId: string): ChainedEvent {
  return {
    id,
    tenantId,
    occurredAt,
    actorType: 'user',
    actorId,
    actorElevationId: null,
    action: 'tenancy.tenant.suspended',
    targetType: 'tenant',
    targetId: tenantId,
    outcome: 'success',
    ip: null,
    userAgent: null,
    requestId: null,
    details: { n: 99 },
  };
}

/**
 * As the table owner (the app role may do the same): the chain's head moved one position on, and one event
 * written there. `mac`: the MAC it carries (none by default). `brokenHash`: its stored hash is not
 * the hash of its content (the chain still links through it). `linkTo`: the predecessor hash it claims
 * (the head's by default).
 */
export async function appendForged(
  engine: Pick<Engine, 'asOwner'>,
  clock: { now(): Date; advance(ms: number): void },
  tenantId: string,
  {
    mac = null,
    brokenHash = false,
    linkTo,
  }: { mac?: Buffer | null; brokenHash?: boolean; linkTo?: Buffer | undefined } = {},
): Promise<{ seq: number; id: string; hash: string }> {
  const id = randomUUID();
  let stored: Buffer = Buffer.alloc(0);
  let seq = 0;
  await engine.asOwner(async (o) => {
    const [head] = await o.query<{ seq: string; head_hash: Uint8Array }>(
      'SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = $1',
      [tenantId],
    );
    if (!head) throw new Error('no head');
    clock.advance(1000);
    const event = outsideEvent(id, tenantId, clock.now(), 'u-1');
    const prev = linkTo ?? Buffer.from(head.head_hash);
    stored = brokenHash ? randomBytes(32) : chainHash(prev, event);
    seq = Number(head.seq) + 1;
    // The head first: an event above its chain's head is refused (migration 0084), as the app does it.
    await o.query('UPDATE audit_chain_heads SET seq = $2, head_hash = $3 WHERE chain = $1', [
      tenantId,
      seq,
      stored,
    ]);
    await o.query(
      `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id,
         outcome, details, chain_seq, prev_hash, hash, mac)
       VALUES ($1, $2::uuid, $3, 'user', 'u-1', 'tenancy.tenant.suspended', 'tenant', $2::text, 'success', '{"n":99}', $4, $5, $6, $7)`,
      [id, tenantId, event.occurredAt, seq, prev, stored, mac],
    );
  });
  return { seq, id, hash: stored.toString('hex') };
}

/** `rampart audit …` in process: what it printed, and the error it ended with (null when it succeeded). */
export function auditCli(deps: Omit<AuditCliDeps, 'out' | 'err'>) {
  return async (...args: string[]): Promise<{ out: string; failure: Error | null }> => {
    let out = '';
    const root = new Command().exitOverride().configureOutput({ writeErr: () => {} });
    registerAuditCommands(root, {
      ...deps,
      out: new Writable({
        write(chunk, _encoding, done) {
          out += String(chunk);
          done();
        },
      }),
      err: new Writable({ write: (_c, _e, done) => done() }),
    });
    const failure = await root.parseAsync(['node', 'rampart', ...args]).then(
      () => null,
      (error: Error) => error,
    );
    return { out, failure };
  };
}

/**
 * `count` events of a tenant's chain (`tenancy.tenant.suspended`, details n = 0, 1, …), one transaction
 * each, as the app writes them; `before` runs before each one (a clock step).
 */
export async function appendEvents(
  db: Database,
  clock: Clock,
  ctx: ActionContext,
  tenantId: string,
  count: number,
  before?: () => void,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    before?.();
    await db.withTenant(asTenantId(tenantId), (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId,
        action: 'tenancy.tenant.suspended',
        outcome: 'success',
        target: { type: 'tenant', id: tenantId },
        details: { n: i },
      }),
    );
  }
}

/**
 * A checkpoint of the chain's current head as the code before migration 0085 signed it: no chain
 * constants in the signed JSON, NULL in their columns (a chain signed before the upgrade).
 */
export async function signOldFormatCheckpoint(
  engine: Pick<Engine, 'asOwner'>,
  signer: {
    keyId: string;
    sign(body: { tenantId: string | null; seq: number; headHash: Uint8Array; signedAt: Date }): Buffer;
  },
  clock: Clock,
  tenantId: string,
): Promise<{ seq: number }> {
  let seq = 0;
  await engine.asOwner(async (o) => {
    const [head] = await o.query<{ seq: string; head_hash: Uint8Array }>(
      'SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = $1',
      [tenantId],
    );
    if (!head) throw new Error('no head');
    seq = Number(head.seq);
    const body = { tenantId, seq, headHash: Buffer.from(head.head_hash), signedAt: clock.now() };
    await o.query(
      `INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [tenantId, seq, body.headHash, body.signedAt, signer.keyId, signer.sign(body)],
    );
  });
  return { seq };
}
