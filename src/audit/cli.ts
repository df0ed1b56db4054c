import type { KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { type ExpectedPoint, parseExpectedPoint, readExpectFile, reportAnchors } from './anchors.ts';
import { verifyBundle, writeBundle } from './bundle.ts';
import { CheckpointRefusedError, createCheckpoint } from './checkpoint.ts';
import { describeForgedEvents } from './cli-forged.ts';
import { auditMacKey } from './mac.ts';
import { pruneChain } from './prune.ts';
import { recordAuditEvent } from './record.ts';
import { type CheckpointSigner, publicKeyFromPem, trustedKeys } from './signer.ts';
import { inChain, listChains, loadTrustedKeys } from './store.ts';
import { type ChainReport, verifyAuditChain } from './verify.ts';
import { auditVolume, volumeLines } from './volume.ts';
import type { ChainBreak } from './walk.ts';

export interface ChainRef {
  /** null for the platform chain. */
  id: string | null;
  label: string;
}

export interface AuditCliDeps {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  clock: Clock;
  withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T>;
  /** The tenant's id by slug (throws a clear error when there is none). */
  tenantId(db: Database, slug: string): Promise<string>;
  /** Every tenant, for commands that cover all chains. */
  tenants(db: Database): AsyncIterable<ChainRef>;
  signer(): CheckpointSigner;
  /** Days the chain keeps its events (the tenant's retention, or the platform's setting). */
  retentionDays(db: Database, tenantId: string | null): Promise<number>;
  /** Who the CLI acts as, in the audit events it writes. */
  context: ActionContext;
}

interface VerifyOpts {
  tenant?: string;
  platform?: boolean;
  publicKey: string[];
  expect: ExpectedPoint[];
  expectFile?: string;
  maxCheckpointAge?: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function collectPoint(value: string, previous: ExpectedPoint[]): ExpectedPoint[] {
  try {
    return [...previous, parseExpectedPoint(value)];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function parseSeconds(value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new InvalidArgumentError('give a whole number of seconds');
  return Number(value);
}

function describeBreak(label: string, b: ChainBreak): string {
  const where = b.seq === null ? '' : ` at seq ${b.seq}`;
  const id = b.eventId ? ` (event ${b.eventId})` : '';
  return `${label}: BROKEN, ${b.kind}${where}${id}: ${b.message}`;
}

/** `rampart audit verify|checkpoint|prune|public-key|volume|export|verify-file`. */
export function registerAuditCommands(root: Command, deps: AuditCliDeps): void {
  const print = (line: string) => deps.out.write(`${line}\n`);
  const audit = root.command('audit').description('the audit trail: verify, checkpoint, export');

  /**
   * The chains a command covers: one tenant's, the platform's, or every chain that has a head (whether
   * or not its tenant still exists) together with every tenant (whose chain may have no head yet).
   */
  async function chains(db: Database, slug: string | undefined, platform: boolean): Promise<ChainRef[]> {
    if (slug) return [{ id: await deps.tenantId(db, slug), label: `tenant ${slug}` }];
    const all: ChainRef[] = [{ id: null, label: 'platform' }];
    if (platform) return all;
    const tenants = new Map<string, ChainRef>();
    for await (const t of deps.tenants(db)) if (t.id !== null) tenants.set(t.id, t);
    for (const id of await listChains(db)) {
      if (id === null) continue;
      all.push(tenants.get(id) ?? { id, label: `chain ${id} (no tenant)` });
      tenants.delete(id);
    }
    all.push(...tenants.values());
    return all;
  }

  const keysFrom = (files: string[], own?: KeyObject) =>
    trustedKeys([...(own ? [own] : []), ...files.map((f) => publicKeyFromPem(readFileSync(f, 'utf8')))]);
  /** The server's key, the older keys it endorsed at a rotation (migrations 0060, 0089), and any given as PEM. */
  const serverKeys = (db: Database, files: string[]) =>
    loadTrustedKeys(
      db,
      deps.signer(),
      files.map((f) => publicKeyFromPem(readFileSync(f, 'utf8'))),
    );

  audit
    .command('verify')
    .description('walk each hash chain and its signed checkpoints; name the first broken event')
    .option('--tenant <slug>', 'only this tenant (default: the platform and every tenant)')
    .option('--platform', 'only the platform chain')
    .option(
      '--public-key <file>',
      'also trust this Ed25519 public key (PEM), e.g. one from before a key change',
      collect,
      [],
    )
    .option(
      '--expect <chain:seq:hash>',
      "a point the chain must contain, as kept outside the database (a SIEM's audit.checkpoint)",
      collectPoint,
      [],
    )
    .option('--expect-file <file>', 'points to expect, one <chain>:<seq>:<hash> a line')
    .option(
      '--max-checkpoint-age <seconds>',
      'fail when events older than this are not covered by a checkpoint this old',
      parseSeconds,
    )
    .action(async (opts: VerifyOpts) => {
      const points = [...opts.expect, ...(opts.expectFile ? readExpectFile(opts.expectFile) : [])];
      const broken = await deps.withDatabase(async (db) => {
        const keys = await serverKeys(db, opts.publicKey);
        let failures = 0;
        const verified = await chains(db, opts.tenant, Boolean(opts.platform));
        for (const chain of verified) {
          const report = await withProgress(deps.err, chain.label, (onProgress) =>
            verifyAuditChain(db, chain.id, { keys, macKey: auditMacKey(), onProgress }),
          );
          print(summarise(chain.label, report));
          if (report.broken) failures += 1;
          // Rows nobody trusted signed: someone with database access wrote them. The chain was walked
          // without them; they are named (by chain and seq) and fail the run, as tampering does.
          for (const f of report.forged) print(describeForged(chain.label, report.chain, f));
          if (report.forged.length > 0) failures += 1;
          // Forged events, acknowledged or not, each time: an acknowledged one is known, not forgotten.
          // Only the unacknowledged ones fail the run (the first is the chain's break); acknowledgement
          // rows no node wrote fail it too.
          for (const line of describeForgedEvents(chain.label, report)) print(line);
          if (report.forgedAcknowledgements.length > 0) failures += 1;
        }
        // After the chains verified: are they behind what was seen outside the database?
        const anchorOptions = {
          points,
          keys,
          now: deps.clock.now(),
          allChains: !opts.tenant && !opts.platform,
        };
        return (
          failures +
          (await reportAnchors(
            db,
            verified,
            opts.maxCheckpointAge === undefined
              ? anchorOptions
              : { ...anchorOptions, maxCheckpointAgeSeconds: opts.maxCheckpointAge },
            print,
          ))
        );
      });
      if (broken > 0) throw new Error(`${broken} check(s) failed verification`);
    });

  audit
    .command('checkpoint')
    .description('sign the current head of each chain (the server also does this periodically)')
    .option('--tenant <slug>', 'only this tenant')
    .option(
      '--adopt-constants',
      "once after upgrading to migration 0085: sign the head rows' mac_from_seq and legacy_events of chains " +
        'that existed at migration 0059 (trusted as they are now)',
    )
    .action(async (opts: { tenant?: string; adoptConstants?: boolean }) => {
      const signer = deps.signer();
      const refused = await deps.withDatabase(async (db) => {
        let refusals = 0;
        for (const chain of await chains(db, opts.tenant, false)) {
          try {
            const cp = await createCheckpoint(db, signer, deps.clock, chain.id, opts.adoptConstants === true);
            print(cp ? `${chain.label}: signed seq ${cp.seq}` : `${chain.label}: nothing new to sign`);
          } catch (error) {
            if (!(error instanceof CheckpointRefusedError)) throw error;
            print(`${chain.label}: NOT signed: ${error.message}`);
            refusals += 1;
          }
        }
        return refusals;
      });
      if (refused > 0)
        throw new Error(`${refused} chain(s) not signed (see above; run rampart audit verify)`);
    });

  audit
    .command('prune')
    .description("delete events older than each chain's retention, up to a signed checkpoint (audited)")
    .option('--tenant <slug>', 'only this tenant (default: the platform and every tenant)')
    .option('--dry-run', 'only say what would be pruned')
    .option('--public-key <file>', 'also trust this Ed25519 public key (PEM)', collect, [])
    .action(async (opts: { tenant?: string; dryRun?: boolean; publicKey: string[] }) => {
      const failed = await deps.withDatabase(async (db) => {
        const keys = await serverKeys(db, opts.publicKey);
        let failures = 0;
        for (const chain of await chains(db, opts.tenant, false)) {
          const days = await deps.retentionDays(db, chain.id);
          const cutoff = new Date(deps.clock.now().getTime() - days * 86_400_000);
          try {
            const r = await withProgress(deps.err, chain.label, (onProgress) =>
              pruneChain(db, deps.clock, deps.context, {
                tenantId: chain.id,
                cutoff,
                keys,
                dryRun: Boolean(opts.dryRun),
                onProgress,
              }),
            );
            const verb = opts.dryRun ? 'would prune' : 'pruned';
            print(
              r.events === 0
                ? `${chain.label}: nothing to prune (retention ${days} days, verified from seq ${r.fromSeq})`
                : `${chain.label}: ${verb} ${r.events} events, seq ${r.fromSeq + 1}-${r.throughSeq} (older than ${r.cutoff.toISOString()}, retention ${days} days)`,
            );
          } catch (error) {
            print(`${chain.label}: NOT pruned: ${(error as Error).message}`);
            failures += 1;
          }
        }
        return failures;
      });
      if (failed > 0) throw new Error(`${failed} chain(s) could not be pruned`);
    });

  audit
    .command('public-key')
    .description('print the public key that verifies checkpoints (keep a copy outside this server)')
    .action(() => {
      const signer = deps.signer();
      print(`key id ${signer.keyId}`);
      deps.out.write(String(signer.publicKey.export({ format: 'pem', type: 'spki' })));
    });

  audit
    .command('volume')
    .description('events per day (or hour) of one chain, by outcome, as bars')
    .option('--tenant <slug>', 'the tenant (default: the platform chain)')
    .option('--hourly', 'one bar per hour (default: per day)')
    .option('--from <time>', 'start (RFC 3339; default: 30 days, or 48 hours, before --to)')
    .option('--to <time>', 'end (RFC 3339; default: now)')
    .action(async (opts: { tenant?: string; hourly?: boolean; from?: string; to?: string }) => {
      const { label, volume } = await deps.withDatabase(async (db) => {
        const [chain] = await chains(db, opts.tenant, true);
        const input = {
          bucket: opts.hourly ? ('hour' as const) : ('day' as const),
          from: opts.from,
          to: opts.to,
        };
        return {
          label: chain?.label ?? 'platform',
          volume: await auditVolume(db, chain?.id ?? null, input, deps.clock.now()),
        };
      });
      const total = volume.points.reduce((sum, p) => sum + p.total, 0);
      print(`${label}: ${total} events by ${volume.bucket}, ${volume.from} to ${volume.to}`);
      for (const line of volumeLines(volume)) print(line);
    });

  audit
    .command('export')
    .description('write one chain as a verifiable JSON Lines bundle (see docs/audit.md)')
    .option('--tenant <slug>', 'the tenant (default: the platform chain)')
    .requiredOption('--out <file>', 'where to write the bundle')
    .option('--public-key <file>', 'also trust this Ed25519 public key (PEM)', collect, [])
    .action(async (opts: { tenant?: string; out: string; publicKey: string[] }) => {
      const count = await deps.withDatabase(async (db) => {
        const keys = await serverKeys(db, opts.publicKey);
        const [chain] = await chains(db, opts.tenant, true);

        // `mode` applies only to a file being created: an existing, readable one is narrowed explicitly,
        // before a line of the trail is written to it.
        const handle = await open(opts.out, 'w', 0o600);
        await handle.chmod(0o600);
        const file = handle.createWriteStream();
        let written: number;
        try {
          written = await writeBundle(db, chain?.id ?? null, keys, async (line) => {
            if (!file.write(`${line}\n`)) await once(file, 'drain');
          });
        } finally {
          file.end();
          await once(file, 'finish');
        }
        // The bundle holds the chain's trail (emails, addresses, actions): reading it from the shell leaves
        // a trace in that chain, as the API's export does. After the bundle, which ends at the head read
        // when it began (this event would be an unsigned tail in it).
        await inChain(db, chain?.id ?? null, (tx) =>
          recordAuditEvent(tx, deps.clock, deps.context, {
            tenantId: chain?.id ?? null,
            action: 'audit.trail.exported',
            outcome: 'success',
            details: { format: 'bundle', events: written },
          }),
        );
        return written;
      });
      print(`wrote ${count} events to ${opts.out}`);
    });

  audit
    .command('verify-file <bundle>')
    .description('verify an exported bundle offline, with no database: only the bundle and the public key')
    .requiredOption('--public-key <file>', 'trusted Ed25519 public key (PEM)', collect, [])
    .option(
      '--allow-unsigned-tail',
      'accept events after the last signed checkpoint (they are counted; no signature covers them)',
    )
    .action(async (bundle: string, opts: { publicKey: string[]; allowUnsignedTail?: boolean }) => {
      const result = await verifyBundle(bundle, keysFrom(opts.publicKey), {
        allowUnsignedTail: Boolean(opts.allowUnsignedTail),
      });
      if (result.broken) {
        print(describeBreak(result.chain, result.broken));
        throw new Error(
          result.broken.kind === 'unsigned'
            ? 'the bundle has events no signed checkpoint covers (--allow-unsigned-tail accepts them)'
            : 'the bundle failed verification',
        );
      }
      const signed = result.lastSigned
        ? `signed through seq ${result.lastSigned.seq} at ${result.lastSigned.at.toISOString()}`
        : 'no signed checkpoint over its events';
      const after = result.lastSigned ? ' after it' : '';
      const tail = result.unsigned > 0 ? `, ${result.unsigned} events${after} unsigned` : '';
      print(
        `${result.chain}: ok, ${result.events} events, ${result.checkpoints} signed checkpoints, ${signed}${tail}`,
      );
    });
}

function describeForged(label: string, chain: string, f: ChainBreak): string {
  return `${label}: FORGED checkpoint at seq ${f.seq} of chain ${chain} (ignored): ${f.message}`;
}

function summarise(label: string, r: ChainReport): string {
  if (r.broken) return describeBreak(label, r.broken);
  const legacy = r.legacyEvents > 0 ? `, ${r.legacyEvents} events from before chaining not covered` : '';
  const known = r.forgedEvents.filter((f) => f.acknowledgement).length;
  const acknowledged = known > 0 ? `, ${known} acknowledged forged event(s)` : '';
  return `${label}: ok, ${r.events} events up to seq ${r.headSeq}, ${r.checkpoints} signed checkpoints${legacy}${acknowledged}`;
}

/** A progress bar on stderr per chain (silent when stderr is not a terminal, except a line a second). */
async function withProgress<T>(
  stream: NodeJS.WritableStream,
  label: string,
  fn: (onProgress: (done: number, total: number) => void) => Promise<T>,
): Promise<T> {
  const bar = new cliProgress.SingleBar(
    { stream, format: `${label} [{bar}] {value}/{total} events`, noTTYOutput: true, notTTYSchedule: 1000 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  try {
    return await fn((done, total) => {
      if (!started) {
        bar.start(Math.max(total, 1), done);
        started = true;
      } else {
        // verify follows a chain that grows while it runs: the total grows with it.
        if (total > bar.getTotal()) bar.setTotal(total);
        bar.update(done);
      }
    });
  } finally {
    if (started) bar.stop();
  }
}
