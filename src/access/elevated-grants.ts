import type { FastifyRequest } from 'fastify';
import type { IdentityService, UserRole } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { builtinRoles, isBuiltinRole } from './catalogue.ts';
import type { Classified, CriticalActions, JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import type { RoleService } from './roles.ts';
import type { Tx } from './tables.ts';

/**
 * Lasting access asked for by an operator under an elevation (security review: an elevated operator
 * could invite an address of their own as staff, grant roles or enable an account, and keep that access
 * after the elevation ended). Such a request is always four-eyes, whatever the tenant's list says, and
 * only a person of the tenant decides it: access that outlives the elevation is the tenant's to give.
 */
export const ELEVATED_GRANT = 'access.elevated-grant';
/** The gate on enabling a user (`config.fourEyes`, admin-grant-actions.ts): an elevated operator's enable, or one giving back administrator powers. */
export const ENABLE_GATE = 'identity.enable';
/** The four-eyes gate of resetting a user's second factor (admin-grant-actions.ts). */
export const MFA_RESET_GATE = 'identity.mfa-reset';
/** The four-eyes gate of lifting a user's password lock (admin-grant-actions.ts). */
export const UNLOCK_GATE = 'identity.unlock';

/** How lasting access is given: a role granted, permissions added to a role, a user invited or enabled. */
type ElevatedGrantParams =
  | { via: 'assign'; userId: string; role: string }
  | { via: 'role'; role: string; name: string; permissions: string[] }
  | { via: 'invite'; email: string; displayName: string; role: UserRole }
  | { via: 'enable'; userId: string };

/** What a change of a tenant's alert settings does, as audit's alert service found it on the locked row. */
export interface AlertSettingsChange {
  /** Where the alerts go (alert emails, the webhook) changes. */
  channels: boolean;
  /** What in the change weakens the watch (a rule off, a threshold raised, working hours widened). */
  weakened: string[];
}

/**
 * Audit's check of a change of a tenant's alert settings, run on its locked settings row. Refused to an
 * operator outright (no approval path runs it): where the alerts go, since a channel outlives the
 * elevation and carries alert contents (account and address keys), so the tenant's own people set it as
 * they decide lasting access; and any weakening, since the rules watch what the operator does
 * (`elevation.used`, privileged actions off hours). Tightening them an elevated operator may.
 */
export function refuseOperatorAlertChange(ctx: ActionContext, change: AlertSettingsChange): void {
  if (ctx.actor.type !== 'operator') return;
  if (change.channels) {
    throw accessError(
      'alert_channels_tenant_only',
      "Under an elevation you may tighten this tenant's alert rules, not change where its alerts go " +
        '(emails, webhook): a channel outlives the elevation. Ask an administrator of the tenant to set it.',
    );
  }
  if (change.weakened.length > 0) {
    throw accessError(
      'alert_weakening_tenant_only',
      `Under an elevation you may tighten this tenant's alert rules, not weaken them (${change.weakened.join('; ')}): ` +
        'they watch what you do. Ask an administrator of the tenant to change them.',
    );
  }
}

/**
 * Protect's check of a change to a tenant's network policy (admin address allowlist, CORS origins). An
 * operator (only under an elevation does one reach it) may not make one: an allowlist of the operator's
 * own address would shut the tenant's people out of administration, their revocation of that very
 * elevation included, and outlive it; an origin would let a site of the operator's choosing call the API.
 */
export function refuseOperatorNetworkPolicyChange(ctx: ActionContext): void {
  if (ctx.actor.type !== 'operator') return;
  throw accessError(
    'network_policy_tenant_only',
    "Under an elevation you may read this tenant's network policy, not change it: the address allowlist " +
      'and CORS origins outlive the elevation. Ask an administrator of the tenant to change them.',
  );
}

/**
 * Audit's check of acknowledging one of a tenant's alerts, run with the alert's row locked. An
 * `elevation.used` alert reports what operators did under elevations: an operator (only under an
 * elevation does one reach a tenant's alerts) does not mark it handled, the tenant's own people do, as
 * they decide the elevation. Other alerts an elevated operator may acknowledge.
 */
export function refuseOperatorAlertAcknowledgement(ctx: ActionContext, alert: { rule: string }): void {
  if (ctx.actor.type !== 'operator' || alert.rule !== 'elevation.used') return;
  throw accessError(
    'alert_acknowledgement_tenant_only',
    "Under an elevation you may not acknowledge this tenant's elevation.used alerts: they report what " +
      'operators did under elevations. Ask an administrator of the tenant to review and acknowledge it.',
  );
}

/**
 * The request as this action when an operator (under an elevation: the only way one reaches a tenant
 * route) sends it; none for a tenant user or the system. `what` is the approver's line.
 */
export function elevatedGrant(
  request: FastifyRequest,
  params: ElevatedGrantParams,
  what: string,
  /** The action's basis as the gate read it (a role change: the role its summary was written on). */
  seen?: JsonValue,
): Classified[] {
  const actor = request.actor;
  if (actor.type !== 'operator') return [];
  return [
    {
      action: ELEVATED_GRANT,
      params: params as unknown as JsonValue,
      summary:
        `${what}, asked by operator ${actor.id} under elevation ${actor.elevationId ?? '(none)'}: ` +
        'lasting access, which outlives the elevation',
      ...(seen === undefined ? {} : { seen }),
    },
  ];
}

/**
 * The state an approved grant or role change runs on (`basis`): the custom role as stored, locked (null
 * once it is gone); nothing for a built-in role, an invitation or an enable.
 */
export async function grantBasis(
  roles: RoleService,
  tx: Tx,
  p: { via: string; role?: string },
): Promise<JsonValue | undefined> {
  if (p.via === 'role' && p.role !== undefined) return roles.lockedState(tx, p.role);
  if (p.via !== 'assign') return undefined;
  const role = p.role ?? 'tenant-admin';
  return isBuiltinRole(role) ? undefined : roles.lockedState(tx, role, 'share');
}

/**
 * Whether a grant gives `userId` access, so that they may not approve it: the user of an assignment, an
 * enable, a second-factor reset or an unlock, and every holder of a role that a change widens (review: a holder
 * approved the administrator powers added to their own role).
 */
export async function grantBeneficiary(
  tx: Tx,
  p: { via: string; userId?: string; role?: string },
  userId: string,
): Promise<boolean> {
  if (p.via === 'assign' || p.via === 'enable' || p.via === 'mfa-reset' || p.via === 'unlock')
    return p.userId === userId;
  if (p.via !== 'role' || p.role === undefined) return false;
  const held = await tx
    .selectFrom('access_assignments')
    .select('user_id')
    .where('role_key', '=', p.role)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return held !== undefined;
}

export function wireElevatedGrants(
  critical: CriticalActions,
  deps: { identity: IdentityService; roles: RoleService },
) {
  const { identity, roles } = deps;

  critical.define({
    key: ELEVATED_GRANT,
    description:
      'Lasting access asked for by an operator under an elevation: inviting or enabling a user, granting a ' +
      'role, adding permissions to a role (decided by a person of the tenant)',
    onByDefault: true,
    scope: 'elevated',
    // Each path re-runs the checks of the direct route (nothing the runner lacks), with the guard.
    async execute({ tenant, ctx, params, guard }) {
      const p = params as ElevatedGrantParams;
      switch (p.via) {
        case 'assign':
          return roles.assign(tenant.id, ctx, p.userId, p.role, guard);
        case 'role':
          return roles.update(tenant.id, ctx, p.role, { name: p.name, permissions: p.permissions }, guard);
        case 'invite': {
          const permissions = builtinRoles[p.role].permissions();
          await roles.checkGrant(tenant.id, ctx, permissions, `Inviting as ${p.role}`);
          const input = { email: p.email, displayName: p.displayName, role: p.role };
          return identity.accounts.invite(tenant, ctx, input, guard);
        }
        case 'enable':
          return identity.userStatus.enable(tenant, ctx, p.userId, guard);
      }
    },
    // A role change writes the whole role, and a grant gives the role as it is when it runs: either runs
    // only on the role the approver saw (`grantBasis`).
    basis: (tx, _tenant, params) => grantBasis(roles, tx, params as ElevatedGrantParams),
    // A grant's or an enable's user, or a holder of the role a change widens, does not approve it.
    beneficiary: (tx, params, userId) => grantBeneficiary(tx, params as ElevatedGrantParams, userId),
  });
}
