/** The audit action catalogue: every action the code writes is in it, and nothing else can be written. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditActions, isKnownAuditAction, recordAuditEvent } from '../src/audit/index.ts';
import { systemClock, systemContext } from '../src/platform/context.ts';
import { buildTestApp, type TestApp } from './helpers.ts';

const sourceFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('the audit action catalogue', () => {
  it('holds every action literal the source writes', () => {
    const written = new Set<string>();
    for (const file of sourceFiles(new URL('../src', import.meta.url).pathname)) {
      // The four-eyes list and its wiring name critical actions (`tenancy.tenant.delete`), not audit actions.
      if (
        ['/access/critical.ts', '/access/audit-trail-actions.ts', '/access/platform-actions.ts'].some((f) =>
          file.endsWith(f),
        )
      ) {
        continue;
      }
      const text = readFileSync(file, 'utf8');
      // Every quoted capability.object.verb: as `action: '…'`, in a ternary, or passed to a helper.
      const literal = /'((?:identity|access|audit|protect|tenancy|mail)\.[a-z_]+\.[a-z_]+(?:\.[a-z_]+)*)'/g;
      for (const m of text.matchAll(literal)) if (m[1]) written.add(m[1]);
    }
    expect(written.size).toBeGreaterThan(40);
    expect([...written].filter((a) => !isKnownAuditAction(a))).toEqual([]);
  });

  it('refuses to record an action that is not in it, writing nothing', async () => {
    await expect(
      t.db.withSystem((tx) =>
        recordAuditEvent(tx, systemClock, systemContext('test'), {
          tenantId: null,
          action: 'identity.user.teleported',
          outcome: 'success',
        }),
      ),
    ).rejects.toThrow(/not in the catalogue/);
  });

  it('is served to operators and tenant readers, and every name is capability.object.verb', async () => {
    const res = await t.app.inject({ url: '/api/v1/audit/actions', headers: t.asOperator });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(auditActions());
    for (const def of auditActions()) expect(def.action.startsWith(`${def.capability}.`)).toBe(true);
  });
});
