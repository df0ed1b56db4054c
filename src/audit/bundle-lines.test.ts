import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { lineBatches } from './bundle.ts';

const dir = mkdtempSync(join(tmpdir(), 'rampart-bundle-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readlineLines(path: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    lines.push(line);
  }
  return lines;
}

async function batchedLines(path: string, chunkBytes: number): Promise<string[]> {
  const lines: string[] = [];
  for await (const batch of lineBatches(path, chunkBytes)) lines.push(...batch);
  return lines;
}

// verify-file read its lines with readline; it now reads them a chunk at a time (bundle.ts). Every
// break readline knows (\n, \r\n, a lone \r), one split across chunks, and a character split across
// chunks must give the same lines, whatever the chunk size.
describe('lineBatches', () => {
  const contents = {
    lf: '{"a":1}\n{"b":"é"}\n',
    crlf: '{"a":1}\r\n{"b":"😀"}\r\n\r\n{"c":3}',
    mixed: 'x\ry\r\n\nz\r\r\n€€€\n\r',
    noFinalBreak: 'one\ntwo',
    empty: '',
    blankLines: '\n\n\r\n',
  };
  for (const [name, text] of Object.entries(contents)) {
    it(`gives readline's lines (${name})`, async () => {
      const path = join(dir, `${name}.jsonl`);
      writeFileSync(path, text);
      const expected = await readlineLines(path);
      for (const chunkBytes of [1, 2, 3, 5, 8, 1 << 20]) {
        expect(await batchedLines(path, chunkBytes), `${name} in chunks of ${chunkBytes}`).toEqual(expected);
      }
    });
  }
});
