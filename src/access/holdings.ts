import type { Clock } from '../platform/context.ts';
import type { PermissionCache } from './cache.ts';
import { tenantPermissions } from './catalogue.ts';

/** Who a check is about: an audit actor, or a person recorded on an approval request. */
export interface Holder {
  type: string;
  id: string | null;
}

/**
 * The tenant permissions someone holds now, for checks beyond a route's own permission (what they may
 * grant, whether their approval still counts), answered as the access hook would answer each one:
 * - a user: their roles (nothing while disabled, nothing in a suspended tenant);
 * - an operator: the roles of their active, unexpired elevations in the tenant (the hook lets them use
 *   any of those, so they may grant what any of them gives);
 * - the system (the CLI, jobs): every tenant permission; it acts for the platform and has no roles;
 * - anyone else: nothing.
 */
export function createHoldings(
  cache: PermissionCache,
  clock: Clock,
  tenantActive: (tenantId: string) => boolean | Promise<boolean>,
) {
  return async (tenantId: string, who: Holder): Promise<ReadonlySet<string>> => {
    if (who.type === 'system') return new Set(tenantPermissions());
    if (who.id === null || !(await tenantActive(tenantId))) return new Set();
    if (who.type === 'user') return cache.userPermissions(tenantId, who.id);
    if (who.type !== 'operator') return new Set();
    const now = clock.now().getTime();
    const grants = await cache.operatorGrants(tenantId, who.id);
    return new Set(grants.filter((g) => g.expiresAt > now).flatMap((g) => [...g.permissions]));
  };
}

export type Holdings = ReturnType<typeof createHoldings>;
