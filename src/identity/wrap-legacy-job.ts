import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Gauge } from 'prom-client';
import { systemContext } from '../platform/context.ts';
import type { IdentityDeps, TenantRef } from './deps.ts';
import { countFastHashes, type WrapCursor, wrapFastHashes } from './wrap-legacy.ts';

export interface WrapJobDeps {
  identity: Pick<IdentityDeps, 'db' | 'clock' | 'hasher'>;
  /** Every tenant, suspended ones too: a hash at rest is exposed whatever the tenant's status. */
  tenants(): AsyncIterable<TenantRef>;
  everyMs: number;
  /** Rows hashed per tenant per run: one transaction and one audit event each. Default 20. */
  rowsPerTenant?: number;
  /** Hashing time one tick may use, all tenants together. Default 5 s. */
  tickBudgetMs?: number;
}

export interface SweepResult {
  wrapped: number;
  /** Fast hashes left after the sweep, all tenants together. */
  remaining: number;
}

/**
 * The hasher is free for background work: nothing waits and a slot is free. Sign-ins always go first:
 * the job only asks for a slot none of them wants, one hash at a time.
 */
export function hasherIdle(hasher: IdentityDeps['hasher']): boolean {
  const s = hasher.stats();
  return s.queued === 0 && s.active < s.maxConcurrent;
}

/**
 * One sweep of the background job: for each tenant, one small run of `wrapFastHashes` at low priority,
 * going on from where the previous sweep left that tenant (`cursors`, kept by the caller).
 */
export async function wrapFastHashesEverywhere(
  deps: WrapJobDeps,
  cursors: Map<string, WrapCursor> = new Map(),
): Promise<SweepResult> {
  const started = performance.now();
  const budget = deps.tickBudgetMs ?? 5000;
  const shouldStop = () => !hasherIdle(deps.identity.hasher) || performance.now() - started > budget;
  const ctx = systemContext('identity-wrap-legacy-hashes');
  const result: SweepResult = { wrapped: 0, remaining: 0 };
  for await (const tenant of deps.tenants()) {
    if (shouldStop()) {
      // Not looked at this time: counted as it stands, so the gauge does not drop to zero.
      result.remaining += await countFastHashes(deps.identity, tenant);
      continue;
    }
    const run = await wrapFastHashes(deps.identity, tenant, ctx, {
      limit: deps.rowsPerTenant ?? 20,
      cursor: cursors.get(tenant.id) ?? null,
      shouldStop,
    });
    if (run.cursor === null) cursors.delete(tenant.id);
    else cursors.set(tenant.id, run.cursor);
    result.wrapped += run.wrapped;
    // An empty read found nothing left (the partial index makes that a cheap probe); else count.
    if (run.read > 0 || cursors.has(tenant.id))
      result.remaining += await countFastHashes(deps.identity, tenant);
  }
  return result;
}

/**
 * Wraps fast legacy hashes in the background (docs/identity.md): every `everyMs`, a sweep over all
 * tenants at low priority. Several nodes may run it at once: compare-and-set keeps every write right,
 * at worst a hash is computed twice. Runs never overlap; a failure is logged and the next tick retries.
 */
export const wrapLegacyHashesJob = fp(async (app: FastifyInstance, deps: WrapJobDeps) => {
  const cursors = new Map<string, WrapCursor>();
  let running: Promise<void> | null = null;
  let remaining: number | null = null;
  const tick = () => {
    if (running) return;
    running = wrapFastHashesEverywhere(deps, cursors)
      .then((sweep) => {
        remaining = sweep.remaining;
        if (sweep.wrapped > 0) app.log.info(sweep, 'legacy password hashes wrapped in argon2id');
      })
      .catch((error: unknown) => app.log.error({ err: error }, 'wrapping legacy password hashes failed'))
      .finally(() => {
        running = null;
      });
  };
  let timer: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    timer = setInterval(tick, deps.everyMs);
    timer.unref();
  });
  app.addHook('onClose', async () => {
    clearInterval(timer);
    await running;
  });
  new Gauge({
    name: 'rampart_identity_fast_password_hashes',
    help: 'Password hashes (users and history) still in a fast legacy format, as of the last sweep of the wrapping job (-1 before the first)',
    registers: app.hasDecorator('metrics') ? [app.metrics] : [],
    collect() {
      this.set(remaining ?? -1);
    },
  });
});
