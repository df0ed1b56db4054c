/** `rampart breached import PATH... --out FILE --min-count N`: build the offline filter from Pwned Passwords dumps. */
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';
import { type ImportProgress, type ImportSummary, importBreached } from './import.ts';

export interface BreachedCliIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

const parseMinCount = (value: string): number => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a whole number >= 0');
  return Number(value);
};

export function registerBreachedCommands(root: Command, io: BreachedCliIo): Command {
  const breached = root.command('breached').description('offline compromised-password screening');
  breached
    .command('import')
    .description(
      'build a filter from Pwned Passwords SHA-1 dumps: range files (e.g. 21BD1.txt, lines SUFFIX:COUNT), ' +
        'directories of them, or one combined HASH:COUNT file',
    )
    .argument('<paths...>', 'files or directories')
    .requiredOption('--out <file>', 'filter file to write (replaced atomically)')
    .option('--min-count <n>', 'leave out hashes seen fewer times than this', parseMinCount, 1)
    .action(async (paths: string[], opts: { out: string; minCount: number }) => {
      const progress = progressReporter(io.err);
      let summary: ImportSummary;
      try {
        summary = await importBreached(paths, opts.out, {
          minCount: opts.minCount,
          onProgress: progress.update,
        });
      } finally {
        progress.stop();
      }
      for (const line of summaryLines(opts.out, summary)) io.out.write(`${line}\n`);
    });
  return breached;
}

export function summaryLines(out: string, s: ImportSummary): string[] {
  const mib = (s.bytes / 2 ** 20).toFixed(1);
  return [
    `wrote ${out} (${mib} MiB, ${s.shardCount} shards)`,
    `entries: ${s.entries} from ${s.files} files (${s.duplicates} duplicates merged)`,
    `skipped below threshold: ${s.skippedBelowThreshold}`,
    `bits/entry: ${s.bitsPerEntry.toFixed(2)}`,
    `time: ${(s.durationMs / 1000).toFixed(1)} s`,
  ];
}

/** One bar per phase. cli-progress stays silent when the stream is not a terminal (CI, redirected output). */
function progressReporter(stream: NodeJS.WritableStream) {
  let bar: cliProgress.SingleBar | null = null;
  let phase: ImportProgress['phase'] | null = null;
  const start = (name: string, total: number) => {
    bar?.stop();
    bar = new cliProgress.SingleBar(
      { stream, format: `${name} [{bar}] {percentage}% | {value}/{total} {unit} | eta {eta_formatted}` },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
  };
  return {
    update: (p: ImportProgress) => {
      if (p.phase !== phase) {
        phase = p.phase;
        start(p.phase === 'read' ? 'reading ' : 'building', p.phase === 'read' ? p.totalBytes : p.shardCount);
      }
      if (p.phase === 'read') bar?.update(p.bytesRead, { unit: 'bytes' });
      else bar?.update(p.shardsBuilt, { unit: 'shards' });
    },
    stop: () => bar?.stop(),
  };
}
