import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { sql } from 'kysely';
import { Counter, Gauge } from 'prom-client';
import { type Clock, systemContext } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import type { AlertDelivery } from './alert-delivery.ts';
import { type AlertEngine, alertsRaisedByRule } from './alert-engine.ts';
import { CheckpointRefusedError, createCheckpoint } from './checkpoint.ts';
import type { Forwarder } from './forward.ts';
import { appendedEvents, recentlyAppendedChains, recordAuditEvent } from './record.ts';
import type { CheckpointSigner } from './signer.ts';
import type { SinkStatus } from './sink-store.ts';

export interface AuditJobDeps {
  db: Database;
  clock: Clock;
  signer: CheckpointSigner;
  checkpointEveryMs: number;
  /** Ids of every tenant (the audit capability does not read the tenants table itself). */
  tenantIds(): AsyncIterable<string>;
  forwarder: Forwarder;
  forwardEveryMs: number;
  /** How often each sink's backlog is held to its maximum (default 60 s). */
  sinkBacklogEveryMs?: number;
  /** Retention (prune.ts): prunes every chain and its acknowledged alerts by its retention; absent, nothing. */
  pruning?: {
    everyMs: number;
    run(): Promise<{ events: number; alerts: number; failures: { chain: string; error: Error }[] }>;
  };
  alerts: AlertEngine;
  alertDelivery: AlertDelivery;
  /** How often the rules read the chains this node appended to lately. */
  alertEveryMs: number;
  /** How often the rules read every chain (catches what another node appended and left unread). */
  alertSweepEveryMs: number;
}

/** Runs the anomaly rules over every chain: the platform's, then each tenant's. */
export async function evaluateAllChains(deps: Pick<AuditJobDeps, 'alerts' | 'tenantIds'>): Promise<number> {
  let raised = (await deps.alerts.evaluateChain(null)).length;
  for await (const id of deps.tenantIds()) raised += (await deps.alerts.evaluateChain(id)).length;
  return raised;
}

/**
 * Refusals already audited by this process (chain:seq:reason): one event per forged event or break, not
 * one per run. The reason is part of it: a head moved past a missing event, then that event written
 * with a bad MAC, are two findings at one position.
 */
const reportedRefusals = new Set<string>();

/**
 * Signs the head of every chain that moved since its last checkpoint. Safe on many nodes at once. A
 * chain with an event whose MAC does not match, or whose events since its last checkpoint do not lead to
 * its head, is not signed (CheckpointRefusedError): the refusal is audited once per event (or break) on
 * the platform chain (`audit.checkpoint.refused`, which raises a
 * `protect.incident` alert) and returned for the log; the other chains go on.
 */
export async function checkpointAllChains(
  deps: Pick<AuditJobDeps, 'db' | 'clock' | 'signer' | 'tenantIds'>,
): Promise<{ signed: number; refused: CheckpointRefusedError[] }> {
  let signed = 0;
  const refused: CheckpointRefusedError[] = [];
  const one = async (tenantId: string | null) => {
    try {
      if (await createCheckpoint(deps.db, deps.signer, deps.clock, tenantId)) signed += 1;
    } catch (error) {
      if (!(error instanceof CheckpointRefusedError)) throw error;
      refused.push(error);
      const key = `${error.chain}:${error.seq}:${error.reason}`;
      if (reportedRefusals.has(key)) return;
      await deps.db.withSystem((tx) =>
        recordAuditEvent(tx, deps.clock, systemContext('audit-checkpoint'), {
          tenantId: null,
          action: 'audit.checkpoint.refused',
          outcome: 'failure',
          target: { type: 'audit_chain', id: error.chain },
          details: { seq: error.seq, eventId: error.eventId, reason: error.reason },
        }),
      );
      if (reportedRefusals.size >= 10_000) reportedRefusals.clear();
      reportedRefusals.add(key);
    }
  };
  await one(null);
  for await (const id of deps.tenantIds()) await one(id);
  return { signed, refused };
}

/**
 * Periodic jobs of the audit trail, started when the server is ready and stopped before it closes.
 * A run that fails is logged and retried at the next tick; runs never overlap.
 */
export const auditJobsPlugin = fp(async (app: FastifyInstance, deps: AuditJobDeps) => {
  const timers: NodeJS.Timeout[] = [];
  const running = new Map<string, Promise<void>>();
  /** Runs job at most once at a time; a failure is logged and the next tick tries again. */
  const every = (name: string, ms: number, job: () => Promise<void>) => {
    const tick = () => {
      if (running.has(name)) return;
      running.set(
        name,
        job()
          .catch((error: unknown) => app.log.error({ err: error }, `audit ${name} failed`))
          .finally(() => running.delete(name)),
      );
    };
    app.addHook('onReady', async () => {
      const timer = setInterval(tick, ms);
      timer.unref();
      timers.push(timer);
    });
  };
  every('checkpoint', deps.checkpointEveryMs, async () => {
    const { signed, refused } = await checkpointAllChains(deps);
    if (signed > 0) app.log.info({ signed }, 'audit checkpoints signed');
    for (const r of refused) {
      app.log.error(
        { chain: r.chain, seq: r.seq, eventId: r.eventId, reason: r.reason, detail: r.message },
        'audit checkpoint refused: an event MAC does not match and no valid acknowledgement covers it, the events do not lead to the chain head, or the head row holds other constants than the signed checkpoints (audited; run rampart audit verify)',
      );
    }
  });
  every('forwarding', deps.forwardEveryMs, async () => {
    // Keep going while some sink used its whole share: a backlog drains without waiting for the next tick.
    for (;;) {
      const { more } = await deps.forwarder.deliverDue();
      if (!more) return;
    }
  });
  every('sink backlog', deps.sinkBacklogEveryMs ?? 60_000, async () => {
    for (const { sink, dropped } of await deps.forwarder.enforceBacklog()) {
      app.log.warn({ sink, dropped }, 'SIEM sink backlog at its maximum: oldest events dropped (audited)');
    }
  });
  const { pruning } = deps;
  if (pruning) {
    every('pruning', pruning.everyMs, async () => {
      const { events, alerts, failures } = await pruning.run();
      if (events > 0) app.log.info({ events }, 'audit events pruned (retention)');
      if (alerts > 0) app.log.info({ alerts }, 'acknowledged audit alerts pruned (retention)');
      for (const f of failures) app.log.error({ err: f.error, chain: f.chain }, 'audit chain not pruned');
    });
  }
  every('alerts', deps.alertEveryMs, async () => {
    for (const chain of recentlyAppendedChains()) await deps.alerts.evaluateChain(chain);
  });
  every('alert sweep', deps.alertSweepEveryMs, async () => {
    await evaluateAllChains(deps);
  });
  every('alert delivery', deps.alertEveryMs, async () => {
    for (;;) {
      const { delivered, failed, gaveUp, dropped } = await deps.alertDelivery.deliverDue();
      if (gaveUp > 0) app.log.warn({ gaveUp }, 'alert deliveries given up at their maximum age (audited)');
      if (dropped > 0) app.log.info({ dropped }, 'alert deliveries dropped: channel removed (audited)');
      if (delivered + failed + dropped < 50) return;
    }
  });
  registerMetrics(app, deps.db, deps.forwarder, deps.clock);
  app.addHook('onClose', async () => {
    for (const timer of timers) clearInterval(timer);
    await Promise.all(running.values());
  });
});

function registerMetrics(app: FastifyInstance, db: Database, forwarder: Forwarder, clock: Clock) {
  const registers = app.hasDecorator('metrics') ? [app.metrics] : [];
  new Counter({
    name: 'rampart_audit_events_appended_total',
    help: 'Audit events appended by this node (rate() gives events/s)',
    registers,
    collect() {
      this.reset();
      this.inc(appendedEvents());
    },
  });
  new Counter({
    name: 'rampart_audit_alerts_raised_total',
    help: 'Alerts raised by the anomaly rules on this node, by rule',
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const [rule, n] of alertsRaisedByRule()) this.inc({ rule }, n);
    },
  });
  const deliveries = (state: 'pending' | 'failed') =>
    db.withSystem(async (tx) => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_alert_deliveries
        WHERE failed_at IS ${state === 'pending' ? sql`NULL` : sql`NOT NULL`}`.execute(tx);
      return rows[0]?.n ?? 0;
    });
  new Gauge({
    name: 'rampart_audit_alert_deliveries_pending',
    help: 'Alert deliveries (webhook, email) waiting to be sent or retried',
    registers,
    async collect() {
      this.set(await deliveries('pending'));
    },
  });
  new Gauge({
    name: 'rampart_audit_alert_deliveries_failed',
    help: 'Alert deliveries given up at their maximum age (kept until their alert is pruned)',
    registers,
    async collect() {
      this.set(await deliveries('failed'));
    },
  });
  // Sinks still delivering (active and draining); each backlog counted up to the maximum + 1.
  const sinkGauge = (name: string, help: string, value: (s: SinkStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['sink'],
      registers,
      async collect() {
        this.reset();
        for (const s of await forwarder.statuses()) this.set({ sink: s.id }, value(s));
      },
    });
  sinkGauge(
    'rampart_audit_sink_lag_seconds',
    'Age of the oldest event not yet delivered to each SIEM sink (0 when none is pending)',
    (s) =>
      s.oldestPendingAt ? Math.max(0, clock.now().getTime() - Date.parse(s.oldestPendingAt)) / 1000 : 0,
  );
  sinkGauge(
    'rampart_audit_sink_pending',
    'Events waiting in the outbox for each SIEM sink (counted up to AUDIT_SINK_MAX_BACKLOG + 1)',
    (s) => s.pending,
  );
  sinkGauge(
    'rampart_audit_sink_failures',
    'Consecutive failed deliveries to each SIEM sink (0 when healthy; above 0 it is backed off and probed)',
    (s) => s.failures,
  );
  sinkGauge(
    'rampart_audit_sink_dropped_events',
    'Events dropped from each SIEM sink backlog at its maximum since the sink was added',
    (s) => s.dropped,
  );
}
