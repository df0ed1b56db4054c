import { type Command, InvalidArgumentError } from 'commander';
import { createForgeryService } from './acknowledge.ts';
import type { AuditCliDeps } from './cli.ts';
import type { ChainReport } from './verify.ts';

/**
 * verify's lines for a chain's forged events: each with its id and hash (what an acknowledgement must
 * name), acknowledged or not, and for acknowledgement rows no node wrote.
 */
export function describeForgedEvents(label: string, r: ChainReport): string[] {
  const lines = r.forgedEvents.map((f) => {
    const what = `${label}: forged event at seq ${f.seq} (event ${f.eventId}, hash ${f.hash})`;
    const a = f.acknowledgement;
    if (a) {
      const by = a.actorId === null ? a.actorType : `${a.actorType} ${a.actorId}`;
      return `${what}: acknowledged by ${by} at ${a.acknowledgedAt.toISOString()}: ${a.reason}`;
    }
    return `${what}: NOT acknowledged (once investigated: rampart audit acknowledge-forged --chain ${r.chain} --seq ${f.seq} --event ${f.eventId} --hash ${f.hash} --reason "...")`;
  });
  for (const f of r.forgedAcknowledgements) {
    lines.push(
      `${label}: FORGED acknowledgement at seq ${f.seq} of chain ${r.chain} (ignored): ${f.message}`,
    );
  }
  return lines;
}

interface AcknowledgeOpts {
  tenant?: string;
  platform?: boolean;
  chain?: string;
  seq: number;
  event: string;
  hash: string;
  reason: string;
}

function parseSeq(value: string): number {
  if (!/^[1-9]\d{0,15}$/.test(value)) throw new InvalidArgumentError('give the position, a whole number ≥ 1');
  return Number(value);
}

/** `rampart audit acknowledge-forged`: after investigating, let the checkpoint job sign the chain again. */
export function registerAcknowledgeCommand(audit: Command, deps: AuditCliDeps): void {
  audit
    .command('acknowledge-forged')
    .description(
      'acknowledge one forged event (bad or missing MAC) named by verify, after investigating it: the chain is signed again over it (audited)',
    )
    .option('--tenant <slug>', "the tenant's chain")
    .option('--platform', 'the platform chain')
    .option('--chain <id>', 'the chain by id, as verify prints it (a tenant id, or platform)')
    .requiredOption('--seq <n>', 'the forged event position', parseSeq)
    .requiredOption('--event <id>', 'the forged event id')
    .requiredOption('--hash <hex>', 'the forged event hash, as verify prints it')
    .requiredOption('--reason <text>', 'what the investigation found (recorded and shown by verify)')
    .action(async (opts: AcknowledgeOpts) => {
      const named = [opts.tenant !== undefined, Boolean(opts.platform), opts.chain !== undefined];
      if (named.filter(Boolean).length !== 1) {
        throw new Error('name the chain once: --tenant <slug>, --platform or --chain <id>');
      }
      const view = await deps.withDatabase(async (db) => {
        let tenantId: string | null = null;
        if (opts.tenant !== undefined) tenantId = await deps.tenantId(db, opts.tenant);
        else if (opts.chain !== undefined && opts.chain !== 'platform') tenantId = opts.chain;
        return createForgeryService({ db, clock: deps.clock }).acknowledge(deps.context, {
          tenantId,
          seq: opts.seq,
          eventId: opts.event,
          eventHash: opts.hash,
          reason: opts.reason,
        });
      });
      deps.out.write(
        `chain ${view.chain}: event at seq ${view.seq} acknowledged as forged (acknowledgement ${view.id}); ` +
          'the next checkpoint signs over it: rampart audit checkpoint, then rampart audit verify\n',
      );
    });
}
