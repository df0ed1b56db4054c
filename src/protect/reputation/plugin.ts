import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { protectError } from '../errors.ts';
import type { Protection } from '../protection.ts';
import { listName } from './lists.ts';

/**
 * Health probes are answered whatever the caller's address: a load balancer or orchestrator that is
 * refused takes the node out of service, and the answers carry no data.
 */
const probes = new Set(['/healthz', '/readyz']);

/**
 * Refuses requests from addresses on the configured block lists, first thing (before rate limits,
 * parsing or authentication). Counted per list; sampled into the audit trail.
 */
export const blockListPlugin = fp<{ protection: Protection }>(
  async (app: FastifyInstance, { protection }) => {
    const blocked = new Counter({
      name: 'rampart_ip_blocked_total',
      help: 'Requests refused because the client address is on a block list, by list',
      labelNames: ['list'],
      registers: [app.metrics],
    });
    new Gauge({
      name: 'rampart_ip_blocklist_ranges',
      help: 'Address ranges loaded per block list (after merging)',
      labelNames: ['list'],
      registers: [app.metrics],
      collect() {
        for (const state of protection.blockLists.state())
          this.set({ list: listName(state.source) }, state.ranges);
      },
    });
    new Gauge({
      name: 'rampart_ip_blocklist_never_matching',
      help: 'Entries per block list wholly outside global unicast (bogons), which no client address matches',
      labelNames: ['list'],
      registers: [app.metrics],
      collect() {
        for (const state of protection.blockLists.state())
          this.set({ list: listName(state.source) }, state.neverMatching);
      },
    });
    app.addHook('onRequest', async (request) => {
      if (probes.has(request.routeOptions.url ?? '')) return;
      const list = protection.blockLists.match(request.ip);
      if (!list) return;
      blocked.inc({ list: listName(list) });
      protection.recordBlocked(request.ip, list);
      // This runs before the access hook names the caller; the error path expects an actor.
      request.actor ??= { type: 'anonymous', id: null };
      throw protectError(
        'address_blocked',
        'Requests from your address are refused: it is on a block list. If this is wrong, contact the operator of this service.',
      );
    });
  },
  { name: 'rampart-block-lists', dependencies: ['rampart-metrics'] },
);
