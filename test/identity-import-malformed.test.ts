/**
 * Defects (security review, low), both about what a damaged import file does:
 * - One malformed CSV record (a column too many at row 3001) made `rampart users import` throw after the
 *   earlier batches had committed: no summary, and the rows of the pending batch silently not imported,
 *   where a malformed JSON Lines row was only a rejected row. A CSV record the parser can skip is now a
 *   rejected row with its line and reason; one it cannot read past (an unclosed quote, a record over the
 *   size cap) ends the reading with a rejection saying the rest of the file was not read, and the import
 *   still commits what came before and returns its summary.
 * - Line length was unbounded: readline buffers a whole JSON Lines line, however long. A line over
 *   64 KiB is now a rejected row, discarded as it streams by (capped-lines.ts); CSV records are capped
 *   alike (csv-parse `max_record_size`).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importUsers } from '../src/identity/import-users.ts';
import { toTenantRef } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
/** The documented cap (docs/identity.md, Import): 64 KiB a line or record. */
const maxRecordBytes = 64 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'rampart-import-malformed-'));
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

async function importFile(slug: string, name: string, text: string) {
  await seedTenant(t, slug);
  const file = join(dir, name);
  writeFileSync(file, text);
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  const summary = await importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
  const emails = await t.db.withTenant<TenantIdentityTables, string[]>(tenant.id, async (tx) =>
    (await tx.selectFrom('users').select('email').execute()).map((u) => u.email),
  );
  return { summary, emails: new Set(emails) };
}

const csvRows = (domain: string, n: number) =>
  Array.from({ length: n }, (_, i) => `u${i + 1}@${domain},User ${i + 1},member`);

describe('CSV', () => {
  it('rejects a record with a column too many as a row, and imports every other row', async () => {
    const rows = ['email,displayName,role', ...csvRows('csv-extra.test', 3000)];
    rows.push('bad@csv-extra.test,Bad,member,EXTRA', 'last@csv-extra.test,Last,member');
    const { summary, emails } = await importFile('csv-extra', 'extra.csv', `${rows.join('\n')}\n`);
    expect(summary.imported).toBe(3001);
    expect(summary.rejected).toEqual([{ line: 3002, reason: expect.stringMatching(/column count/) }]);
    expect(emails.has('u3000@csv-extra.test')).toBe(true);
    expect(emails.has('last@csv-extra.test')).toBe(true);
    expect(emails.has('bad@csv-extra.test')).toBe(false);
  });

  it('stops at an unclosed quote with a summary naming its line, having imported what came before', async () => {
    const rows = ['email,displayName,role', ...csvRows('csv-quote.test', 700)];
    rows.push('"open@csv-quote.test,Open,member', 'after@csv-quote.test,After,member');
    const { summary, emails } = await importFile('csv-quote', 'quote.csv', `${rows.join('\n')}\n`);
    expect(summary.imported).toBe(700);
    expect(summary.rejected).toEqual([
      {
        line: 702,
        reason: expect.stringMatching(/not closed; the rest of the file was not read/),
      },
    ]);
    expect(emails.has('u700@csv-quote.test')).toBe(true);
  });

  it('stops at a record over the size cap, naming it', async () => {
    const rows = ['email,displayName,role', 'first@csv-long.test,First,member'];
    rows.push(
      `long@csv-long.test,${'x'.repeat(maxRecordBytes + 1)},member`,
      'next@csv-long.test,Next,member',
    );
    const { summary, emails } = await importFile('csv-long', 'long.csv', `${rows.join('\n')}\n`);
    expect(summary.rejected).toEqual([
      {
        line: 3,
        reason: `record longer than ${maxRecordBytes} characters; the rest of the file was not read`,
      },
    ]);
    expect([...emails]).toEqual(['first@csv-long.test']);
  });
});

describe('JSON Lines', () => {
  it('rejects a line over the cap as a row, and reads on', async () => {
    const lines = [
      JSON.stringify({ email: 'first@jsonl-long.test' }),
      JSON.stringify({ email: 'long@jsonl-long.test', displayName: 'x'.repeat(4 * maxRecordBytes) }),
      JSON.stringify({ email: 'next@jsonl-long.test' }),
    ];
    const { summary, emails } = await importFile('jsonl-long', 'long.jsonl', `${lines.join('\r\n')}\r\n`);
    expect(summary.rejected).toEqual([{ line: 2, reason: `line longer than ${maxRecordBytes} bytes` }]);
    expect(summary.imported).toBe(2);
    expect(emails).toEqual(new Set(['first@jsonl-long.test', 'next@jsonl-long.test']));
  });
});
