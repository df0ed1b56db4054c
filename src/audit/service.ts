import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { recordAuditEvent } from './record.ts';
import {
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

export interface AuditServiceDeps {
  db: Database;
  clock: Clock;
}

const EXPORT_PAGE = 1000;

/** Search and export of one chain's events: a tenant's (RLS-scoped) or the platform's. */
export function createAuditService({ db, clock }: AuditServiceDeps) {
  return {
    async search(tenantId: string | null, input: SearchInput & { limit: number; cursor?: string }) {
      const after = decodeCursor(input.cursor);
      const where = conditions(tenantId, input, timeRange(input, clock.now()));
      const page = await inChain(db, tenantId, (tx) => searchPage(tx, where, after, input.limit));
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
      const filters = Object.entries(input)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')
        .slice(0, 2000);
      await inChain(db, tenantId, (tx) =>
        recordAuditEvent(tx, clock, ctx, {
          tenantId,
          action: 'audit.trail.exported',
          outcome: 'success',
          details: { filters, from: range.from.toISOString(), to: range.to.toISOString() },
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
