/** Resolve import paths into sources: a directory stands for every `*.txt` file in it (the downloader's layout). */
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BreachedImportError } from './errors.ts';
import type { BreachedSource } from './line-parser.ts';

const RANGE_NAME = /^([0-9A-Fa-f]{5})\.txt$/;

export interface ResolvedSource {
  source: BreachedSource;
  bytes: number;
}

/** A file named like `21BD1.txt` is a range file; any other name is read as a combined `HASH:COUNT` file. */
export function classify(path: string): BreachedSource {
  const m = RANGE_NAME.exec(basename(path));
  return m?.[1] ? { kind: 'range', path, prefix: Number.parseInt(m[1], 16) } : { kind: 'combined', path };
}

export function resolveSources(paths: string[]): ResolvedSource[] {
  if (paths.length === 0) throw new BreachedImportError('no_input', 'no input files given');
  const out: ResolvedSource[] = [];
  for (const path of paths) {
    const st = statOrThrow(path);
    if (st.isDirectory()) {
      // A directory can hold a million range files: list names once, sorted, and stat each as we go.
      const names = readdirSync(path)
        .filter((n) => n.endsWith('.txt'))
        .sort();
      if (names.length === 0)
        throw new BreachedImportError('no_input', `${path}: no .txt files in directory`);
      for (const name of names) {
        const file = join(path, name);
        out.push({ source: classify(file), bytes: statOrThrow(file).size });
      }
    } else {
      out.push({ source: classify(path), bytes: st.size });
    }
  }
  return out;
}

function statOrThrow(path: string) {
  try {
    return statSync(path);
  } catch (err) {
    throw new BreachedImportError(
      'no_input',
      `${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    );
  }
}
