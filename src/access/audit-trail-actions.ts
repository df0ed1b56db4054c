import { checkAuditFilters, type RetentionService } from '../audit/index.ts';
import type { Clock } from '../platform/context.ts';
import type { CriticalActions, JsonValue } from './critical.ts';

/** The four-eyes key of shortening the audit retention (asked of access by the retention service). */
export const SHORTEN_RETENTION = 'audit.retention.shorten';

/**
 * The audit trail's critical actions: shortening its retention (what runs once approved) and exporting
 * it (approved, then used up by the download itself), with their gates.
 */
export function wireAuditTrailActions(
  critical: CriticalActions,
  deps: { retention: RetentionService; clock: Clock },
) {
  const { retention, clock } = deps;

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
    // Filters no export could run with are refused here (400), not put up for approval; on the export's
    // own clock, so no filters pass unapproved that the gate thought unrunnable but the export runs.
    checkAuditFilters(filters, clock.now());
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
}
