import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import type { CheckpointSigner } from './signer.ts';
import { createCheckpoint } from './store.ts';

export interface AuditJobDeps {
  db: Database;
  clock: Clock;
  signer: CheckpointSigner;
  checkpointEveryMs: number;
  /** Ids of every tenant (the audit capability does not read the tenants table itself). */
  tenantIds(): AsyncIterable<string>;
}

/** Signs the head of every chain that moved since its last checkpoint. Safe on many nodes at once. */
export async function checkpointAllChains(deps: Omit<AuditJobDeps, 'checkpointEveryMs'>): Promise<number> {
  let signed = 0;
  if (await createCheckpoint(deps.db, deps.signer, deps.clock, null)) signed += 1;
  for await (const id of deps.tenantIds()) {
    if (await createCheckpoint(deps.db, deps.signer, deps.clock, id)) signed += 1;
  }
  return signed;
}

/**
 * Periodic jobs of the audit trail, started when the server is ready and stopped before it closes.
 * A run that fails is logged and retried at the next tick; runs never overlap.
 */
export const auditJobsPlugin = fp(async (app: FastifyInstance, deps: AuditJobDeps) => {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= checkpointAllChains(deps)
      .then((signed) => {
        if (signed > 0) app.log.info({ signed }, 'audit checkpoints signed');
      })
      .catch((error: unknown) => app.log.error({ err: error }, 'audit checkpoint run failed'))
      .finally(() => {
        running = null;
      });
  };
  app.addHook('onReady', async () => {
    timer = setInterval(tick, deps.checkpointEveryMs);
    timer.unref();
  });
  app.addHook('onClose', async () => {
    if (timer) clearInterval(timer);
    await running;
  });
});
