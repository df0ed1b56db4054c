import type { ActionContext, Clock } from '../platform/context.ts';
import type { AnyTenantTx, Database } from '../platform/db/index.ts';
import { type ReadCap, spendSearchReads } from './read-cap.ts';
import { recordAuditEvent } from './record.ts';
import {
  checkFilters,
  conditions,
  decodeCursor,
  type EventView,
  encodeCursor,
  type Position,
  type SearchInput,
  searchPage,
  timeRange,
  toView,
} from './search.ts';
import { inChain } from './store.ts';
import { auditVolume, type VolumeInput } from './volume.ts';

export interface AuditServiceDeps {
  db: Database;
  clock: Clock;
  /** The search read cap (read-cap.ts); none: searches are not capped (tools, tests). */
  readCap?: ReadCap;
}

const EXPORT_PAGE = 1000;

/** The filters as `name=value` words, for the audit event of a search or an export. */
const describeFilters = (input: SearchInput): string =>
  Object.entries(input)
    .filter(([k, v]) => v !== undefined && k !== 'cursor' && k !== 'limit')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')
    .slice(0, 2000);

const rangeDetails = (range: { from: Date; to: Date }) => ({
  from: range.from.toISOString(),
  to: range.to.toISOString(),
});

/** Search and export of one chain's events: a tenant's (RLS-scoped) or the platform's. */
export function createAuditService({ db, clock, readCap }: AuditServiceDeps) {
  return {
    /** Events per hour or day of one chain, by outcome (volume.ts): counts only, no event is read out. */
    volume: (tenantId: string | null, input: VolumeInput) => auditVolume(db, tenantId, input, clock.now()),

    /** Refuses (400) filters no search or export could run with, on the clock they would run by. */
    checkFilters: (input: SearchInput) => checkFilters(input, clock.now()),

    /**
     * One page of a chain's events. An operator searching a tenant's trail (only possible under an
     * approved elevation) is audited one by one, in the search's own transaction: the read counts of
     * other reads are kept in memory for a minute and a crash would lose them. A person's pages count
     * against the search read cap (read-cap.ts) where the tenant's exports need a second approver.
     */
    async search(
      tenantId: string | null,
      input: SearchInput & { limit: number; cursor?: string },
      ctx?: ActionContext,
    ) {
      const after = decodeCursor(input.cursor);
      const range = timeRange(input, clock.now());
      const where = conditions(tenantId, input, range);
      const page = await inChain(db, tenantId, async (tx) => {
        // Decided first: Access's settings are read (FOR SHARE) before the operator's event below takes
        // the chain head, the order every writer takes them in (settings, then the head).
        const cap =
          tenantId !== null &&
          ctx &&
          readCap &&
          readCap.eventsPerDay > 0 &&
          (await readCap.applies(tx as AnyTenantTx))
            ? readCap.eventsPerDay
            : 0;
        if (tenantId !== null && ctx?.actor.type === 'operator') {
          await recordAuditEvent(tx, clock, ctx, {
            tenantId,
            action: 'audit.trail.searched',
            outcome: 'success',
            details: { filters: describeFilters(input), ...rangeDetails(range) },
          });
        }
        const found = await searchPage(tx, where, after, input.limit);
        if (cap > 0 && tenantId !== null && ctx) {
          await spendSearchReads(tx as AnyTenantTx, cap, clock, tenantId, ctx, found.events.length);
        }
        return found;
      });
      return {
        items: page.events.map(toView),
        nextCursor: page.more && page.last ? encodeCursor(page.last) : null,
      };
    },

    /**
     * Every event matching the filters, newest first, page by page (one short transaction each, so a
     * slow reader holds no snapshot open). The export itself is audited before the first line.
     */
    async exportEvents(
      tenantId: string | null,
      ctx: ActionContext,
      input: SearchInput,
    ): Promise<AsyncGenerator<EventView>> {
      const range = timeRange(input, clock.now());
      const where = conditions(tenantId, input, range);
      await inChain(db, tenantId, (tx) =>
        recordAuditEvent(tx, clock, ctx, {
          tenantId,
          action: 'audit.trail.exported',
          outcome: 'success',
          details: { filters: describeFilters(input), ...rangeDetails(range) },
        }),
      );
      return (async function* () {
        let after: Position | null = null;
        for (;;) {
          const page = await inChain(db, tenantId, (tx) => searchPage(tx, where, after, EXPORT_PAGE));
          for (const event of page.events) yield toView(event);
          if (!page.more || !page.last) return;
          after = page.last;
        }
      })();
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
