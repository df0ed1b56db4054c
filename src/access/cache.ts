import type { InvalidationBus } from '../platform/bus/index.ts';
import { type Clock, systemClock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { builtinRoles, isBuiltinRole, isKnownPermission } from './catalogue.ts';
import { inTenant, type Tx } from './tables.ts';

/**
 * Identity's answer to "is this user disabled", read in Access's tenant transaction; `lock`: the user's
 * row is held FOR SHARE until that transaction commits (see locked-holdings.ts).
 */
export type UserDisabled = (tx: Tx, userId: string, lock?: boolean) => Promise<boolean>;

export const ACCESS_TOPIC = 'access';
// The bus drops entries on every change; this only bounds how long a node could serve a permission
// whose change it never heard of (a publish that failed after the commit).
const SAFETY_TTL_MS = 30_000;

/** An approved elevation of one operator in one tenant. Expiry is compared with the clock at each use. */
export interface Grant {
  elevationId: string;
  roleKey: string;
  permissions: ReadonlySet<string>;
  expiresAt: number;
}

/**
 * What the cache may hold. Entries are only made for tenants that are known and active, but a caller can
 * still name any number of users there (made-up ids load as "no permissions"), so both are capped.
 */
export interface CacheLimits {
  /** Tenants with cached entries. */
  tenants: number;
  /** Cached users, over all tenants. */
  users: number;
}
export const defaultCacheLimits: CacheLimits = { tenants: 10_000, users: 50_000 };

interface TenantEntry {
  /** Entries of this tenant are served until then. */
  until: number;
  users: Map<string, ReadonlySet<string>>;
  operators: Map<string, readonly Grant[]>;
}

/** The permissions a role key gives: a built-in role's from code, a custom role's from its row. */
export function rolePermissions(roleKey: string, custom: readonly string[] | null): string[] {
  if (isBuiltinRole(roleKey)) return builtinRoles[roleKey].permissions();
  // A permission a newer build retired is ignored rather than trusted.
  return (custom ?? []).filter(isKnownPermission);
}

/**
 * What an active elevation gives: the permissions approved (its snapshot of the role when asked for), and
 * of those only what the role still gives. A role edited later never widens it; narrowing or deleting the
 * role narrows or ends it; a custom role created anew after the grant started does not revive it.
 */
export function elevationPermissions(r: {
  role_key: string;
  granted: string[];
  permissions: string[] | null;
  role_created_at: Date | null;
  starts_at: Date | null;
}): ReadonlySet<string> {
  const sameRole =
    isBuiltinRole(r.role_key) ||
    (r.role_created_at !== null && r.starts_at !== null && r.role_created_at <= r.starts_at);
  const current = new Set(sameRole ? rolePermissions(r.role_key, r.permissions) : []);
  return new Set(r.granted.filter((p) => current.has(p)));
}

/**
 * Effective permissions in memory, per tenant. Every change publishes the tenant's id on the bus after
 * commit and every node (this one too) drops that tenant's entries; a bus reset drops everything. A load
 * that raced an invalidation is not stored (per-tenant generation), so a stale read cannot stick.
 */
export function createPermissionCache(
  db: Database,
  clock: Clock,
  bus: InvalidationBus,
  onBackgroundError: (error: unknown) => void,
  userDisabled: UserDisabled = async () => false,
  limits: CacheLimits = defaultCacheLimits,
) {
  // The hot path reads the time once per decision: without an injected clock, without allocating a Date.
  const nowMs = clock === systemClock ? Date.now : () => clock.now().getTime();
  // In creation order, so the oldest entry (the first to expire) is always first.
  const tenants = new Map<string, TenantEntry>();
  let users = 0;
  const generations = new Map<string, number>();
  let resets = 0;
  const generationOf = (tenantId: string) => `${resets}:${generations.get(tenantId) ?? 0}`;
  const drop = (tenantId: string, entry: TenantEntry) => {
    users -= entry.users.size;
    tenants.delete(tenantId);
  };
  /** Drops expired tenants, then the oldest, until a new tenant and a new user fit. Runs on loads only. */
  const makeRoom = () => {
    const now = nowMs();
    for (const [tenantId, entry] of tenants) {
      if (entry.until > now && tenants.size < limits.tenants && users < limits.users) return;
      drop(tenantId, entry);
    }
  };
  const entryOf = (tenantId: string) => {
    let entry = live(tenantId);
    if (!entry) {
      makeRoom();
      entry = { until: nowMs() + SAFETY_TTL_MS, users: new Map(), operators: new Map() };
      tenants.set(tenantId, entry);
    }
    return entry;
  };
  /** The tenant's live entries, or undefined (and dropped) once the safety TTL passed. */
  const live = (tenantId: string) => {
    // The bus not live (connection lost): a change elsewhere would go unheard, so nothing is served.
    if (!bus.live()) return undefined;
    const entry = tenants.get(tenantId);
    if (!entry) return undefined;
    if (entry.until > nowMs()) return entry;
    drop(tenantId, entry);
    return undefined;
  };
  const storeUser = (tenantId: string, userId: string, permissions: ReadonlySet<string>) => {
    if (users >= limits.users) makeRoom();
    const entry = entryOf(tenantId);
    if (!entry.users.has(userId)) users += 1;
    entry.users.set(userId, permissions);
  };
  const invalidate = (tenantId: string) => {
    generations.set(tenantId, (generations.get(tenantId) ?? 0) + 1);
    const entry = tenants.get(tenantId);
    if (entry) drop(tenantId, entry);
  };
  const unsubscribe = bus.subscribe(ACCESS_TOPIC, invalidate);
  const unReset = bus.onReset(() => {
    resets += 1;
    tenants.clear();
    users = 0;
  });
  // Loads in flight, so checks of one user that arrive together (one batch) read the database once. A
  // load is joined only in the generation it started in: after an invalidation, a new one starts.
  const loading = new Map<string, { generation: string; permissions: Promise<ReadonlySet<string>> }>();

  function userPermissions(
    tenantId: string,
    userId: string,
  ): Promise<ReadonlySet<string>> | ReadonlySet<string> {
    const cached = live(tenantId)?.users.get(userId);
    if (cached) return cached;
    const key = `${tenantId}/${userId}`;
    const generation = generationOf(tenantId);
    const pending = loading.get(key);
    if (pending?.generation === generation) return pending.permissions;
    const permissions = loadUser(tenantId, userId, generation).finally(() => {
      if (loading.get(key)?.permissions === permissions) loading.delete(key);
    });
    loading.set(key, { generation, permissions });
    return permissions;
  }

  async function loadUser(
    tenantId: string,
    userId: string,
    generation: string,
  ): Promise<ReadonlySet<string>> {
    const rows = await inTenant(db, tenantId, async (tx) =>
      // A disabled user keeps their assignments (enabling gives them back) but holds nothing meanwhile.
      (await userDisabled(tx, userId))
        ? []
        : tx
            .selectFrom('access_assignments as a')
            .leftJoin('access_roles as r', (join) =>
              join.onRef('r.tenant_id', '=', 'a.tenant_id').onRef('r.key', '=', 'a.role_key'),
            )
            .select(['a.role_key', 'r.permissions'])
            .where('a.user_id', '=', userId)
            .execute(),
    );
    const permissions = new Set(rows.flatMap((r) => rolePermissions(r.role_key, r.permissions)));
    if (generationOf(tenantId) === generation && bus.live()) storeUser(tenantId, userId, permissions);
    return permissions;
  }

  async function loadOperator(tenantId: string, operatorId: string): Promise<readonly Grant[]> {
    const generation = generationOf(tenantId);
    const rows = await inTenant(db, tenantId, (tx) =>
      tx
        .selectFrom('access_elevations as e')
        .leftJoin('access_roles as r', (join) =>
          join.onRef('r.tenant_id', '=', 'e.tenant_id').onRef('r.key', '=', 'e.role_key'),
        )
        .select([
          'e.id',
          'e.role_key',
          'e.expires_at',
          'e.starts_at',
          'e.permissions as granted',
          'r.permissions',
          'r.created_at as role_created_at',
        ])
        .where('e.operator_id', '=', operatorId)
        .where('e.status', '=', 'active')
        .where('e.expires_at', '>', clock.now())
        .execute(),
    );
    const grants = rows.map((r) => ({
      elevationId: r.id,
      roleKey: r.role_key,
      permissions: elevationPermissions(r),
      expiresAt: r.expires_at?.getTime() ?? 0,
    }));
    if (generationOf(tenantId) === generation && bus.live())
      entryOf(tenantId).operators.set(operatorId, grants);
    return grants;
  }

  return {
    /** The cached permissions of a user, or undefined when they must be loaded. */
    peekUser: (tenantId: string, userId: string) => live(tenantId)?.users.get(userId),
    userPermissions,
    operatorGrants: async (tenantId: string, operatorId: string): Promise<readonly Grant[]> =>
      live(tenantId)?.operators.get(operatorId) ?? loadOperator(tenantId, operatorId),
    /**
     * Call after the change committed: every node drops the tenant's entries. This node drops them
     * before the broker is asked; if the broker is unreachable the change stands (it committed), the
     * error is reported, and other nodes fall back on their bus reset and the safety TTL.
     */
    changed: async (tenantId: string) => {
      await bus.publish(ACCESS_TOPIC, tenantId).catch(onBackgroundError);
    },
    /** How much is cached (tests check that made-up ids cannot grow it without bound). */
    get size() {
      return { tenants: tenants.size, users };
    },
    close() {
      unsubscribe();
      unReset();
    },
  };
}

export type PermissionCache = ReturnType<typeof createPermissionCache>;
