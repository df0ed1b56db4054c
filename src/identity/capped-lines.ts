import { Buffer } from 'node:buffer';

/**
 * Splits a byte stream into lines (LF or CRLF) of at most `maxBytes` bytes each, yielding each line's
 * text, or null for a line that was longer. Unlike readline, which buffers a whole line however long it
 * is, a line past the cap is discarded as it streams by: a file of one endless line costs `maxBytes` of
 * memory, not the file's size. Splitting on the LF byte is safe in UTF-8, where no other character
 * contains it.
 */
export async function* cappedLines(
  chunks: AsyncIterable<Buffer>,
  maxBytes: number,
): AsyncGenerator<string | null> {
  let parts: Buffer[] = [];
  let size = 0;
  let tooLong = false;
  const take = (piece: Buffer) => {
    if (tooLong) return;
    // One byte of slack for the CR of a CRLF, which is not part of the line.
    if (size + piece.length > maxBytes + 1) {
      tooLong = true;
      parts = [];
      return;
    }
    parts.push(piece);
    size += piece.length;
  };
  const finish = (): string | null => {
    const text = tooLong ? null : Buffer.concat(parts).toString('utf8').replace(/\r$/, '');
    parts = [];
    size = 0;
    tooLong = false;
    return text !== null && Buffer.byteLength(text) > maxBytes ? null : text;
  };
  for await (const chunk of chunks) {
    let start = 0;
    for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
      take(chunk.subarray(start, newline));
      yield finish();
      start = newline + 1;
    }
    take(chunk.subarray(start));
  }
  if (size > 0 || tooLong) yield finish();
}
