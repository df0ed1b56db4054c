import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { resealAlertSecret, resealSinkSecrets } from '../audit/index.ts';
import { resealOperatorSeeds, resealTenantSeeds, type TenantRef } from '../identity/index.ts';
import type { Config } from '../platform/config/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import { createSecretBox, deriveKeys, resolveRootKeys } from '../platform/crypto/keys.ts';
import { noneResealed, type ResealCount } from '../platform/crypto/reseal.ts';
import type { Database } from '../platform/db/index.ts';

export interface KeysCliDeps {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  clock: Clock;
  context: () => ActionContext;
  config: () => Config;
  /** Opens the database, lists every tenant, runs fn, closes. */
  withTenantsDb<T>(fn: (db: Database, tenants: TenantRef[]) => Promise<T>): Promise<T>;
}

/** The boxes the server seals with, built from SECRET_KEY and SECRET_KEY_PREVIOUS as app/services.ts does. */
export function sealingBoxes(config: Config) {
  const roots = resolveRootKeys(config.secretKey, config.secretKeyPrevious, config.dataDir);
  const box = (purpose: string) => createSecretBox(deriveKeys(roots, purpose));
  return {
    totp: box('totp'),
    operatorTotp: box('operator-totp'),
    sinks: box('audit-sinks'),
    alerts: box('audit-alerts'),
  };
}

const line = (what: string, c: ResealCount) =>
  `${what}: ${c.resealed} resealed, ${c.current} already under the current key, ${c.unreadable} opening under no configured key\n`;

/**
 * Every sealed value under the current key: each tenant's TOTP seeds and alert webhook secret in its
 * tenant-scoped transactions (RLS), then the platform's (operators' seeds, its alert secret, the SIEM
 * sinks, and the delivery queue, which only the system scope sees). `onTenant` reports progress.
 */
export async function rewrapAll(
  deps: { db: Database; clock: Clock },
  boxes: ReturnType<typeof sealingBoxes>,
  tenants: readonly TenantRef[],
  ctx: ActionContext,
  onTenant: () => void = () => {},
) {
  const seeds = noneResealed();
  const alerts = noneResealed();
  for (const tenant of tenants) {
    await resealTenantSeeds(deps, boxes.totp, tenant, ctx, seeds);
    await resealAlertSecret(deps, boxes.alerts, tenant.id, ctx, alerts);
    onTenant();
  }
  const operators = await resealOperatorSeeds(deps, boxes.operatorTotp, ctx);
  await resealAlertSecret(deps, boxes.alerts, null, ctx, alerts);
  const sinks = await resealSinkSecrets(deps, boxes.sinks, ctx);
  return { seeds, operators, alerts, sinks };
}

/**
 * `rampart keys rewrap`: after a SECRET_KEY rotation, seals every sealed value (TOTP seeds of users and
 * operators, SIEM sink and alert webhook secrets) under the current key, so the previous one can be
 * dropped from SECRET_KEY_PREVIOUS. Each tenant's rows in its own tenant-scoped transactions (RLS).
 */
export function registerKeyCommands(root: Command, deps: KeysCliDeps): void {
  root
    .command('keys')
    .description('SECRET_KEY rotation')
    .command('rewrap')
    .description(
      'seal every sealed value (TOTP seeds, webhook signing secrets) under the current SECRET_KEY; ' +
        'values that open under a key of SECRET_KEY_PREVIOUS are sealed anew, the rest are counted',
    )
    .action(async () => {
      const boxes = sealingBoxes(deps.config());
      const ctx = deps.context();
      const failed = await deps.withTenantsDb(async (db, tenants) => {
        const bar = new cliProgress.SingleBar(
          {
            stream: deps.err,
            format: 'tenants [{bar}] {value}/{total}',
            noTTYOutput: true,
            notTTYSchedule: 1000,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(tenants.length, 0);
        let counts: Awaited<ReturnType<typeof rewrapAll>>;
        try {
          counts = await rewrapAll({ db, clock: deps.clock }, boxes, tenants, ctx, () => bar.increment());
        } finally {
          bar.stop();
        }
        deps.out.write(line(`user TOTP seeds (${tenants.length} tenants)`, counts.seeds));
        deps.out.write(line('operator TOTP seeds', counts.operators));
        deps.out.write(line('alert webhook secrets', counts.alerts));
        deps.out.write(line('SIEM sink secrets', counts.sinks));
        return Object.values(counts).reduce((n, c) => n + c.unreadable, 0);
      });
      // Left as they are (a key that opens them may yet be added); the run fails so no one drops a key.
      if (failed > 0) {
        throw new Error(
          `${failed} sealed value(s) open under no configured key: add the key they were sealed under to SECRET_KEY_PREVIOUS and run again`,
        );
      }
    });
}
