import { X509Certificate } from 'node:crypto';
import {
  type AcknowledgeInput,
  type AlertService,
  type AlertSettingsView,
  auditableUrl,
  type ForgeryService,
  oneCertificatePem,
  type SinkInput,
  type SinkService,
  shownSettings,
  shownUrl,
} from '../audit/index.ts';
import type { OperatorAdmin } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { CriticalActions, JsonValue, PlatformGuard } from './critical.ts';

/** The platform four-eyes key of connecting a SIEM sink (adding one; any later change of where one sends). */
export const CONNECT_SINK = 'audit.sink.connect';
/** The gate on the sink routes (`config.fourEyes`). */
export const SINKS_GATE = 'audit.sinks';
/** Bringing back an operator the platform removed (their own sign-in, anew: a person who can approve). */
export const ENABLE_OPERATOR = 'identity.operator.enable';
export const OPERATORS_GATE = 'identity.operators';
/** Lifting an operator's sign-in lock (their password and code count together: the lock guards the code). */
export const UNLOCK_OPERATOR = 'identity.operator.unlock';
export const OPERATOR_UNLOCK_GATE = 'identity.operator-unlock';
/** Weakening the platform's anomaly alerting (rules, working hours, where alerts go). */
export const WEAKEN_PLATFORM_ALERTS = 'audit.platform-alerts.weaken';
export const ALERT_SETTINGS_GATE = 'audit.alert-settings';
/** Acknowledging a forged audit event, so the checkpoint job signs its chain over it again. */
export const ACKNOWLEDGE_FORGERY = 'audit.forgery.acknowledge';
/** The gate on the chain routes (`config.fourEyes`). */
export const CHAINS_GATE = 'audit.chains';

/** What an acknowledgement is asked and run with: the chain (a tenant's id, or platform) and the body. */
interface ForgeryParams {
  chain: string;
  seq: number;
  eventId: string;
  eventHash: string;
  reason: string;
}

const forgeryInput = ({ chain, ...named }: ForgeryParams): AcknowledgeInput => ({
  tenantId: chain === 'platform' ? null : chain,
  ...named,
});

/**
 * What approvers see of a private CA: its subject and SHA-256 fingerprint (the PEM is in the params).
 * The whole of what is trusted: a caPem that is not exactly one certificate was refused (400) first.
 */
function caLine(caPem: string): string {
  const cert = new X509Certificate(oneCertificatePem(caPem));
  return `, trusting the private CA "${cert.subject.replaceAll('\n', ', ')}" (SHA-256 ${cert.fingerprint256})`;
}

/**
 * The platform's critical actions (operators' changes of platform state; docs/access.md, "Four-eyes for
 * platform actions"): always approved by a second operator, never on a tenant's list.
 */
export function wirePlatformActions(
  critical: CriticalActions,
  deps: { sinks: SinkService; operators: OperatorAdmin; alerts: AlertService; forgeries: ForgeryService },
) {
  const { sinks, operators, alerts, forgeries } = deps;

  // One operator could mute the platform's alerts or send them elsewhere: a second one approves.
  critical.define({
    key: WEAKEN_PLATFORM_ALERTS,
    description:
      "Weaken the platform's anomaly alerting: a rule off, a threshold raised, working hours widened, or " +
      'any change of where alerts go',
    onByDefault: true,
    scope: 'platform',
    // The new webhook's signing secret (when the URL changes) is made when the approved request runs and
    // given to the requester only, as for sinks.
    executePlatform: async ({ ctx, params, guard, approvalId, approvedBy }) =>
      (await alerts.updateSettings(null, ctx, params as unknown as AlertSettingsView, {
        guard,
        approvalId,
        approvedBy,
      })) as unknown as Record<string, JsonValue>,
    // Other operators see the webhook URL without its query (an intake's key may be there).
    shownParams: (params) => shownSettings(params as unknown as AlertSettingsView) as unknown as JsonValue,
    // A whole document is written back: it runs only on the settings the approver saw.
    platformBasis: async (tx) => (await alerts.lockedPlatform(tx)) as unknown as JsonValue,
  });
  // Strengthening (or no change) passes alone; input no change could run with is refused (400) first.
  critical.platformGate(ALERT_SETTINGS_GATE, async (request) => {
    const { next, current, weakened } = await alerts.planPlatformUpdate(request.body as AlertSettingsView);
    if (weakened.length === 0) return [];
    return [
      {
        action: WEAKEN_PLATFORM_ALERTS,
        params: next as unknown as JsonValue,
        summary: `Weaken the platform's alerting: ${weakened.join('; ')}`,
        // The basis the summary was written on: a change committed before the request is recorded is not
        // undone unnamed by its approved run (the request is refused, state_changed).
        seen: current as unknown as JsonValue,
      },
    ];
  });

  /** A change of one operator's status (params `{ operatorId }`), asked for on its route's gate. */
  const operatorAction = (spec: {
    key: string;
    gate: string;
    description: string;
    /** The operator it is for, refused (404/409) before anything is asked for. */
    plan: (operatorId: string) => Promise<{ email: string }>;
    run: (ctx: ActionContext, operatorId: string, guard: PlatformGuard) => Promise<unknown>;
    summary: (email: string) => string;
  }) => {
    critical.define({
      key: spec.key,
      description: spec.description,
      onByDefault: true,
      scope: 'platform',
      executePlatform: async ({ ctx, params, guard }) =>
        (await spec.run(ctx, (params as { operatorId: string }).operatorId, guard)) as Record<
          string,
          JsonValue
        >,
    });
    critical.platformGate(spec.gate, async (request) => {
      const { id } = request.params as { id: string };
      const target = await spec.plan(id);
      return [{ action: spec.key, params: { operatorId: id }, summary: spec.summary(target.email) }];
    });
  };

  // An enabled operator can approve: enabling an account one controls alone would make one person two.
  // Unknown or not disabled is refused first.
  operatorAction({
    key: ENABLE_OPERATOR,
    gate: OPERATORS_GATE,
    description: 'Enable a disabled operator (who may then approve platform actions and elevations)',
    plan: (id) => operators.planEnable(id),
    run: (ctx, id, guard) => operators.enable(ctx, id, guard),
    summary: (email) => `Enable the disabled operator ${email}`,
  });
  // Password and code count together: unlocks without a second person would give whoever holds an
  // operator's password more codes each time. An unknown operator is refused first.
  operatorAction({
    key: UNLOCK_OPERATOR,
    gate: OPERATOR_UNLOCK_GATE,
    description:
      "Lift an operator's sign-in lock (wrong passwords and wrong codes count together: whoever holds the " +
      'password gets more codes)',
    plan: (id) => operators.planUnlock(id),
    run: (ctx, id, guard) => operators.unlock(ctx, id, guard),
    summary: (email) => `Lift the sign-in lock of the operator ${email}`,
  });

  critical.define({
    key: CONNECT_SINK,
    description:
      "Connect a SIEM sink: it receives every tenant's audit events (adding one, or changing where one " +
      'sends or what it trusts)',
    onByDefault: true,
    scope: 'platform',
    // The recorded parameters are what the operator sent (kind, URL, CA): nothing secret. The webhook
    // signing secret is made when the approved request runs and given to the requester only.
    executePlatform: async ({ ctx, params, guard, approvalId, approvedBy }) =>
      (await sinks.create(ctx, params as unknown as SinkInput, {
        guard,
        approvalId,
        approvedBy,
      })) as unknown as Record<string, JsonValue>,
    // Other operators see the URL without its query (an intake's key may be there); the requester runs
    // it with the URL as asked, which the parameter hash pins.
    shownParams: (params) => ({
      ...(params as Record<string, JsonValue>),
      url: shownUrl((params as unknown as SinkInput).url),
    }),
  });

  // Input no sink could be added with is refused (400 bad_sink) before anything is asked for.
  critical.platformGate(SINKS_GATE, async (request) => {
    const input = request.body as SinkInput;
    const url = sinks.check(input);
    return [
      {
        action: CONNECT_SINK,
        params: input as unknown as JsonValue,
        summary:
          `Add a ${input.kind} SIEM sink sending every tenant's audit events to ${auditableUrl(url)}` +
          (input.caPem === undefined ? '' : caLine(input.caPem)),
      },
    ];
  });

  // Once acknowledged, the checkpoint job signs over a forged event: one person with database access
  // and an operator account could forge a row and then vouch for it alone.
  critical.define({
    key: ACKNOWLEDGE_FORGERY,
    description:
      'Acknowledge a forged audit event (bad or missing MAC) after investigating it: the checkpoint job ' +
      'signs its chain over it again',
    onByDefault: true,
    scope: 'platform',
    executePlatform: async ({ ctx, params, guard, approvalId, approvedBy }) =>
      (await forgeries.acknowledge(ctx, forgeryInput(params as unknown as ForgeryParams), {
        guard,
        approvalId,
        approvedBy,
      })) as unknown as Record<string, JsonValue>,
  });

  // An acknowledgement that could not run (no such event, another one, not forged, a broken chain,
  // already acknowledged, a bad reason) is refused (4xx) before anything is asked for.
  critical.platformGate(CHAINS_GATE, async (request) => {
    const { chain } = request.params as { chain: string };
    const params: ForgeryParams = { chain, ...(request.body as Omit<ForgeryParams, 'chain'>) };
    const label = await forgeries.check(forgeryInput(params));
    return [
      {
        action: ACKNOWLEDGE_FORGERY,
        params: params as unknown as JsonValue,
        summary:
          `Acknowledge the forged event at seq ${params.seq} of audit chain ${label} (event ` +
          `${params.eventId}, hash ${params.eventHash}), so the checkpoint job signs that chain over it ` +
          `again. Reason: ${params.reason}`,
      },
    ];
  });
}
