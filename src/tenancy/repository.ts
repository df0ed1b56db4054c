import type { Selectable } from 'kysely';
import type { SystemTx, TenantTx } from '../platform/db/index.ts';
import type { TenancyTables, TenantsTable } from './tables.ts';

export type TenantRow = Selectable<TenantsTable>;

/** Platform-wide tenant records: takes the system transaction. */
export function createTenantRepository(tx: SystemTx<TenancyTables>) {
  return {
    bySlug: (slug: string) =>
      tx.selectFrom('tenants').selectAll().where('slug', '=', slug).executeTakeFirst(),
    /** The row, locked until the transaction ends: status changes decide on what they then see. */
    lockBySlug: (slug: string) =>
      tx.selectFrom('tenants').selectAll().where('slug', '=', slug).forUpdate().executeTakeFirst(),
    byId: (id: string) => tx.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst(),
    /** Inserts unless the slug exists; returns undefined on a clash (no exception, no aborted transaction). */
    insert: (values: { slug: string; display_name: string; region: string }) =>
      tx
        .insertInto('tenants')
        .values({ ...values, status: 'active', suspended_reason: null, suspended_at: null })
        .onConflict((oc) => oc.column('slug').doNothing())
        .returningAll()
        .executeTakeFirst(),
    page: (after: string | null, limit: number) => {
      let query = tx.selectFrom('tenants').selectAll().orderBy('slug').limit(limit);
      if (after !== null) query = query.where('slug', '>', after);
      return query.execute();
    },
    setStatus: (id: string, status: 'active' | 'suspended', reason: string | null, at: Date | null) =>
      tx
        .updateTable('tenants')
        .set({ status, suspended_reason: reason, suspended_at: at, updated_at: new Date() })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow(),
  };
}

/** The tenant's own settings row: takes the tenant-scoped transaction. */
export function createTenantSettingsRepository(tx: TenantTx<TenancyTables>) {
  return {
    create: (tenantId: string) => tx.insertInto('tenant_settings').values({ tenant_id: tenantId }).execute(),
    get: () => tx.selectFrom('tenant_settings').selectAll().executeTakeFirst(),
  };
}
