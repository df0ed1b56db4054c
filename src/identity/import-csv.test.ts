import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { csvRows } from './import-users.ts';

/** The file as one chunk, as a small file is read. */
const oneChunk = (text: string) => Readable.from([Buffer.from(text)]);

describe('CSV rows before an error that stops the reading', () => {
  it('are all handed over, however slowly the import takes them', async () => {
    const lines = ['email,displayName,role'];
    for (let i = 1; i <= 200; i++) lines.push(`u${i}@csv.test,User ${i},member`);
    lines.push('"open@csv.test,Open,member', 'after@csv.test,After,member');
    const rows: unknown[] = [];
    for await (const [row, line] of csvRows(oneChunk(`${lines.join('\n')}\n`))) {
      // A slow consumer (the import awaits a database batch): read through the parser's stream, the
      // records it had parsed but not yet handed over were dropped when the error at the end arrived.
      await sleep(1);
      rows.push(typeof row === 'string' ? { line, row } : row.email);
    }
    expect(rows).toHaveLength(201);
    expect(rows[199]).toBe('u200@csv.test');
    expect(rows[200]).toEqual({ line: 202, row: expect.stringMatching(/not closed; the rest of the file/) });
  });
});
