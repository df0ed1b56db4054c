import type { Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { acknowledge, claimRows, claimSinks, type DueSink } from './outbox.ts';
import { enforceBacklog } from './sink-backlog.ts';
import { releaseSink } from './sink-health.ts';
import { DEFAULT_MAX_BACKLOG, sinkStatuses, stopDrainedSinks } from './sink-store.ts';
import { createSinkTransport, type SendHttp } from './sink-transport.ts';
import type { SendSyslog } from './syslog.ts';
import type { AuditTables } from './tables.ts';

type Tx = SystemTx<AuditTables>;

export interface ForwarderDeps {
  db: Database;
  clock: Clock;
  box: SecretBox;
  send: SendHttp;
  /** Delivery to syslog sinks (syslog.ts); without it, syslog rows wait (and are retried). */
  sendSyslog?: SendSyslog;
  /** IANA private enterprise number of the syslog SD-ID (default: RFC 5612's documentation number). */
  syslogEnterpriseNumber?: number;
  /** Rows claimed per pass over all due sinks; each sink gets an equal share of it (its quota). */
  batch?: number;
  /** How long a claimed sink and its rows are reserved for this node before another may retry them. */
  leaseMs?: number;
  /** Undelivered events a sink may hold (AUDIT_SINK_MAX_BACKLOG); beyond it the oldest are dropped. */
  maxBacklog?: number;
  onDelivered?: (lagMs: number) => void;
}

/**
 * Delivers queued events, sink by sink. A pass leases every due sink that has due rows (a sink is due
 * unless it is backing off after a failure, or another node holds it), gives each an equal share of the
 * batch, and runs the sinks side by side: each claims its own rows oldest first, sends them and records
 * its own outcome, so a slow or dead sink delays the others at most until the end of the pass. A sink
 * that failed is backed off as a whole (5 s doubling to an hour, forever) and then probed with one
 * event; when the probe is acknowledged its backlog flows again in the same pass. Claims commit at once
 * (no transaction is open during network calls) and a node that dies mid-way only delays delivery.
 * The pieces: outbox.ts (lease, claim, acknowledge), sink-health.ts (backoff, recovery),
 * sink-transport.ts (webhook and syslog sends), sink-backlog.ts (the backlog bound).
 */
export function createForwarder(deps: ForwarderDeps) {
  const batch = deps.batch ?? 100;
  const leaseMs = deps.leaseMs ?? 60_000;
  const maxBacklog = deps.maxBacklog ?? DEFAULT_MAX_BACKLOG;
  const transport = createSinkTransport(deps);

  /** One sink's share of a pass; a probe that succeeds lets the backlog flow at once. */
  async function sinkPass(sink: DueSink, quota: number, now: Date) {
    let delivered = 0;
    let failed = 0;
    let probe = sink.failures > 0;
    for (;;) {
      const limit = probe ? 1 : quota;
      const rows = await claimRows(deps.db, sink, limit, now, leaseMs);
      if (rows.length === 0) {
        // Nothing (more) due, or another node took it: give the sink back (still backing off if it was).
        await deps.db.withSystem((tx: Tx) => releaseSink(tx, sink.id, now));
        return { delivered, failed, full: false };
      }
      const outcomes = await transport.send(sink, rows, now);
      const failedNow = await acknowledge(deps, sink, outcomes, now);
      delivered += rows.length - failedNow;
      failed += failedNow;
      if (probe && failedNow === 0) {
        probe = false;
        continue;
      }
      return { delivered, failed, full: failedNow === 0 && rows.length === limit };
    }
  }

  return {
    /**
     * One pass: lease the due sinks, deliver each one's share side by side, record each outcome, stop
     * sinks that finished draining. `more`: some sink used its whole share (a backlog to go on with).
     */
    async deliverDue(): Promise<{ delivered: number; failed: number; more: boolean }> {
      const now = deps.clock.now();
      const sinks = await claimSinks(deps.db, now, leaseMs);
      const quota = Math.max(1, Math.ceil(batch / Math.max(1, sinks.length)));
      const settled = await Promise.allSettled(sinks.map((sink) => sinkPass(sink, quota, now)));
      await deps.db.withSystem((tx: Tx) => stopDrainedSinks(tx, deps.clock));
      let delivered = 0;
      let failed = 0;
      let more = false;
      for (const result of settled) {
        if (result.status === 'rejected') throw result.reason;
        delivered += result.value.delivered;
        failed += result.value.failed;
        more ||= result.value.full;
      }
      return { delivered, failed, more };
    },

    /** Holds each sink's backlog to `maxBacklog` (sink-backlog.ts); returns the sinks that dropped events. */
    enforceBacklog: () => enforceBacklog({ db: deps.db, clock: deps.clock, maxBacklog }),

    /** Sinks still delivering, with their bounded backlog (metrics). */
    statuses: () => deps.db.withSystem((tx: Tx) => sinkStatuses(tx, maxBacklog + 1)),
  };
}

export type Forwarder = ReturnType<typeof createForwarder>;
