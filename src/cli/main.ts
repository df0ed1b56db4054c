import { userInfo } from 'node:os';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Command, CommanderError } from 'commander';
import { type AccessTables, checkTokenScopes, createAccessService } from '../access/index.ts';
import { registerAuditCommands } from '../audit/cli.ts';
import { checkpointSigner, configureAuditMac, createRetentionService } from '../audit/index.ts';
import { registerBreachedCommands } from '../identity/breached/index.ts';
import {
  createOperatorAdmin,
  createOperatorService,
  createPasswordHasher,
  isOperatorActive,
  isUserDisabled,
  lockActiveTenantAdmins,
  lockUsers,
  type OperatorAdmin,
  OperatorDisableBody,
  type OperatorService,
  OperatorTokenLabel,
  type TenantRef,
  toTenantRef,
} from '../identity/index.ts';
import { registerUserCommands } from '../identity/users-cli.ts';
import { allMigrations } from '../migrations.ts';
import { type Config, ConfigError, envNames, loadConfig } from '../platform/config/index.ts';
import { type ActionContext, systemClock } from '../platform/context.ts';
import { resolveRootKey, resolveRootKeys } from '../platform/crypto/keys.ts';
import { type Database, migrate, UnsafeRoleError } from '../platform/db/index.ts';
import { AppError } from '../platform/http/problem.ts';
import { withoutUrlSecrets } from '../platform/url-secrets.ts';
import { registerProtectCommands } from '../protect/index.ts';
import { openConfiguredBus, openConfiguredDatabase, openEngine, ownerSettingsFrom } from '../runtime.ts';
import { handleSignals, startServer } from '../server.ts';
import { CreateTenantBody, createTenancyService, SuspendBody } from '../tenancy/index.ts';
import { registerKeyCommands } from './keys.ts';

export interface CliIo {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const maskedSettings = new Set([
  'secretKey',
  'secretKeyPrevious',
  'metricsToken',
  'databaseUrl',
  'databaseOwnerUrl',
  'smtpUrl',
]);

const isEmptyList = (value: unknown) => Array.isArray(value) && value.length === 0;

const cliContext = (): ActionContext => ({
  actor: { type: 'system', id: `cli:${userInfo().username}` },
  ip: null,
  userAgent: 'rampart-cli',
  requestId: null,
});

async function withDatabase<T>(config: Config, fn: (db: Database) => Promise<T>): Promise<T> {
  // Audit events the CLI appends carry MACs under the servers' key, and verify checks them (docs/audit.md).
  configureAuditMac(resolveRootKey(config.secretKey, config.dataDir));
  const db = await openConfiguredDatabase(config);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/**
 * A tenancy service that announces its change on the bus, so running servers drop their cached copy of
 * the tenant (suspension takes effect at their next request, not after the cache's TTL).
 */
async function withAnnouncingTenancy<T>(
  config: Config,
  io: CliIo,
  fn: (tenancy: ReturnType<typeof createTenancyService>) => Promise<T>,
): Promise<T> {
  return withDatabase(config, async (db) => {
    const bus = await openConfiguredBus(config);
    try {
      const onBackgroundError = (error: unknown) =>
        io.err.write(`warning: running servers were not told (${String(error)}); they notice within 30 s\n`);
      return await fn(createTenancyService({ db, clock: systemClock, bus, onBackgroundError }));
    } finally {
      await bus.close();
    }
  });
}

/** Operator administration that announces revocations on the bus, so running servers drop them at once. */
/** The operator service on the configured database (creating operators, issuing their tokens). */
function withOperators<T>(config: Config, fn: (operators: OperatorService) => Promise<T>): Promise<T> {
  return withDatabase(config, (db) =>
    fn(
      createOperatorService({
        db,
        clock: systemClock,
        tokenTtlDays: config.operatorTokenTtlDays,
        publicUrl: config.publicUrl,
      }),
    ),
  );
}

/**
 * Operator administration wired as the server wires it: a disable ends the operator's pending and live
 * elevations (Access), so a later enable gives none of them back.
 */
async function withOperatorAdmin<T>(
  config: Config,
  io: CliIo,
  fn: (admin: OperatorAdmin) => Promise<T>,
): Promise<T> {
  return withDatabase(config, async (db) => {
    const bus = await openConfiguredBus(config);
    const onBackgroundError = (error: unknown) =>
      io.err.write(`warning: running servers were not told (${String(error)}); they notice within 30 s\n`);
    const access = createAccessService({
      db,
      clock: systemClock,
      bus,
      elevationMaxMinutes: config.elevationMaxMinutes,
      // Only the elevations are used here: no role is granted, so no user is looked up.
      userExists: async () => false,
      userDisabled: (tx, userId, lock) => isUserDisabled<AccessTables>(tx, userId, lock),
      lockActiveTenantAdmins: (tx) => lockActiveTenantAdmins<AccessTables>(tx),
      lockUsers: (tx, userIds) => lockUsers<AccessTables>(tx, userIds),
      operatorActive: (tx, operatorId) => isOperatorActive(tx, operatorId),
      onBackgroundError,
    });
    try {
      return await fn(
        createOperatorAdmin({
          db,
          clock: systemClock,
          bus,
          onBackgroundError,
          endElevations: (ctx, operatorId) => access.elevations.endAllOf(ctx, operatorId),
        }),
      );
    } finally {
      await access.close();
      await bus.close();
    }
  });
}

/**
 * Checks command-line input against the same schema the API uses, so a bad value is reported by option
 * name instead of surfacing as a database constraint error.
 */
function checkInput(schema: TSchema, value: Record<string, string>, options: Record<string, string>): void {
  const problems = [...Value.Errors(schema, value)].map((e) => {
    const field = e.path.slice(1);
    return `${options[field] ?? field}: ${e.message}`;
  });
  if (problems.length > 0) throw new Error(`invalid input\n${problems.map((p) => `  - ${p}`).join('\n')}`);
}

function program(io: CliIo): Command {
  const print = (line: string) => io.out.write(`${line}\n`);
  const config = () => loadConfig(io.env);
  const root = new Command('rampart')
    .description('Rampart: the security core of a multi-tenant SaaS platform')
    .configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) })
    .exitOverride();

  root
    .command('start', { isDefault: true })
    .description('start the server (migrates the embedded database first)')
    .action(async () => {
      const cfg = config();
      const server = await startServer(cfg, io.out);
      handleSignals(server, cfg.shutdownGraceMs);
      server.app.log.info(
        { url: server.url, engine: cfg.databaseUrl ? 'postgres' : 'pglite' },
        'rampart ready',
      );
      // Log lines are written in batches (platform/log.ts): the ready line goes out now, for whoever waits on it.
      (server.app.log as unknown as { flush?: () => void }).flush?.();
    });

  root
    .command('migrate')
    .description('apply pending migrations as the schema owner (DATABASE_OWNER_URL on PostgreSQL)')
    .action(async () => {
      const cfg = config();
      const engine = await openEngine(cfg);
      try {
        const report = await migrate(
          engine,
          allMigrations,
          (name) => print(`applied ${name}`),
          ownerSettingsFrom(cfg),
        );
        print(`${report.applied.length} applied, ${report.alreadyApplied} already in place`);
      } finally {
        await engine.close();
      }
    });

  const tenants = root.command('tenants').description('manage tenants');
  tenants
    .command('create')
    .description('create a tenant')
    .requiredOption('--slug <slug>', 'lowercase letters, digits, hyphens (3-40)')
    .requiredOption('--name <name>', 'display name')
    .requiredOption('--region <label>', 'residency label, e.g. eu-de')
    .action(async (opts: { slug: string; name: string; region: string }) => {
      const input = { slug: opts.slug, displayName: opts.name, region: opts.region };
      checkInput(CreateTenantBody, input, { slug: '--slug', displayName: '--name', region: '--region' });
      await withDatabase(config(), async (db) => {
        const tenant = await createTenancyService({ db, clock: systemClock }).create(cliContext(), input);
        print(`created ${tenant.slug} (${tenant.id}) in ${tenant.region}`);
      });
    });
  tenants
    .command('list')
    .description('list tenants')
    .action(async () => {
      await withDatabase(config(), async (db) => {
        const tenancy = createTenancyService({ db, clock: systemClock });
        let after: string | null = null;
        for (;;) {
          const page = await tenancy.list(after, 200);
          for (const t of page.items) print(`${t.slug}\t${t.status}\t${t.region}\t${t.displayName}`);
          if (!page.more) break;
          after = page.items.at(-1)?.slug ?? null;
        }
      });
    });
  tenants
    .command('suspend <slug>')
    .description('suspend a tenant')
    .requiredOption('--reason <text>', 'why (recorded in the audit trail)')
    .action(async (slug: string, opts: { reason: string }) => {
      checkInput(SuspendBody, { reason: opts.reason }, { reason: '--reason' });
      await withAnnouncingTenancy(config(), io, async (tenancy) => {
        await tenancy.suspend(cliContext(), slug, opts.reason);
        print(`suspended ${slug}`);
      });
    });
  tenants
    .command('resume <slug>')
    .description('resume a suspended tenant')
    .action(async (slug: string) => {
      await withAnnouncingTenancy(config(), io, async (tenancy) => {
        await tenancy.resume(cliContext(), slug);
        print(`resumed ${slug}`);
      });
    });

  const operators = root.command('operators').description('manage platform operators');
  operators
    .command('create')
    .description('create an operator and print its API token once')
    .requiredOption('--email <email>', 'login email')
    .option('--name <name>', 'display name', 'Operator')
    .action(async (opts: { email: string; name: string }) => {
      await withOperators(config(), async (operators) => {
        const issued = await operators.create(cliContext(), opts.email, opts.name);
        print(
          `created operator ${issued.email}; API token (shown once, expires ${issued.expiresAt.toISOString()}):`,
        );
        print(issued.token);
        print(`interactive sign-in (password + TOTP): set up within 24 hours at ${issued.setupLink}`);
      });
    });

  operators
    .command('list')
    .description('list operators: status, second factor, lockout, live credentials, last use')
    .action(async () => {
      await withOperatorAdmin(config(), io, async (admin) => {
        const rows = await admin.list();
        const day = (d: Date | null) => (d ? d.toISOString().slice(0, 16).replace('T', ' ') : 'never');
        print(['email', 'status', '2fa', 'locked', 'live', 'last used'].join('\t'));
        for (const o of rows) {
          const cells = [o.email, o.status, o.secondFactor ? 'yes' : 'no', o.locked ? 'yes' : 'no'];
          print([...cells, String(o.liveCredentials), day(o.lastUsedAt)].join('\t'));
        }
      });
    });
  operators
    .command('token <email>')
    .description('issue a further API token to an active operator and print it once')
    .option('--label <text>', 'what the token is for (shown in the token list)', 'api')
    .option(
      '--scope <permission>',
      'limit the token to this platform permission (repeatable; e.g. decisions:check, waf-events:write)',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .action(async (email: string, opts: { label: string; scope: string[] }) => {
      checkInput(OperatorTokenLabel, { label: opts.label }, { label: '--label' });
      // Least privilege: an integration's token (decision API, WAF shipper) carries only what it calls.
      const scopes = opts.scope.length > 0 ? checkTokenScopes(opts.scope) : null;
      await withOperators(config(), async (operators) => {
        const issued = await operators.issueToken(cliContext(), email, opts.label, scopes);
        const limit = scopes ? `limited to ${scopes.join(', ')}` : 'every platform permission';
        print(
          `issued API token "${opts.label}" to operator ${issued.email} (${limit}; shown once, expires ${issued.expiresAt.toISOString()}):`,
        );
        print(issued.token);
      });
    });
  operators
    .command('tokens <email>')
    .description("list an operator's live credentials with their scopes (never a token)")
    .action(async (email: string) => {
      await withOperatorAdmin(config(), io, async (admin) => {
        const tokens = await admin.listOwn((await admin.findByEmail(email)).id, null);
        const day = (d: Date | null) => (d ? d.toISOString().slice(0, 16).replace('T', ' ') : 'never');
        print(['id', 'kind', 'label', 'expires', 'last used', 'scopes'].join('\t'));
        for (const t of tokens) {
          const scopes = t.scopes?.join(',') ?? (t.kind === 'setup' ? '-' : 'all');
          print([t.id, t.kind, t.label, day(t.expiresAt), day(t.lastUsedAt), scopes].join('\t'));
        }
      });
    });
  operators
    .command('disable <email>')
    .description('disable an operator: every credential revoked on every node, sign-in refused')
    .option('--reason <text>', 'why (recorded in the audit trail)')
    .action(async (email: string, opts: { reason?: string }) => {
      if (opts.reason !== undefined)
        checkInput(OperatorDisableBody, { reason: opts.reason }, { reason: '--reason' });
      await withOperatorAdmin(config(), io, async (admin) => {
        const { id } = await admin.findByEmail(email);
        const done = await admin.disable(cliContext(), id, opts.reason ?? null);
        print(`disabled operator ${done.email}; ${done.revoked} credential(s) revoked`);
      });
    });
  operators
    .command('enable <email>')
    .description('enable a disabled operator (their old credentials stay revoked)')
    .action(async (email: string) => {
      await withOperatorAdmin(config(), io, async (admin) => {
        const done = await admin.enable(cliContext(), (await admin.findByEmail(email)).id);
        print(`enabled operator ${done.email}`);
      });
    });
  operators
    .command('revoke-tokens <email>')
    .description('revoke every live credential of an operator (API token, sessions, set-up links)')
    .action(async (email: string) => {
      await withOperatorAdmin(config(), io, async (admin) => {
        const operator = await admin.findByEmail(email);
        const { revoked } = await admin.revokeAll(cliContext(), operator.id);
        print(`revoked ${revoked} credential(s) of operator ${operator.email}`);
      });
    });
  operators
    .command('unlock <email>')
    .description("clear an operator's sign-in lockout")
    .action(async (email: string) => {
      await withOperatorAdmin(config(), io, async (admin) => {
        const done = await admin.unlock(cliContext(), (await admin.findByEmail(email)).id);
        print(`unlocked operator ${done.email}`);
      });
    });

  root
    .command('config')
    .description('configuration')
    .command('check')
    .description('validate the configuration and print it with secrets masked')
    .action(() => {
      const cfg = config();
      for (const [key, meta] of Object.entries(envNames)) {
        const value = cfg[key as keyof Config];
        // URLs of databases may carry passwords; keys and tokens are secrets outright.
        const secret = maskedSettings.has(key) && value !== undefined && !isEmptyList(value);
        print(`${meta.env}=${secret ? '(set)' : JSON.stringify(withoutUrlSecrets(value ?? null))}`);
      }
      print('configuration is valid');
    });
  registerBreachedCommands(root, io);
  registerProtectCommands(root, io);
  const withTenantsDb = <T>(
    slug: string | undefined,
    fn: (db: Database, tenants: TenantRef[]) => Promise<T>,
  ): Promise<T> =>
    withDatabase(config(), async (db) => {
      const tenancy = createTenancyService({ db, clock: systemClock });
      // A named tenant may be suspended: its hashes at rest need wrapping all the same.
      if (slug !== undefined) return fn(db, [toTenantRef(await tenancy.get(slug))]);
      const all = [];
      for (let after: string | null = null; ; ) {
        const page = await tenancy.list(after, 200);
        all.push(...page.items.map(toTenantRef));
        if (!page.more) break;
        after = page.items.at(-1)?.slug ?? null;
      }
      return fn(db, all);
    });
  registerKeyCommands(root, {
    out: io.out,
    err: io.err,
    clock: systemClock,
    context: cliContext,
    config,
    withTenantsDb: (fn) => withTenantsDb(undefined, fn),
  });
  registerUserCommands(root, {
    out: io.out,
    err: io.err,
    clock: systemClock,
    context: cliContext,
    withTenantDb: (slug, fn) =>
      withDatabase(config(), async (db) => {
        const tenant = await createTenancyService({ db, clock: systemClock }).requireActive(slug);
        return fn(db, toTenantRef(tenant));
      }),
    withTenantsDb,
    hasher: () => {
      const cfg = config();
      return createPasswordHasher({
        params: {
          memoryKiB: cfg.argon2MemoryKiB,
          iterations: cfg.argon2Iterations,
          parallelism: cfg.argon2Parallelism,
        },
      });
    },
  });
  registerAuditCommands(root, {
    out: io.out,
    err: io.err,
    clock: systemClock,
    withDatabase: (fn) => withDatabase(config(), fn),
    tenantId: async (db, slug) => (await createTenancyService({ db, clock: systemClock }).get(slug)).id,
    async *tenants(db) {
      const tenancy = createTenancyService({ db, clock: systemClock });
      for (let after: string | null = null; ; ) {
        const page = await tenancy.list(after, 200);
        for (const t of page.items) yield { id: t.id, label: `tenant ${t.slug}` };
        if (!page.more) return;
        after = page.items.at(-1)?.slug ?? null;
      }
    },
    context: cliContext(),
    retentionDays: (db, tenantId) =>
      createRetentionService({
        db,
        clock: systemClock,
        defaultDays: config().auditRetentionDays,
        platformDays: config().auditPlatformRetentionDays,
      }).daysFor(tenantId),
    signer: () => {
      const cfg = config();
      const [current, ...previous] = resolveRootKeys(cfg.secretKey, cfg.secretKeyPrevious, cfg.dataDir);
      return checkpointSigner(current as Buffer, previous);
    },
  });
  return root;
}

/** Runs the CLI; resolves to the exit code (a long-running `start` resolves once it is listening). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    await program(io).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof ConfigError || error instanceof UnsafeRoleError) {
      io.err.write(`${error.message}\n`);
      return 2;
    }
    if (error instanceof AppError) {
      io.err.write(`error: ${error.detail}\n`);
      return 1;
    }
    io.err.write(`error: ${(error as Error).message}\n`);
    return 1;
  }
}
