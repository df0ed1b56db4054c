import { createReadStream, statSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { CsvError, parse } from 'csv-parse';
import type { ActionContext } from '../platform/context.ts';
import { cappedLines } from './capped-lines.ts';
import { auditMany, type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { hasControlCharacters, normaliseEmail } from './email.ts';
import { type Argon2Params, excessiveCost, parseHash } from './passwords/index.ts';
import type { UserRole } from './tables.ts';
import { countFastHashes } from './wrap-legacy.ts';

export interface ImportRow {
  email?: unknown;
  displayName?: unknown;
  role?: unknown;
  passwordHash?: unknown;
}

export interface ImportProgress {
  bytesRead: number;
  bytesTotal: number;
  imported: number;
  rejected: number;
}

export interface ImportSummary {
  imported: number;
  rejected: { line: number; reason: string }[];
  /**
   * Password hashes of the tenant still in a fast legacy format after the import (salted SHA-256,
   * bcrypt below cost 10): the wrapping job or `rampart users wrap-legacy-hashes` replaces them.
   */
  fastHashesRemaining: number;
}

const roles = new Set<UserRole>(['member', 'staff', 'tenant-admin']);
const BATCH = 500;
/**
 * Longest JSON Lines line or CSV record read. A user's row is a few hundred bytes (a hash is at most 512);
 * the cap keeps a hostile or broken file (one endless line) from being read into memory whole.
 */
export const maxRecordBytes = 64 * 1024;

type Valid = {
  line: number;
  email: string;
  displayName: string;
  role: UserRole;
  passwordHash: string | null;
};

/**
 * Checks one row against the configured argon2id parameters; returns the reason it is refused, or the
 * cleaned row. Hashes are never echoed.
 */
export function validateRow(row: ImportRow, line: number, configured: Argon2Params): Valid | string {
  const email = typeof row.email === 'string' ? normaliseEmail(row.email) : null;
  if (!email) return 'email missing or not an email address';
  const role = (row.role === undefined || row.role === '' ? 'member' : row.role) as UserRole;
  if (!roles.has(role)) return `role must be one of ${[...roles].join(', ')}`;
  const displayName = typeof row.displayName === 'string' ? row.displayName.slice(0, 200) : '';
  if (hasControlCharacters(displayName)) return 'displayName contains control characters';
  const hash = typeof row.passwordHash === 'string' && row.passwordHash !== '' ? row.passwordHash : null;
  const parsed = hash === null ? null : parseHash(hash);
  if (hash !== null && parsed === null) {
    return 'passwordHash is not an accepted format (argon2 PHC, bcrypt $2a/$2b/$2y, or a documented salted SHA-256 layout)';
  }
  // Each sign-in attempt against the account would pay the hash's cost in the shared hasher slots.
  const excess = parsed === null ? null : excessiveCost(parsed, configured);
  if (excess !== null) return `passwordHash costs too much to verify at sign-in: ${excess}`;
  return { line, email, displayName, role, passwordHash: hash };
}

type ReadRow = [ImportRow | string, number];

/** Codes of a CSV record the parser skips cleanly, reading on from the next record. */
const skippableCsvErrors = new Set([
  'CSV_RECORD_INCONSISTENT_COLUMNS',
  'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH',
  'INVALID_OPENING_QUOTE',
]);

/**
 * CSV records with their line (the line each ends on). A record the parser can skip (a column too many or
 * too few, a stray quote) is a rejected row; an error after which it cannot tell where the next record
 * starts (an unclosed quote, a record over the size cap) ends the reading with a rejection saying so,
 * so the import still ends with its summary instead of an exception after earlier batches committed.
 * The parser is fed one chunk of the file at a time and hands over each record as it parses it
 * (`on_record`), into a queue drained before the next chunk is read: bounded by a chunk, and a record
 * parsed before an error is never lost. (Read through the parser's stream, up to a stream buffer of
 * records already parsed was dropped when the error arrived first, depending on timing: CI saw 685 of 700.)
 */
export async function* csvRows(stream: AsyncIterable<Buffer>): AsyncGenerator<ReadRow> {
  const queue: ReadRow[] = [];
  // The last line of the last record read or skipped (the header's at first): an error that stops the
  // reading is reported at the line after it, where the unreadable record starts, not where the parser
  // gave up (an unclosed quote is only noticed at the end of the file).
  let lastLine = 1;
  let failure: unknown = null;
  const parser = parse({
    columns: true,
    skip_empty_lines: true,
    trim: true,
    max_record_size: maxRecordBytes,
    skip_records_with_error: true,
    on_record: (record: ImportRow, info) => {
      lastLine = info.lines;
      queue.push([record, info.lines]);
      return null; // taken here: nothing goes through the parser's stream buffer
    },
    on_skip: (error) => {
      // Thrown from here, the error ends the parse (csv-parse turns it into a stream error).
      if (error === undefined) return undefined;
      if (!skippableCsvErrors.has(error.code)) throw error;
      lastLine = lineOf(error, lastLine);
      queue.push([`not a valid CSV record (${csvReason(error)})`, lastLine]);
      return undefined;
    },
  });
  parser.on('error', (error) => {
    failure ??= error;
  });
  // Flowing, so that the end is reached (nothing is pushed through it but the end itself).
  parser.resume();
  for await (const chunk of stream) {
    if (failure) break;
    // Parsed synchronously: the chunk's records are in the queue when write returns.
    parser.write(chunk);
    yield* queue.splice(0);
  }
  if (!failure) {
    parser.end();
    await finished(parser).catch((error: unknown) => {
      failure ??= error;
    });
  }
  yield* queue.splice(0);
  if (failure === null) return;
  if (!(failure instanceof CsvError)) throw failure;
  yield [`${csvReason(failure)}; the rest of the file was not read`, lastLine + 1];
}

/** The line csv-parse was on when it failed (its errors carry the parser's info). */
function lineOf(error: CsvError, fallback: number): number {
  return typeof error.lines === 'number' ? error.lines : fallback;
}

function csvReason(error: CsvError): string {
  if (error.code === 'CSV_MAX_RECORD_SIZE') return `record longer than ${maxRecordBytes} characters`;
  if (error.code === 'CSV_QUOTE_NOT_CLOSED') return 'a quoted field is not closed';
  if (error.code.startsWith('CSV_RECORD_INCONSISTENT')) return 'a column count other than the header row';
  // Never error.message: it may quote the record, and a record may hold a hash.
  return error.code;
}

/** JSON Lines rows with their line number; an over-long line is refused without being read whole. */
async function* jsonLinesRows(stream: AsyncIterable<Buffer>): AsyncGenerator<ReadRow> {
  let line = 0;
  for await (const text of cappedLines(stream, maxRecordBytes)) {
    line += 1;
    if (text === null) {
      yield [`line longer than ${maxRecordBytes} bytes`, line];
      continue;
    }
    if (text.trim() === '') continue;
    try {
      const parsed: unknown = JSON.parse(text);
      yield [
        parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
          ? (parsed as ImportRow)
          : 'not a JSON object',
        line,
      ];
    } catch {
      yield ['not valid JSON', line];
    }
  }
}

function rowsOf(path: string, onBytes: (n: number) => void): AsyncGenerator<ReadRow> {
  const stream = createReadStream(path);
  stream.on('data', (chunk) => onBytes(chunk.length));
  const chunks = stream as AsyncIterable<Buffer>;
  return /\.csv$/i.test(path) ? csvRows(chunks) : jsonLinesRows(chunks);
}

/** Inserts one batch in one transaction, with one audit event per user created; returns the emails inserted. */
async function insertBatch(
  deps: Pick<IdentityDeps, 'db' | 'clock'>,
  tenant: TenantRef,
  ctx: ActionContext,
  source: string,
  rows: Valid[],
): Promise<Set<string>> {
  return inTenant(deps, tenant, async (tx) => {
    const done = await tx
      .insertInto('users')
      .values(
        rows.map((r) => ({
          tenant_id: tenant.id,
          email: r.email,
          display_name: r.displayName,
          role: r.role,
          status: 'active' as const,
          password_hash: r.passwordHash,
          password_changed_at: null,
          email_verified_at: null,
          password_locked_until: null,
          mfa_locked_until: null,
        })),
      )
      .onConflict((oc) => oc.columns(['tenant_id', 'email']).doNothing())
      .returning(['id', 'email', 'role'])
      .execute();
    // Named per user, like an invitation: an import can create tenant administrators with a password the
    // importer chose, and the trail must say who. One append for the batch keeps it one INSERT.
    await auditMany(
      deps,
      tx,
      tenant,
      ctx,
      done.map((user) => ({
        action: 'identity.user.imported' as const,
        outcome: 'success' as const,
        target: { type: 'user', id: user.id },
        details: { email: user.email, role: user.role, source },
      })),
    );
    return new Set(done.map((d) => d.email));
  });
}

/**
 * Imports users with their existing password hashes (JSON Lines, or CSV with a header row), in batches
 * of one transaction each. Hashes are stored as they come (one argon2id per row here would make a large
 * import take hours); fast ones are wrapped in argon2id afterwards (wrap-legacy.ts), and every legacy
 * hash is replaced by plain argon2id at its user's next sign-in.
 */
export async function importUsers(
  deps: Pick<IdentityDeps, 'db' | 'clock' | 'hasher'>,
  tenant: TenantRef,
  ctx: ActionContext,
  path: string,
  onProgress: (p: ImportProgress) => void = () => {},
): Promise<ImportSummary> {
  const bytesTotal = statSync(path).size;
  const source = path.split('/').at(-1) ?? path;
  let bytesRead = 0;
  const summary: ImportSummary = { imported: 0, rejected: [], fastHashesRemaining: 0 };
  let batch: Valid[] = [];
  // Emails already taken by an earlier row: a file's duplicates are reported, not silently merged.
  const seen = new Set<string>();
  const report = () =>
    onProgress({ bytesRead, bytesTotal, imported: summary.imported, rejected: summary.rejected.length });
  const flush = async () => {
    if (batch.length === 0) return;
    const rows = batch;
    batch = [];
    const inserted = await insertBatch(deps, tenant, ctx, source, rows);
    for (const r of rows) {
      if (inserted.has(r.email)) summary.imported += 1;
      else summary.rejected.push({ line: r.line, reason: 'a user with this email exists in the tenant' });
    }
    report();
  };
  for await (const [row, line] of rowsOf(path, (n) => {
    bytesRead += n;
  })) {
    const checked = typeof row === 'string' ? row : validateRow(row, line, deps.hasher.params);
    if (typeof checked === 'string') summary.rejected.push({ line, reason: checked });
    else if (seen.has(checked.email))
      summary.rejected.push({ line, reason: 'this email appears earlier in the file' });
    else {
      seen.add(checked.email);
      batch.push(checked);
    }
    if (batch.length >= BATCH) await flush();
  }
  await flush();
  bytesRead = bytesTotal;
  report();
  summary.fastHashesRemaining = await countFastHashes(deps, tenant);
  return summary;
}
