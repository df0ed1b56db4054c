import { checkAuditFilters, type RetentionService } from '../audit/index.ts';
import type {
  IdentityService,
  IdentitySettingsView,
  TenantRef,
  UserRole,
  WeakenedPart,
} from '../identity/index.ts';
import { weakenedParts } from '../identity/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { adminPowersIn, builtinRoles } from './catalogue.ts';
import type { Classified, CriticalActions, JsonValue } from './critical.ts';
import { ENABLE_GATE, elevatedGrant } from './elevated-grants.ts';
import type { RoleService } from './roles.ts';
import {
  type AccessSettings,
  type AccessSettingsService,
  loadAccessSettings,
  REDUCE_FOUR_EYES,
  reductionSummary,
  weakenedApprovals,
} from './settings.ts';
import type { Tx } from './tables.ts';

/**
 * How administrator powers are granted: assigning a role that gives one (`role` absent in requests
 * recorded before custom roles counted: tenant-admin), inviting as tenant-admin, adding one to a
 * custom role someone holds (the whole new role, as PUT would write it), or enabling again a disabled
 * user whose roles give one.
 */
type GrantParams =
  | { via: 'assign'; userId: string; role?: string }
  | { via: 'invite'; email: string; displayName: string; role: UserRole }
  | { via: 'role'; role: string; name: string; permissions: string[] }
  | { via: 'enable'; userId: string };

const mfaRank = { off: 0, staff: 1, all: 2 } as const;

/** Each weakened part of the identity settings as approvers read it in the request's summary. */
const weakening: Record<WeakenedPart, (c: IdentitySettingsView, n: IdentitySettingsView) => string> = {
  passwordPolicy: () => 'the password policy',
  lockout: (c, n) =>
    `the lockout (${c.lockout.threshold} ${c.lockout.mode} → ${n.lockout.threshold} ${n.lockout.mode})`,
  selfSignup: () => 'sign-up (self sign-up turned on)',
  sessionIdle: (c, n) =>
    `the idle session limit (${c.session.idleMinutes} → ${n.session.idleMinutes} minutes)`,
  sessionAbsolute: (c, n) =>
    `the absolute session limit (${c.session.absoluteHours} → ${n.session.absoluteHours} hours)`,
};

/**
 * The four-eyes actions of changing the identity settings from `current` to `next`, with the line
 * approvers read: asked by the route's gate before the write, and again by the write (identity's
 * `settingsChangeToApprove`) against the settings as it locked them.
 *
 * One PUT is one approval: it is asked for as the first of its actions the tenant lists, and the approved
 * run writes the whole document, every weakening in it. So each action carries the same summary, naming
 * every weakened part and, when there are two, both actions: the approver reads all that the run will do.
 * (Review: a PUT weakening the password policy and lowering 2FA enforcement was asked for as the first
 * action only, and its summary named only the password policy; the approved run lowered 2FA too.)
 */
export function identitySettingsChanges(
  current: IdentitySettingsView,
  next: IdentitySettingsView,
): Classified[] {
  const changes: { action: string; line: string }[] = [];
  const weakened = weakenedParts(current, next);
  if (weakened.length > 0) {
    changes.push({
      action: 'identity.password-policy.weaken',
      line: `Weaken ${weakened.map((part) => weakening[part](current, next)).join(', ')}`,
    });
  }
  if (mfaRank[next.mfaRequired] < mfaRank[current.mfaRequired]) {
    changes.push({
      action: 'identity.mfa-enforcement.weaken',
      line: `Lower 2FA enforcement from ${current.mfaRequired} to ${next.mfaRequired}`,
    });
  }
  const actions = changes.map((c) => c.action);
  const summary =
    changes.length > 1
      ? `${changes.map((c) => c.line).join('; ')} (one change, covering ${actions.join(' and ')})`
      : (changes[0]?.line ?? '');
  const params = next as unknown as JsonValue;
  return actions.map((action) => ({ action, params, summary }));
}

/**
 * The critical actions that exist today, with the routes that perform them: granting tenant-admin
 * (role assignment or invitation), weakening the password policy (lockout, self sign-up and session
 * limits included), lowering 2FA enforcement, taking
 * actions off the four-eyes list, shortening audit retention and exporting the audit trail. Each runs through the same service call as the direct route.
 */
/** The four-eyes key of shortening the audit retention (asked of access by the retention service). */
export const SHORTEN_RETENTION = 'audit.retention.shorten';

export function wireCriticalActions(
  critical: CriticalActions,
  deps: {
    identity: IdentityService;
    roles: RoleService;
    settings: AccessSettingsService;
    retention: RetentionService;
  },
) {
  const { identity, roles, settings, retention } = deps;

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
      await roles.checkGrant(tenant.id, ctx, builtinRoles[p.role].permissions(), `Inviting as ${p.role}`);
      return identity.accounts.invite(
        tenant,
        ctx,
        { email: p.email, displayName: p.displayName, role: p.role },
        guard,
      );
    },
    // A role change writes the whole role: it runs only on the role the approver saw.
    basis: async (tx, _tenant, params) => {
      const p = params as GrantParams;
      return p.via === 'role' ? roles.lockedState(tx, p.role) : undefined;
    },
  });
  // The settings actions write back a whole document: each runs only on the document it was asked on.
  const identitySettings = async (tx: Tx, tenant: TenantRef) =>
    (await identity.settings.lockedIn(tx, tenant)) as unknown as JsonValue;
  critical.define({
    key: 'identity.password-policy.weaken',
    description: 'Weaken the password policy, lockout, sign-up or session limits',
    onByDefault: true,
    execute: ({ tenant, ctx, params, guard }) =>
      identity.settings.update(tenant, ctx, params as unknown as IdentitySettingsView, guard),
    basis: identitySettings,
    lockStateFirst: true,
  });
  critical.define({
    key: 'identity.mfa-enforcement.weaken',
    description: 'Turn off or lower 2FA enforcement',
    onByDefault: true,
    execute: ({ tenant, ctx, params, guard }) =>
      identity.settings.update(tenant, ctx, params as unknown as IdentitySettingsView, guard),
    basis: identitySettings,
    lockStateFirst: true,
  });
  critical.define({
    key: REDUCE_FOUR_EYES,
    description: 'Take critical actions off the four-eyes list, or weaken elevation approval',
    onByDefault: true,
    execute: ({ tenant, ctx, params, guard }) =>
      settings.update(tenant.id, ctx, params as unknown as AccessSettings, guard),
    basis: async (tx) => (await loadAccessSettings(tx, critical, true)) as unknown as JsonValue,
  });

  critical.define({
    key: SHORTEN_RETENTION,
    description: 'Shorten how long the audit trail is kept (older events are pruned sooner)',
    onByDefault: true,
    execute: ({ tenant, ctx, params, guard }) =>
      retention.set(tenant.id, ctx, (params as { days: number }).days, { approved: true, guard }),
    basis: async (tx, tenant) => ({ days: (await retention.lockedIn(tx, tenant.id)).days }),
  });

  critical.define({
    key: 'audit.export',
    description: 'Exporting the audit trail',
    onByDefault: true,
    // A download: nothing to execute later. The approved request is used up by the download itself.
    runsOn: {
      ask: 'ask with POST /api/v1/t/{tenant}/audit/export-requests and the same filters as a JSON body',
      run: 'download with GET /api/v1/t/{tenant}/audit/export?approval={request id} and the same filters',
    },
  });

  // The export's filters, from the request for approval (a JSON body) or from the download (the query,
  // less the approval it names): both validated by the same schema, so equal filters hash equally.
  critical.gate('audit.export', async (request) => {
    const source = (request.method === 'POST' ? request.body : request.query) as Record<string, JsonValue>;
    const { approval: _approval, ...filters } = source ?? {};
    // Filters no export could run with are the route's to refuse (400), not something to approve.
    try {
      checkAuditFilters(filters, new Date());
    } catch {
      return [];
    }
    const shown = Object.entries(filters)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    return [
      {
        action: 'audit.export',
        params: filters,
        summary: `Export the audit trail${shown ? ` (${shown})` : ' (everything in the default range)'}`,
      },
    ];
  });

  // A first look: a lengthening that commits after it makes this PUT a shortening, which the write
  // itself then refuses unapproved (retention.set decides again on the locked row).
  critical.gate('audit.retention', async (request, tenant) => {
    const { days } = request.body as { days: number };
    const current = await retention.get(tenant.id);
    if (days >= current.days) return [];
    return [
      {
        action: 'audit.retention.shorten',
        params: { days },
        summary: `Shorten audit retention from ${current.days} to ${days} days`,
        seen: { days: current.days },
      },
    ];
  });

  // Any role that gives an administrator power, built in or custom. A grant the route would refuse (to
  // oneself, beyond the caller's own permissions, an unknown role) is refused here, never put up for
  // approval.
  critical.gate('access.assign', async (request, tenant) => {
    const { userId, role } = request.params as { userId: string; role: string };
    const permissions = await roles.planAssignment(tenant.id, actionContext(request), userId, role);
    const byOperator = elevatedGrant(
      request,
      { via: 'assign', userId, role },
      `Grant the role ${role} (${permissions.join(', ') || 'no permissions'}) to user ${userId}`,
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

  // A first look: a change that commits after it can make this PUT a weakening, which the write itself
  // then refuses unapproved (identity decides again on the locked row, with identitySettingsChanges).
  critical.gate('identity.settings', async (request, tenant) => {
    const next = request.body as IdentitySettingsView;
    // Inconsistent input is the handler's to refuse (422), not something to approve.
    if (next.passwordPolicy.minLength > next.passwordPolicy.maxLength) return [];
    const current = await identity.settings.get(tenant);
    const seen = current as unknown as JsonValue;
    return identitySettingsChanges(current, next).map((found) => ({ ...found, seen }));
  });

  // A first look: a change that commits after it can make this PUT a weakening, which the write itself
  // then refuses unapproved (settings.update decides again on the locked row, with weakenedApprovals).
  critical.gate('access.settings', async (request, tenant) => {
    const next = request.body as AccessSettings;
    const current = await settings.get(tenant.id);
    const weakened = weakenedApprovals(current, next);
    if (weakened.length === 0) return [];
    return [
      {
        action: REDUCE_FOUR_EYES,
        params: next as unknown as JsonValue,
        summary: reductionSummary(weakened),
        seen: current as unknown as JsonValue,
      },
    ];
  });
}
