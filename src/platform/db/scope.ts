import { CompiledQuery, type Kysely, type Transaction } from 'kysely';

declare const tenantScoped: unique symbol;
declare const systemScoped: unique symbol;
declare const tenantIdBrand: unique symbol;

/** A tenant's id, checked to be a UUID. */
export type TenantId = string & { readonly [tenantIdBrand]: true };

/**
 * A transaction in which `rampart.tenant_id` is set locally: row-level security shows and accepts only
 * that tenant's rows. Repositories of tenant-owned tables accept nothing else, so unscoped access does
 * not compile.
 */
export type TenantTx<DB> = Transaction<DB> & { readonly [tenantScoped]: TenantId };

/**
 * A transaction for platform-wide tables (tenants, operators, platform audit). No tenant is set, so
 * tenant-owned tables read as empty through it: it is not a way around isolation.
 */
export type SystemTx<DB> = Transaction<DB> & { readonly [systemScoped]: true };

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isTenantId(value: string): value is TenantId {
  return uuid.test(value);
}

export function asTenantId(value: string): TenantId {
  if (!isTenantId(value)) throw new TypeError('tenant id must be a UUID');
  return value;
}

/**
 * The statement that scopes a transaction to a tenant (`true`: SET LOCAL, it ends with the transaction).
 * Exported so the embedded engine can recognise it (pglite-engine.ts sends it together with BEGIN).
 */
export const SET_TENANT_SQL = "SELECT set_config('rampart.tenant_id', $1, true)";

const setTenant = (tenantId: TenantId) => CompiledQuery.raw(SET_TENANT_SQL, [tenantId]);

export type Scoped = {
  withTenant<DB, R>(tenantId: TenantId, fn: (tx: TenantTx<DB>) => Promise<R>): Promise<R>;
  withSystem<DB, R>(fn: (tx: SystemTx<DB>) => Promise<R>): Promise<R>;
};

export function createScopes(db: Kysely<unknown>): Scoped {
  return {
    async withTenant(tenantId, fn) {
      // Re-check at the boundary: a non-UUID would fail the ::uuid cast inside a policy. (async, so a
      // bad id rejects like every other failure instead of throwing at the call.)
      asTenantId(tenantId);
      return db.transaction().execute(async (trx) => {
        await trx.executeQuery(setTenant(tenantId));
        return fn(trx as never);
      });
    },
    withSystem(fn) {
      return db.transaction().execute((trx) => fn(trx as never));
    },
  };
}

/**
 * Narrows a system transaction to one tenant for the rest of the transaction, so a tenant's first rows
 * can be written atomically with the tenant itself. Platform rows are no longer visible afterwards.
 */
export async function enterTenant<DB>(tx: SystemTx<DB>, tenantId: TenantId): Promise<TenantTx<DB>> {
  await tx.executeQuery(setTenant(asTenantId(tenantId)));
  return tx as unknown as TenantTx<DB>;
}

/**
 * A check that must hold in the very transaction that makes a change, run first in it: Access's
 * four-eyes re-checks (the approver still holds the right, the state is the one approved), which lock
 * the rows they read so nothing can take the answer away before the change commits. A capability whose
 * service runs an approved action takes one and calls it in its transaction before writing.
 */
export type TxGuard = ((tx: AnyTenantTx) => Promise<void>) & {
  /**
   * The users whose rows the guard locks (an approver). A service that locks users' rows itself takes
   * these with its own first, all in ascending id order, before it calls the guard: one lock order for
   * user rows in every transaction (docs/access.md, "Lock order").
   */
  readonly userIds?: readonly string[];
};

/** PostgreSQL's deadlock (40P01) or serialization failure (40001): the transaction rolled back whole. */
export function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** PostgreSQL cancelled the statement at `statement_timeout` (57014): its transaction changed nothing. */
export function isStatementTimeout(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '57014';
}

/**
 * A tenant-scoped transaction over any capability's tables, for code run in another capability's
 * transaction (a guard, a locked read); the receiver narrows it to its own tables.
 */
// biome-ignore lint/suspicious/noExplicitAny: any capability's table map; each receiver casts to its own.
export type AnyTenantTx = TenantTx<any>;
