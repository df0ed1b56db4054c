import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { cappedLines } from './capped-lines.ts';

async function collect(chunks: string[], max: number): Promise<(string | null)[]> {
  async function* source() {
    for (const chunk of chunks) yield Buffer.from(chunk);
  }
  const out: (string | null)[] = [];
  for await (const line of cappedLines(source(), max)) out.push(line);
  return out;
}

describe('cappedLines', () => {
  it('splits LF and CRLF lines across chunk boundaries, keeping a last line without a newline', async () => {
    expect(await collect(['ab', 'c\r\nde\n', '\nf', 'g'], 10)).toEqual(['abc', 'de', '', 'fg']);
  });

  it('yields null for a line over the cap, streamed past in pieces, and reads on', async () => {
    const long = Array.from({ length: 100 }, () => 'x'.repeat(1000));
    expect(await collect(['ok\n', ...long, '\nnext\n'], 4096)).toEqual(['ok', null, 'next']);
    expect(await collect(['12345\r\n123456\n', '1234567'], 5)).toEqual(['12345', null, null]);
  });

  it('keeps multi-byte characters split across chunks whole', async () => {
    const bytes = Buffer.from('é\n');
    async function* source() {
      yield bytes.subarray(0, 1);
      yield bytes.subarray(1);
    }
    const out: (string | null)[] = [];
    for await (const line of cappedLines(source(), 10)) out.push(line);
    expect(out).toEqual(['é']);
  });
});
