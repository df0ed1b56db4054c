import type { Kysely } from 'kysely';
import type { InvalidationBus } from '../platform/bus/index.ts';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { createApprovalService } from './approvals.ts';
import { type CacheLimits, createPermissionCache, type UserDisabled } from './cache.ts';
import { permissionDef } from './catalogue.ts';
import { createCriticalActions, definePlannedActions } from './critical.ts';
import { createElevationService } from './elevations.ts';
import { createHoldings } from './holdings.ts';
import { createLockedHoldings } from './locked-holdings.ts';
import { createPlatformApprovalService } from './platform-approvals.ts';
import { createRoleService, type LockActiveTenantAdmins, type LockUsers } from './roles.ts';
import { createAccessSettingsService } from './settings.ts';
import type { AccessTables } from './tables.ts';

export interface AccessDeps {
  db: Database;
  clock: Clock;
  bus: InvalidationBus;
  /** Longest elevation an operator may ask for (ELEVATION_MAX_MINUTES). */
  elevationMaxMinutes: number;
  /** Identity's answer to "does this user exist in this tenant" (access never reads identity's tables). */
  userExists: (tenantId: string, userId: string) => Promise<boolean>;
  /**
   * Identity's lock on the tenant's active tenant-admins, taken before tenant-admin is removed from anyone
   * (a tenant is never left without an active administrator).
   */
  lockActiveTenantAdmins: LockActiveTenantAdmins;
  /** Identity's lock on these users' rows, taken before their assignments are deleted (see roles.ts). */
  lockUsers: LockUsers;
  /** Identity's answer to "is this user disabled" (a disabled user holds no permission); absent means never. */
  userDisabled?: UserDisabled;
  /**
   * Identity's answer to "is this operator still active", read in the caller's transaction (tenant-scoped
   * or platform) and locked until it commits: the re-checks of a platform approval's approver and of an
   * elevation's earlier operator approvers. Absent: no platform action can run, and elevation approvers
   * are taken as active.
   */
  operatorActive?: <DB>(tx: Kysely<DB>, operatorId: string) => Promise<boolean>;
  /** Tenancy's answer to "is this tenant active" (synchronous when cached); absent means always. */
  tenantActive?: (tenantId: string) => boolean | Promise<boolean>;
  /** A publish that failed after its change committed (logged; the change stands). */
  onBackgroundError?: (error: unknown) => void;
  /** Bounds of the permission cache (tests use small ones). */
  cacheLimits?: CacheLimits;
}

export interface DecisionCheck {
  tenantId: string;
  userId: string;
  permission: string;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function createAccessService(deps: AccessDeps) {
  const { db, clock, bus, operatorActive } = deps;
  const cache = createPermissionCache(
    db,
    clock,
    bus,
    deps.onBackgroundError ?? (() => {}),
    deps.userDisabled,
    deps.cacheLimits,
  );
  const critical = createCriticalActions();
  definePlannedActions(critical);
  // A suspended tenant's users hold nothing (the decision API must not say yes for them).
  const tenantActive = deps.tenantActive ?? (() => true);
  const holdings = createHoldings(cache, clock, tenantActive);
  // The same answer read in a caller's transaction with its rows locked: for checks that must still hold
  // when what they allow commits (an approver's standing).
  const lockedHoldings = createLockedHoldings(
    clock,
    deps.userDisabled ?? (async () => false),
    (tx, id) => operatorActive?.<AccessTables>(tx, id) ?? Promise.resolve(true),
  );
  const roles = createRoleService({
    db,
    clock,
    cache,
    userExists: deps.userExists,
    holdings,
    lockActiveTenantAdmins: deps.lockActiveTenantAdmins,
    lockUsers: deps.lockUsers,
    // Late-bound: the approval service is built below, and only a request calls this.
    adminGrantGated: async (tx) =>
      (await approvals.requiredIn(tx, [
        { action: 'access.grant-tenant-admin', params: null, summary: '' },
      ])) !== undefined,
  });

  /**
   * Whether a tenant user holds a tenant permission. Deny by default: unknown permissions, platform
   * permissions, malformed ids and users without a role are all "no". A cached answer is returned
   * synchronously (the hot path); a miss loads the user's roles once.
   */
  function decide(tenantId: string, userId: string, permission: string): boolean | Promise<boolean> {
    const cached = cache.peekUser(tenantId, userId);
    if (cached) return cached.has(permission) && tenantActive(tenantId);
    if (permissionDef(permission)?.scope !== 'tenant' || !uuid.test(tenantId) || !uuid.test(userId))
      return false;
    // The tenant first: made-up or suspended tenants must not load permissions or make cache entries.
    const active = tenantActive(tenantId);
    if (typeof active === 'boolean') return active && holds(tenantId, userId, permission);
    return active.then((yes) => yes && holds(tenantId, userId, permission));
  }

  function holds(tenantId: string, userId: string, permission: string): boolean | Promise<boolean> {
    const permissions = cache.userPermissions(tenantId, userId);
    return permissions instanceof Promise
      ? permissions.then((p) => p.has(permission))
      : permissions.has(permission);
  }

  /** A batch in order; identical checks in it are decided once. */
  function decideAll(checks: readonly DecisionCheck[]): (boolean | Promise<boolean>)[] {
    if (checks.length < 2) return checks.map((c) => decide(c.tenantId, c.userId, c.permission));
    const answers = new Map<string, boolean | Promise<boolean>>();
    return checks.map((c) => {
      const key = `${c.tenantId} ${c.userId} ${c.permission}`;
      let answer = answers.get(key);
      if (answer === undefined) {
        answer = decide(c.tenantId, c.userId, c.permission);
        answers.set(key, answer);
      }
      return answer;
    });
  }

  const approvals = createApprovalService({ db, clock, critical, lockedHoldings });
  return {
    cache,
    critical,
    roles,
    decide,
    decideAll,
    settings: createAccessSettingsService({ db, clock, critical }),
    approvals,
    platformApprovals: createPlatformApprovalService({
      db,
      clock,
      critical,
      operatorActive: (tx, id) => operatorActive?.(tx as Kysely<AccessTables>, id) ?? Promise.resolve(false),
    }),
    elevations: createElevationService({
      db,
      clock,
      cache,
      critical,
      lockedHoldings,
      operatorActive: (tx, id) => operatorActive?.<AccessTables>(tx, id) ?? Promise.resolve(true),
      userDisabled: deps.userDisabled ?? (async () => false),
      maxMinutes: deps.elevationMaxMinutes,
    }),
    close: () => cache.close(),
  };
}

export type AccessService = ReturnType<typeof createAccessService>;
