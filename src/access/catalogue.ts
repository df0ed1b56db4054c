/**
 * The permission catalogue: every permission a route or a decision may name, defined in code by the
 * capability that owns what it protects. A name is `object:verb`. Tenant permissions are granted through
 * roles in a tenant; platform permissions belong to operators and never reach tenant data.
 */
export interface PermissionDef {
  name: string;
  scope: 'tenant' | 'platform';
  capability: string;
  description: string;
}

const catalogue = new Map<string, PermissionDef>();

/** Adds a capability's permissions to the catalogue (called at module load by each capability below). */
export function definePermissions(
  capability: string,
  scope: PermissionDef['scope'],
  entries: Record<string, string>,
): void {
  for (const [name, description] of Object.entries(entries)) {
    if (!/^[a-z][a-z-]*:[a-z][a-z-]*$/.test(name)) throw new Error(`permission "${name}" is not object:verb`);
    if (catalogue.has(name)) throw new Error(`permission "${name}" is defined twice`);
    catalogue.set(name, { name, scope, capability, description });
  }
}

definePermissions('identity', 'tenant', {
  'users:read': 'List and read user accounts',
  'users:write': 'Invite users, unlock accounts and end their sessions',
  'policy:write': 'Change the password policy, lockout, 2FA enforcement and session limits',
});
definePermissions('identity', 'platform', {
  'operators:read': 'List operators: status, second factor, lockout, live credentials and when last used',
  'operators:write': 'Disable and enable operators, revoke their credentials and clear their lockout',
});
definePermissions('access', 'tenant', {
  'roles:read': 'Read roles, role assignments and the access settings',
  'roles:write': 'Create, change and delete custom roles',
  'roles:assign': 'Grant and remove roles of users',
  'access:configure': 'Change the access settings (four-eyes list, elevation approval rules)',
  'approvals:request': 'See and run, once approved, the critical actions one asked for',
  'approvals:decide': 'Approve or reject critical actions requested by someone else',
  'elevations:decide': "Approve, reject or revoke operators' elevation requests for this tenant",
});
definePermissions('audit', 'tenant', {
  'audit:read': 'Read the audit trail',
  'audit:export': 'Export the audit trail',
  'audit:configure': 'Change how long the audit trail is kept (retention; shortening it is critical)',
  'alerts:read': "Read the tenant's alerts and its anomaly rule settings",
  'alerts:write': 'Acknowledge alerts; change anomaly rule thresholds, working hours and alert channels',
});
definePermissions('audit', 'platform', {
  'platform-audit:read': 'Search and export the platform audit trail (no tenant events)',
  'audit-sinks:write':
    "Ask to add SIEM sinks (they receive every tenant's audit events: a second operator approves) and disable them (a disabled one drains first)",
  'audit-chains:write':
    'Ask to acknowledge a forged audit event after investigating it, so its chain is signed again (a second operator approves)',
  'platform-alerts:read': "Read the platform's alerts and anomaly rule settings",
  'platform-alerts:write': "Acknowledge platform alerts; change the platform's rules and alert channels",
});
definePermissions('tenancy', 'platform', {
  'tenants:read': 'List and read tenants',
  'tenants:write': 'Create, rename, suspend and reactivate tenants',
  'tenants:invite-admin': "Invite a tenant's administrator (grants the operator nothing)",
});
definePermissions('mail', 'platform', { 'outbox:read': 'Read the development mail outbox' });
definePermissions('protect', 'platform', {
  'waf-events:write': "Report an upstream WAF's blocked requests (its integration's token)",
});
definePermissions('access', 'platform', {
  'decisions:check': 'Ask the decision API whether users hold permissions',
  'elevations:request': 'Ask for time-boxed access to a tenant',
  'elevations:approve': "Approve, reject or revoke other operators' elevation requests",
  'platform-approvals:request': 'See and run, once approved, the platform critical actions one asked for',
  'platform-approvals:decide':
    "Approve or reject other operators' platform critical actions (adding a SIEM sink, enabling an operator, weakening the platform's alerting, acknowledging a forged audit event)",
});

/**
 * Administrator powers: the tenant permissions that let their holder change who holds what (roles,
 * assignments, operators' elevations) or weaken the tenant's controls (the four-eyes list and its
 * approvals, the password and 2FA policy, audit retention, anomaly alerts). Granting a role that gives
 * any of them, or adding one to a role someone holds, is the critical action `access.grant-tenant-admin`.
 * `users:write` is not one: inviting as tenant-admin is gated by itself, and enabling a user gives back
 * only what they held.
 */
export const adminPowers: readonly string[] = [
  'roles:assign',
  'roles:write',
  'elevations:decide',
  'access:configure',
  'approvals:decide',
  'policy:write',
  'audit:configure',
  'alerts:write',
];
for (const name of adminPowers) {
  if (catalogue.get(name)?.scope !== 'tenant')
    throw new Error(`administrator power "${name}" is not a tenant permission`);
}

/** The administrator powers among these permissions (sorted, no repeats). */
export const adminPowersIn = (permissions: Iterable<string>): string[] => {
  const given = new Set(permissions);
  return adminPowers.filter((p) => given.has(p)).sort();
};

export const isKnownPermission = (name: string): boolean => catalogue.has(name);
export const permissionDef = (name: string): PermissionDef | undefined => catalogue.get(name);
export const allPermissions = (): PermissionDef[] => [...catalogue.values()];
export const tenantPermissions = (): string[] =>
  allPermissions()
    .filter((p) => p.scope === 'tenant')
    .map((p) => p.name);
export const platformPermissions = (): string[] =>
  allPermissions()
    .filter((p) => p.scope === 'platform')
    .map((p) => p.name);

/** Built-in roles of every tenant. Their permissions are defined here, so they follow the catalogue. */
export const builtinRoles = {
  'tenant-admin': {
    name: 'Tenant administrator',
    permissions: () => tenantPermissions(),
  },
  staff: {
    name: 'Staff',
    permissions: () => ['users:read', 'roles:read', 'audit:read'],
  },
  member: { name: 'Member', permissions: (): string[] => [] },
} as const;

export type BuiltinRole = keyof typeof builtinRoles;
export const isBuiltinRole = (key: string): key is BuiltinRole => Object.hasOwn(builtinRoles, key);
