import type { IdentityService, IdentitySettingsView, TenantRef, WeakenedPart } from '../identity/index.ts';
import { weakenedParts } from '../identity/index.ts';
import type { Classified, CriticalActions, JsonValue } from './critical.ts';
import {
  type AccessSettings,
  type AccessSettingsService,
  loadAccessSettings,
  REDUCE_FOUR_EYES,
  reductionSummary,
  weakenedApprovals,
} from './settings.ts';
import type { Tx } from './tables.ts';

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
 * Weakening a tenant's settings: its identity settings (`identity.password-policy.weaken`,
 * `identity.mfa-enforcement.weaken`) and its access settings (`access.four-eyes.reduce`): what runs once
 * approved, and the gates that ask for them.
 */
export function wireSettingsActions(
  critical: CriticalActions,
  deps: { identity: IdentityService; settings: AccessSettingsService },
) {
  const { identity, settings } = deps;

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
