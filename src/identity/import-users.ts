import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parse } from 'csv-parse';
import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { hasControlCharacters, normaliseEmail } from './email.ts';
import { hashFormat } from './passwords/index.ts';
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

type Valid = {
  line: number;
  email: string;
  displayName: string;
  role: UserRole;
  passwordHash: string | null;
};

/** Checks one row; returns the reason it is refused, or the cleaned row. Hashes are never echoed. */
export function validateRow(row: ImportRow, line: number): Valid | string {
  const email = typeof row.email === 'string' ? normaliseEmail(row.email) : null;
  if (!email) return 'email missing or not an email address';
  const role = (row.role === undefined || row.role === '' ? 'member' : row.role) as UserRole;
  if (!roles.has(role)) return `role must be one of ${[...roles].join(', ')}`;
  const displayName = typeof row.displayName === 'string' ? row.displayName.slice(0, 200) : '';
  if (hasControlCharacters(displayName)) return 'displayName contains control characters';
  const hash = typeof row.passwordHash === 'string' && row.passwordHash !== '' ? row.passwordHash : null;
  if (hash !== null && hashFormat(hash) === null) {
    return 'passwordHash is not an accepted format (argon2 PHC, bcrypt $2a/$2b/$2y, or a documented salted SHA-256 layout)';
  }
  return { line, email, displayName, role, passwordHash: hash };
}

async function* rowsOf(
  path: string,
  onBytes: (n: number) => void,
): AsyncGenerator<[ImportRow | string, number]> {
  const stream = createReadStream(path);
  stream.on('data', (chunk) => onBytes(chunk.length));
  if (/\.csv$/i.test(path)) {
    let line = 1;
    for await (const record of stream.pipe(
      parse({ columns: true, skip_empty_lines: true, trim: true, relax_column_count: false }),
    )) {
      line += 1;
      yield [record as ImportRow, line];
    }
    return;
  }
  let line = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })) {
    line += 1;
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

/**
 * Imports users with their existing password hashes (JSON Lines, or CSV with a header row), in batches
 * of one transaction each. Hashes are stored as they come (one argon2id per row here would make a large
 * import take hours); fast ones are wrapped in argon2id afterwards (wrap-legacy.ts), and every legacy
 * hash is replaced by plain argon2id at its user's next sign-in.
 */
export async function importUsers(
  deps: Pick<IdentityDeps, 'db' | 'clock'>,
  tenant: TenantRef,
  ctx: ActionContext,
  path: string,
  onProgress: (p: ImportProgress) => void = () => {},
): Promise<ImportSummary> {
  const bytesTotal = statSync(path).size;
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
    const inserted = await inTenant(deps, tenant, async (tx) => {
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
        .returning(['id', 'email'])
        .execute();
      await audit(deps, tx, tenant, ctx, {
        action: 'identity.user.imported',
        outcome: 'success',
        details: { count: done.length, source: path.split('/').at(-1) ?? path },
      });
      return new Set(done.map((d) => d.email));
    });
    for (const r of rows) {
      if (inserted.has(r.email)) summary.imported += 1;
      else
        summary.rejected.push({
          line: r.line,
          reason: 'a user with this email exists in the tenant',
        });
    }
    report();
  };
  for await (const [row, line] of rowsOf(path, (n) => {
    bytesRead += n;
  })) {
    const checked = typeof row === 'string' ? row : validateRow(row, line);
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
