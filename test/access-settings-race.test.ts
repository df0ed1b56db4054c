import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessSettings } from '../src/access/settings.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { actingAs, databaseState, type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { CHAIN_HEAD_LOCK, rowHolder, secondGatedBeforeFirst } from './race-helpers.ts';

const slug = 'race-access-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
// Fixed: the admins' second factor stays recent for every settings change and decision.
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let ana: Person;
let ben: Person;

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ana = await tenantAdmin(t, slug, 'ana@race-access-co.test', clock);
  ben = await tenantAdmin(t, slug, 'ben@race-access-co.test', clock);
});
afterAll(async () => {
  await t?.close();
});

const settings = () => t.app.services.access.settings.get(tenantId);
const putSettings = (who: Person, payload: AccessSettings) =>
  t.app.inject({ method: 'PUT', url: api('/access/settings'), headers: who.headers, payload });
const approvals = (who: Person, path: string, payload?: object) =>
  t.app.inject({
    method: 'POST',
    url: api(`/access/approvals${path}`),
    headers: who.headers,
    ...(payload ? { payload } : {}),
  });
/** Sets the settings as the platform would (system actor: not gated). */
async function setUp(change: (s: AccessSettings) => void) {
  const next = structuredClone(await settings());
  change(next);
  await t.app.services.access.settings.update(tenantId, systemContext('test'), next);
}
/** The current settings with a change (not sent). */
async function changed(change: (s: AccessSettings) => void) {
  const next = structuredClone(await settings());
  change(next);
  return next;
}
const updates = async () =>
  (
    await t.db.withTenant<AuditTables, { action: string }[]>(asTenantId(tenantId), (tx) =>
      tx
        .selectFrom('audit_events')
        .select('action')
        .where('action', '=', 'access.settings.updated')
        .execute(),
    )
  ).length;
const withoutExport = (s: AccessSettings) => {
  s.fourEyesActions = s.fourEyesActions.filter((a) => a !== 'audit.export');
};

describe(`access settings changed while a change was checked (${engineUnderTest})`, () => {
  it('a PUT taking off an action added after its gate read is refused (409); asked again, approved, it runs', async () => {
    await setUp(withoutExport);
    const added = await changed((s) => s.fourEyesActions.push('audit.export'));
    const same = await settings();
    const updatesBefore = await updates();

    const raced = await secondGatedBeforeFirst(
      t,
      t.app.services.access.settings,
      () => putSettings(ana, added),
      () => putSettings(ben, same),
    );
    expect(raced.first.statusCode, raced.first.body).toBe(200);
    expect(raced.second.statusCode, raced.second.body).toBe(409);
    expect(raced.second.json()).toMatchObject({ code: 'approval_now_required', status: 409 });
    expect(raced.second.json().detail).toMatch(/Stop requiring: approval for audit\.export/);
    // Nothing of B's ran: the database is as A left it, A's addition kept, one update recorded.
    expect(await databaseState(t)).toEqual(raced.afterFirst);
    expect((await settings()).fourEyesActions).toContain('audit.export');
    expect((await updates()) - updatesBefore).toBe(1);

    // Sent again, it is put up for approval, and the approved reduction runs.
    const asked = await putSettings(ben, same);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval).toMatchObject({ action: 'access.four-eyes.reduce', status: 'pending' });
    expect((await approvals(ana, `/${approval.id}/approve`)).statusCode).toBe(200);
    const run = await approvals(ben, `/${approval.id}/execute`, { params: approval.params });
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().status).toBe('executed');
    expect((await settings()).fourEyesActions).not.toContain('audit.export');
  });

  // Each: what A strengthens (B's gate read the settings before it); B sends them back as they were.
  const strengthenings: [string, (s: AccessSettings) => void, RegExp][] = [
    ['elevation approval handed to the tenant', (s) => (s.elevationApprover = 'tenant'), /tenant approval/],
    ['a threshold raised', (s) => (s.elevationThresholds = { staff: 3 }), /3 approvals for staff/],
    ['the approval TTL shortened', (s) => (s.approvalTtlMinutes = 60), /within 60 minutes \(asked: 1440\)/],
  ];
  it.each(strengthenings)(
    '%s, then undone by a PUT gated before it: refused (409)',
    async (_, strengthen, says) => {
      await setUp((s) => {
        s.elevationApprover = 'operator';
        s.elevationThresholds = {};
        s.approvalTtlMinutes = 1440;
      });
      const stronger = await changed(strengthen);
      const same = await settings();
      const raced = await secondGatedBeforeFirst(
        t,
        t.app.services.access.settings,
        () => putSettings(ana, stronger),
        () => putSettings(ben, same),
      );
      expect(raced.first.statusCode, raced.first.body).toBe(200);
      expect(raced.second.json()).toMatchObject({ code: 'approval_now_required', status: 409 });
      expect(raced.second.json().detail).toMatch(says);
      expect(await databaseState(t)).toEqual(raced.afterFirst);
      expect(await settings()).toEqual(stronger);
    },
  );

  // Review: the gate wrote the summary against the settings it read, the request recorded the basis it
  // locked a moment later: an addition committed in between was taken off by the approved run, unnamed.
  it('a request whose settings changed between its gate and its recording is not recorded (409)', async () => {
    await setUp(withoutExport);
    const added = await changed((s) => s.fourEyesActions.push('audit.export'));
    const longer = await changed((s) => (s.approvalTtlMinutes = 2000));
    const raced = await secondGatedBeforeFirst(
      t,
      t.app.services.access.settings,
      () => putSettings(ana, added),
      () => putSettings(ben, longer),
    );
    expect(raced.first.statusCode, raced.first.body).toBe(200);
    expect(raced.second.statusCode, raced.second.body).toBe(409);
    expect(raced.second.json().code).toBe('state_changed');
    expect(await databaseState(t)).toEqual(raced.afterFirst);

    // Sent again, the summary names what the approved run would take off.
    const asked = await putSettings(ben, longer);
    expect(asked.statusCode, asked.body).toBe(202);
    expect(asked.json().approval.summary).toMatch(/approval for audit\.export.*asked: 2000/);
  });

  it('an unapproved write by a person decides on the settings it locks, not on what its caller read', async () => {
    // As the route's handler runs after a gate that read the list with audit.export on it.
    await setUp((s) => {
      withoutExport(s);
      s.fourEyesActions.push('audit.export');
    });
    const stale = await changed(withoutExport);
    const before = await databaseState(t);
    const asAna = actingAs(ana);
    await expect(t.app.services.access.settings.update(tenantId, asAna, stale)).rejects.toMatchObject({
      code: 'approval_now_required',
      spec: { status: 409 },
    });
    expect(await databaseState(t)).toEqual(before);

    // The platform's own calls (the CLI, set-up) are not gated, as for role grants.
    await t.app.services.access.settings.update(tenantId, systemContext('test'), stale);
    expect((await settings()).fourEyesActions).not.toContain('audit.export');
  });

  it('is not refused where the tenant has taken access.four-eyes.reduce off its list', async () => {
    await setUp((s) => {
      withoutExport(s);
      s.fourEyesActions = s.fourEyesActions.filter((a) => a !== 'access.four-eyes.reduce');
    });
    try {
      const added = await changed((s) => s.fourEyesActions.push('audit.export'));
      const same = await settings();
      const raced = await secondGatedBeforeFirst(
        t,
        t.app.services.access.settings,
        () => putSettings(ana, added),
        () => putSettings(ben, same),
      );
      expect(raced.first.statusCode, raced.first.body).toBe(200);
      expect(raced.second.statusCode, raced.second.body).toBe(200);
      expect((await settings()).fourEyesActions).not.toContain('audit.export');
    } finally {
      await setUp((s) => s.fourEyesActions.push('access.four-eyes.reduce', 'audit.export'));
    }
  });
});

// The same two PUTs truly at once, on PostgreSQL (PGlite runs one transaction at a time): A has written
// its row and waits to append its audit event (another session holds the tenant's chain head); B's gate
// reads the settings as committed (without audit.export: no reduction), then B's write queues for the row
// A holds, and decides on what A committed.
describe.skipIf(engineUnderTest !== 'postgres')('two PUTs at once (PostgreSQL)', () => {
  it('the later write waits for the row and decides on what the earlier one committed', async () => {
    await setUp(withoutExport);
    const added = await changed((s) => s.fourEyesActions.push('audit.export'));
    const same = await settings();
    const lock = await rowHolder(t);
    try {
      await lock.hold(CHAIN_HEAD_LOCK, [tenantId]);
      const first = putSettings(ana, added);
      await lock.waiting(1);
      const second = putSettings(ben, same);
      await lock.waiting(2);
      await lock.release();
      const [a, b] = await Promise.all([first, second]);
      expect(a.statusCode, a.body).toBe(200);
      expect(b.statusCode, b.body).toBe(409);
      expect(b.json().code).toBe('approval_now_required');
      expect((await settings()).fourEyesActions).toContain('audit.export');
    } finally {
      await lock.close();
    }
  });
});
