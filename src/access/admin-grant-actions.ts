import type { IdentityService, UserRole } from '../identity/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { adminPowersIn, builtinRoles } from './catalogue.ts';
import type { CriticalActions } from './critical.ts';
import {
  ENABLE_GATE,
  elevatedGrant,
  grantBasis,
  grantBeneficiary,
  MFA_RESET_GATE,
  UNLOCK_GATE,
} from './elevated-grants.ts';
import type { RoleService } from './roles.ts';

/**
 * How administrator powers are granted: assigning a role that gives one (`role` absent in requests
 * recorded before custom roles counted: tenant-admin), inviting as tenant-admin, adding one to a
 * custom role someone holds (the whole new role, as PUT would write it), enabling again a disabled
 * user whose roles give one, resetting the second factor of a user whose roles give one (whoever
 * holds their password then enrols a factor of their own: a takeover of those powers), or lifting the
 * password lock of such a user (each unlock is `threshold` more guesses at the password of those powers).
 */
type GrantParams =
  | { via: 'assign'; userId: string; role?: string }
  | { via: 'invite'; email: string; displayName: string; role: UserRole }
  | { via: 'role'; role: string; name: string; permissions: string[] }
  | { via: 'enable'; userId: string }
  | { via: 'mfa-reset'; userId: string }
  | { via: 'unlock'; userId: string };

/**
 * Granting administrator powers (`access.grant-tenant-admin`): what runs once it is approved, and the
 * gates that ask for it (assigning a role, changing a custom role, inviting, enabling a disabled user).
 * An elevated operator's grant is asked for as `access.elevated-grant` first (elevated-grants.ts).
 */
export function wireAdminGrantActions(
  critical: CriticalActions,
  deps: { identity: IdentityService; roles: RoleService },
) {
  const { identity, roles } = deps;

  critical.define({
    key: 'access.grant-tenant-admin',
    description: 'Grant tenant-admin, or a role with administrator powers',
    onByDefault: true,
    // Each path re-runs the checks of the direct route: not to oneself, nothing the runner lacks.
    async execute({ tenant, ctx, params, guard }) {
      const p = params as GrantParams;
      if (p.via === 'assign') return roles.assign(tenant.id, ctx, p.userId, p.role ?? 'tenant-admin', guard);
      if (p.via === 'role') {
        return roles.update(tenant.id, ctx, p.role, { name: p.name, permissions: p.permissions }, guard);
      }
      if (p.via === 'enable') return identity.userStatus.enable(tenant, ctx, p.userId, guard);
      if (p.via === 'mfa-reset') return identity.mfa.reset(tenant, ctx, p.userId, guard);
      if (p.via === 'unlock') return identity.accounts.unlock(tenant, ctx, p.userId, guard);
      await roles.checkGrant(tenant.id, ctx, builtinRoles[p.role].permissions(), `Inviting as ${p.role}`);
      return identity.accounts.invite(
        tenant,
        ctx,
        { email: p.email, displayName: p.displayName, role: p.role },
        guard,
      );
    },
    // A role change writes the whole role, and a grant gives the role as it is when it runs: either runs
    // only on the role the approver saw (security review: a custom role widened, or deleted and created
    // again with more, after its grant was approved, gave the more). Built-in roles are fixed.
    basis: (tx, _tenant, params) => grantBasis(roles, tx, params as GrantParams),
    // A grant's or an enable's user, or a holder of the role a change widens, does not approve it.
    beneficiary: (tx, params, userId) => grantBeneficiary(tx, params as GrantParams, userId),
  });

  // Any role that gives an administrator power, built in or custom. A grant the route would refuse (to
  // oneself, beyond the caller's own permissions, an unknown role) is refused here, never put up for
  // approval.
  critical.gate('access.assign', async (request, tenant) => {
    const { userId, role } = request.params as { userId: string; role: string };
    const plan = await roles.planAssignment(tenant.id, actionContext(request), userId, role);
    const { permissions } = plan;
    // The role as the summary names it: the approved grant runs only while the role is still that.
    const seen = plan.state === undefined ? {} : { seen: plan.state };
    const byOperator = elevatedGrant(
      request,
      { via: 'assign', userId, role },
      `Grant the role ${role} (${permissions.join(', ') || 'no permissions'}) to user ${userId}`,
      plan.state,
    );
    if (byOperator.length > 0) return byOperator;
    const powers = adminPowersIn(permissions);
    if (powers.length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'assign', userId, role },
        summary:
          role === 'tenant-admin'
            ? `Grant tenant-admin to user ${userId}`
            : `Grant the role ${role} (administrator powers: ${powers.join(', ')}) to user ${userId}`,
        ...seen,
      },
    ];
  });

  // Adding an administrator power to a custom role someone holds grants it to them all.
  critical.gate('access.role', async (request, tenant) => {
    const { role } = request.params as { role: string };
    const body = request.body as { name: string; permissions: string[] };
    const plan = await roles.planUpdate(tenant.id, actionContext(request), role, body);
    if (!plan) return [];
    // An operator adding any permission: whoever holds the role (or is given it later) keeps it.
    if (plan.added.length > 0) {
      const params = { via: 'role' as const, role, name: body.name, permissions: plan.permissions };
      const byOperator = elevatedGrant(
        request,
        params,
        `Add ${plan.added.join(', ')} to the role ${role}`,
        plan.state,
      );
      if (byOperator.length > 0) return byOperator;
    }
    if (!plan.held) return [];
    const powers = adminPowersIn(plan.added);
    if (powers.length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'role', role, name: body.name, permissions: plan.permissions },
        summary: `Add administrator powers (${powers.join(', ')}) to the role ${role}, which is held`,
        seen: plan.state,
      },
    ];
  });

  critical.gate('identity.invite', async (request, tenant) => {
    const body = request.body as { email: string; displayName: string; role: UserRole };
    const permissions = builtinRoles[body.role].permissions();
    await roles.checkGrant(tenant.id, actionContext(request), permissions, `Inviting as ${body.role}`);
    const byOperator = elevatedGrant(
      request,
      { via: 'invite', email: body.email, displayName: body.displayName, role: body.role },
      `Invite ${body.email} as ${body.role}`,
    );
    if (byOperator.length > 0) return byOperator;
    if (adminPowersIn(permissions).length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'invite', email: body.email, displayName: body.displayName, role: body.role },
        summary: `Invite ${body.email} as tenant-admin`,
      },
    ];
  });

  // Enabling a disabled user gives back what their roles give: administrator powers among them are a
  // grant (security review: users:write alone re-enabled a disabled tenant-admin), and an elevated
  // operator's enable is lasting access (elevated-grants.ts). An unknown user, or one not disabled, is
  // the route's to refuse (404, 409), not something to approve.
  critical.gate(ENABLE_GATE, async (request, tenant) => {
    const { id } = request.params as { id: string };
    const user = await identity.accounts.get(tenant, id);
    if (user.status !== 'disabled') return [];
    const byOperator = elevatedGrant(
      request,
      { via: 'enable', userId: id },
      `Enable the disabled user ${user.email}`,
    );
    if (byOperator.length > 0) return byOperator;
    const powers = await roles.adminPowersOf(tenant.id, id);
    if (powers.length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'enable', userId: id },
        summary: `Enable user ${id} again, whose roles give administrator powers (${powers.join(', ')})`,
      },
    ];
  });

  // Resetting the second factor of a user whose roles give administrator powers hands those powers to
  // whoever holds the user's password (they enrol next): a second person approves it, as an enable
  // (review). Oneself, an unknown user or one without an authenticator are the route's to refuse.
  critical.gate(MFA_RESET_GATE, async (request, tenant) => {
    const { id } = request.params as { id: string };
    const ctx = actionContext(request);
    if (ctx.actor.type === 'user' && ctx.actor.id === id) return [];
    const user = await identity.accounts.get(tenant, id);
    const powers = await roles.adminPowersOf(tenant.id, id);
    if (powers.length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'mfa-reset', userId: id },
        summary:
          `Reset the second factor of ${user.email}, whose roles give administrator powers ` +
          `(${powers.join(', ')}): whoever holds their password enrols a new one`,
      },
    ];
  });

  // Lifting the password lock of a user whose roles give administrator powers: the lock is what stands
  // between whoever guesses that password and the powers (review: a users:write helpdesk role unlocked a
  // tenant-admin after every 5 guesses, even in the lockout mode "until an administrator unlocks"). A
  // second person approves it; the locked user may not. An unknown user is the route's to refuse.
  critical.gate(UNLOCK_GATE, async (request, tenant) => {
    const { id } = request.params as { id: string };
    const user = await identity.accounts.get(tenant, id);
    const powers = await roles.adminPowersOf(tenant.id, id);
    if (powers.length === 0) return [];
    return [
      {
        action: 'access.grant-tenant-admin',
        params: { via: 'unlock', userId: id },
        summary:
          `Lift the password lock of ${user.email}, whose roles give administrator powers ` +
          `(${powers.join(', ')})`,
      },
    ];
  });
}
