import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.ts';
import { configureAuditMac, readRetentionDefaults } from './audit/index.ts';
import { createOperatorService } from './identity/index.ts';
import type { Config } from './platform/config/index.ts';
import { systemClock } from './platform/context.ts';
import { resolveRootKey } from './platform/crypto/keys.ts';
import { ensurePrivateDataDir } from './platform/data-dir.ts';
import type { Database } from './platform/db/index.ts';
import { createProtection } from './protect/index.ts';
import { openBreachedScreen, openConfiguredBus, openConfiguredDatabase } from './runtime.ts';

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  stop(): Promise<void>;
}

/** Opens the database, bootstraps the first operator, listens, and shuts down gracefully on signals. */
export async function startServer(
  config: Config,
  out: NodeJS.WritableStream = process.stdout,
): Promise<RunningServer> {
  // Before the first audit event (the bootstrap's): every event carries a MAC under the root key's.
  configureAuditMac(resolveRootKey(config.secretKey, config.dataDir));
  const db = await openConfiguredDatabase(config);
  const issued = await buildFirstOperator(config, db);
  let log: ((error: unknown) => void) | null = null;
  const bus = await openConfiguredBus(config, (error) => log?.(error)).catch(async (error: unknown) => {
    await db.close();
    throw error;
  });
  // Built before the app so the breached-password range client goes through the audited outbound guard.
  const protection = createProtection({ config, db, clock: systemClock });
  const breached = await openBreachedScreen(config, protection.outbound);
  const app = await buildApp({ config, db, bus, breached, protection });
  log = (error) => app.log.warn({ err: error }, 'invalidation bus connection problem');
  await warnOnRetentionDefaults(config, db, app).catch((error: unknown) =>
    app.log.warn({ err: error }, 'could not read the audit retention defaults'),
  );
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      // close() stops accepting, answers 503 to new requests on kept-alive sockets, waits for
      // in-flight requests, then the bus and the database close.
      await app.close();
      await bus.close();
      await db.close();
    })();
    return stopping;
  };
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await stop();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const scheme = config.tlsCertFile && config.tlsKeyFile ? 'https' : 'http';
  const url = `${scheme}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  if (issued) announceFirstOperator(config, out, url, issued);
  return { app, url, stop };
}

/**
 * The database prunes by the default retentions the last migration run wrote (docs/audit.md,
 * "Retention"): a node started without owner access whose configuration says otherwise is told so.
 */
async function warnOnRetentionDefaults(config: Config, db: Database, app: FastifyInstance) {
  const known = await readRetentionDefaults(db);
  const configured = {
    tenantDays: config.auditRetentionDays,
    platformDays: config.auditPlatformRetentionDays,
  };
  if (known.tenantDays !== configured.tenantDays || known.platformDays !== configured.platformDays) {
    app.log.warn(
      { database: known, configured },
      'the database enforces other audit retention defaults than AUDIT_RETENTION_DAYS / ' +
        'AUDIT_PLATFORM_RETENTION_DAYS: pruning keeps to the longer; run rampart migrate to write these',
    );
  }
}

/**
 * The first operator's API token and set-up link, shown once. In development on the terminal (the
 * quickstart). In production not on standard output, which is the log stream there (collected, shipped,
 * kept): into a file of the data directory only this user may read, created anew, whose path is printed.
 */
function announceFirstOperator(
  config: Config,
  out: NodeJS.WritableStream,
  url: string,
  issued: { email: string; token: string; setupLink: string },
) {
  const secrets =
    `Its API token is shown only once; store it in a password manager:\n\n  ${issued.token}\n\n` +
    `Try: curl -H "Authorization: Bearer <token>" ${url}/api/v1/tenants\n` +
    `For interactive sign-in (password + TOTP), set up within 24 hours: POST the token from\n  ${issued.setupLink}\n` +
    `to ${url}/api/v1/operator/setup (see README, "Operators").\n`;
  if (config.profile !== 'production') {
    out.write(`\nRampart first run: created operator ${issued.email}.\n${secrets}\n`);
    return;
  }
  // Named by the time: a file left by an earlier first run (a database started over) is never reused.
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(config.dataDir, `${FIRST_OPERATOR_PREFIX}${stamp}.txt`);
  ensurePrivateDataDir(config.dataDir);
  writeFileSync(file, `Rampart first run: created operator ${issued.email}.\n${secrets}`, {
    mode: 0o600,
    flag: 'wx',
  });
  out.write(
    `\nRampart first run: created operator ${issued.email}. Its API token and set-up link are in ${file} ` +
      '(readable by this user only), not in the log: read it, store the token, then delete the file.\n\n',
  );
}

/** How the file a production first run leaves the first operator's credentials in is named (in DATA_DIR). */
export const FIRST_OPERATOR_PREFIX = 'first-operator-';

function buildFirstOperator(config: Config, db: Database) {
  const operators = createOperatorService({
    db,
    clock: systemClock,
    tokenTtlDays: config.operatorTokenTtlDays,
    publicUrl: config.publicUrl,
  });
  return operators.bootstrap(config.bootstrapOperatorEmail);
}

/** Stops on SIGTERM/SIGINT within the grace period, exiting 0 on a clean stop. */
export function handleSignals(server: RunningServer, graceMs: number): void {
  const onSignal = (signal: NodeJS.Signals) => {
    server.app.log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      server.app.log.error('in-flight requests did not finish within SHUTDOWN_GRACE_MS; exiting');
      process.exit(1);
    }, graceMs);
    timer.unref();
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        server.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
