import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Actor, Clock } from '../platform/context.ts';
import { asTenantId, type Database } from '../platform/db/index.ts';
import { routeConfig } from '../platform/http/route-config.ts';
import { recordAuditEvent } from './record.ts';

/**
 * Reads of data, counted so that `read.mass` can see one actor reading a lot. A read is an answered
 * (2xx) GET of a route that needs a permission: anything a caller reads about others, not `self` routes
 * (a user's own profile and sessions) nor public ones. Auditing every read would double the cost of
 * each; instead each node counts per chain and actor and writes the counts once a minute as one
 * `audit.reads.counted` event each, by the actor who read, with the count as its weight.
 */
export interface ReadCounter {
  count(tenantId: string | null, actor: Actor, route: string): void;
  /** Writes the counts so far to their trails (the plugin does this every minute and at close). */
  flush(): Promise<void>;
}

interface Tally {
  tenantId: string | null;
  actor: Actor;
  count: number;
  routes: Map<string, number>;
}

export function createReadCounter({
  db,
  clock,
  onError,
}: {
  db: Database;
  clock: Clock;
  onError: (error: unknown) => void;
}): ReadCounter {
  let tallies = new Map<string, Tally>();
  return {
    count(tenantId, actor, route) {
      const elevation = actor.type === 'operator' ? (actor.elevationId ?? '') : '';
      const key = `${tenantId ?? 'platform'} ${actor.type} ${actor.id ?? ''} ${elevation}`;
      let tally = tallies.get(key);
      if (!tally) {
        tally = { tenantId, actor, count: 0, routes: new Map() };
        tallies.set(key, tally);
      }
      tally.count += 1;
      tally.routes.set(route, (tally.routes.get(route) ?? 0) + 1);
    },
    async flush() {
      const taken = [...tallies.values()];
      tallies = new Map();
      for (const t of taken) {
        const [topRoute] = [...t.routes].reduce((a, b) => (b[1] > a[1] ? b : a));
        const ctx = { actor: t.actor, ip: null, userAgent: null, requestId: null };
        const event = {
          tenantId: t.tenantId,
          action: 'audit.reads.counted' as const,
          outcome: 'success' as const,
          details: { count: t.count, routes: t.routes.size, topRoute },
        };
        try {
          if (t.tenantId === null) await db.withSystem((tx) => recordAuditEvent(tx, clock, ctx, event));
          else await db.withTenant(asTenantId(t.tenantId), (tx) => recordAuditEvent(tx, clock, ctx, event));
        } catch (error) {
          onError(error);
        }
      }
    },
  };
}

/** Counts each request that reads data (see ReadCounter) and flushes the counts every `flushEveryMs`. */
export const readCountingPlugin = fp<{ reads: ReadCounter; flushEveryMs: number }>(
  async (app: FastifyInstance, { reads, flushEveryMs }) => {
    app.addHook('onResponse', (request, reply, done) => {
      const status = reply.statusCode;
      if (status < 200 || status > 299 || (request.method !== 'GET' && request.method !== 'HEAD'))
        return done();
      const { permission, url } = routeConfig(request);
      if (permission === undefined || permission === 'self' || request.actor.type === 'anonymous')
        return done();
      const tenant = (request as { tenant?: { id: string } | null }).tenant;
      reads.count(tenant?.id ?? null, request.actor, url ?? request.url);
      done();
    });
    const timer = setInterval(() => void reads.flush(), flushEveryMs);
    timer.unref();
    app.addHook('onClose', async () => {
      clearInterval(timer);
      await reads.flush();
    });
  },
  { name: 'rampart-audit-reads', dependencies: ['rampart-access'] },
);
