import { rolePermissions } from './cache.ts';
import { builtinRoles, isBuiltinRole } from './catalogue.ts';
import type { AccessSettings } from './settings.ts';
import type { Tx } from './tables.ts';

/** A pending elevation request waits for its decision as long as the tenant's four-eyes requests do, at most a day. */
export const PENDING_MAX_MINUTES = 1440;
export const pendingMinutes = (settings: AccessSettings) =>
  Math.min(settings.approvalTtlMinutes, PENDING_MAX_MINUTES);

/**
 * A role's own entry in a thresholds map; undefined when it has none. Own keys only (security review: a
 * custom role named `constructor` read Object.prototype's, and its threshold was NaN).
 */
export const ownThreshold = (thresholds: Record<string, number>, roleKey: string) =>
  Object.hasOwn(thresholds, roleKey) ? thresholds[roleKey] : undefined;

/** Approvals a role's elevation needs under these settings (1 to 5). */
export const thresholdFor = (settings: AccessSettings, roleKey: string) =>
  Math.min(5, Math.max(1, ownThreshold(settings.elevationThresholds, roleKey) ?? 1));

/**
 * Approvals a pending request needs under these settings: the higher of the number recorded on it and its
 * role's threshold now (a threshold raised since the request applies; one lowered since does not).
 */
export const approvalsNeededNow = (
  row: { approvals_needed: number; role_key: string },
  settings: AccessSettings,
) => Math.max(row.approvals_needed, thresholdFor(settings, row.role_key));

/** The permissions a role gives in the transaction's tenant now, or null when there is no such role. */
export async function currentRolePermissions(tx: Tx, roleKey: string): Promise<string[] | null> {
  if (isBuiltinRole(roleKey)) return builtinRoles[roleKey].permissions();
  const row = await tx
    .selectFrom('access_roles')
    .select('permissions')
    .where('key', '=', roleKey)
    .executeTakeFirst();
  return row ? rolePermissions(roleKey, row.permissions) : null;
}

export function samePermissions(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === new Set(b).size && b.every((p) => set.has(p));
}
