/**
 * Streaming parser for Pwned Passwords SHA-1 dumps. Works on raw bytes (no per-line strings) because a
 * full dump has ~2 billion lines. Only the first 64 bits of each hash are kept: that is the filter key.
 */
import { BreachedImportError } from './errors.ts';

/** A range file from PwnedPasswordsDownloader (`21BD1.txt`, lines `SUFFIX:COUNT`) or a combined `HASH:COUNT` file. */
export type BreachedSource =
  | { kind: 'range'; path: string; prefix: number }
  | { kind: 'combined'; path: string };

export type KeySink = (hi: number, lo: number) => void;

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}
const COLON = 58;
const CR = 13;
const LF = 10;
/** Counts beyond 2^53 cannot be compared exactly; no real count comes near (the top one is ~10^8). */
const MAX_COUNT_DIGITS = 15;

export class HashLineParser {
  private line = 0;
  private carry: Buffer | null = null;
  accepted = 0;
  skipped = 0;
  private readonly hexLength: number;
  /** HASH:COUNT with the longest count, and a CR before the line feed. */
  private readonly maxLineLength: number;

  constructor(
    private readonly source: BreachedSource,
    private readonly minCount: number,
    private readonly sink: KeySink,
  ) {
    this.hexLength = source.kind === 'range' ? 35 : 40;
    this.maxLineLength = this.hexLength + 1 + MAX_COUNT_DIGITS + 1;
  }

  /**
   * Feed the next chunk; a line split across chunks is carried over. The carry never grows beyond the
   * longest valid line (a file that is one long line was otherwise held, and copied chunk after chunk,
   * in memory before it was refused): a longer line is refused as soon as it is seen.
   */
  push(chunk: Buffer): void {
    let start = 0;
    if (this.carry) {
      const nl = chunk.indexOf(LF);
      const length = this.carry.length + (nl < 0 ? chunk.length : nl);
      if (length > this.maxLineLength) this.failTooLong(this.carry);
      const joined = Buffer.concat([this.carry, nl < 0 ? chunk : chunk.subarray(0, nl)]);
      if (nl < 0) {
        this.carry = joined;
        return;
      }
      this.carry = null;
      this.parseLine(joined, 0, joined.length);
      start = nl + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(LF, start);
      if (nl < 0) break;
      this.parseLine(chunk, start, nl);
      start = nl + 1;
    }
    if (chunk.length - start > this.maxLineLength) this.failTooLong(chunk.subarray(start));
    if (start < chunk.length) this.carry = Buffer.from(chunk.subarray(start));
  }

  /** Call at end of file: the last line may have no line ending. */
  end(): void {
    if (this.carry) this.parseLine(this.carry, 0, this.carry.length);
    this.carry = null;
  }

  private parseLine(buf: Buffer, start: number, stop: number): void {
    this.line++;
    let end = stop;
    if (end > start && buf[end - 1] === CR) end--;
    if (end === start) return; // blank lines (a trailing newline, or CRLF padding) carry nothing
    const hexLen = this.hexLength;
    if (end - start < hexLen + 2 || buf[start + hexLen] !== COLON) this.fail(buf, start, end);
    for (let i = start; i < start + hexLen; i++) {
      if ((HEX[buf[i] as number] as number) < 0) this.fail(buf, start, end);
    }
    const digits = end - start - hexLen - 1;
    if (digits > MAX_COUNT_DIGITS) this.fail(buf, start, end);
    let count = 0;
    for (let i = start + hexLen + 1; i < end; i++) {
      const d = (buf[i] as number) - 48;
      if (d < 0 || d > 9) this.fail(buf, start, end);
      count = count * 10 + d;
    }
    if (count < this.minCount) {
      this.skipped++;
      return;
    }
    // The key is the first 16 hex digits of the full hash; a range file's name supplies the first 5.
    let hi: number;
    let lo: number;
    if (this.source.kind === 'range') {
      hi = ((this.source.prefix << 12) | hex(buf, start, 3)) >>> 0;
      lo = hex(buf, start + 3, 8);
    } else {
      hi = hex(buf, start, 8);
      lo = hex(buf, start + 8, 8);
    }
    this.accepted++;
    this.sink(hi, lo);
  }

  /** The line that begins with `start` (not yet counted) is longer than any valid one. */
  private failTooLong(start: Buffer): never {
    this.line++;
    const shown = start.toString('latin1', 0, Math.min(start.length, 60));
    throw new BreachedImportError(
      'malformed_line',
      `${this.source.path}:${this.line}: expected ${this.expected()}, got a line longer than ${this.maxLineLength} bytes starting "${shown}"`,
    );
  }

  private expected(): string {
    return this.source.kind === 'range' ? 'SUFFIX:COUNT (35 hex digits)' : 'HASH:COUNT (40 hex digits)';
  }

  private fail(buf: Buffer, start: number, end: number): never {
    const shown = buf.toString('latin1', start, Math.min(end, start + 60));
    throw new BreachedImportError(
      'malformed_line',
      `${this.source.path}:${this.line}: expected ${this.expected()}, got "${shown}"`,
    );
  }
}

/** Parse `len` hex digits (already validated) into an unsigned 32-bit value. */
function hex(buf: Buffer, at: number, len: number): number {
  let v = 0;
  for (let i = at; i < at + len; i++) v = v * 16 + (HEX[buf[i] as number] as number);
  return v;
}
