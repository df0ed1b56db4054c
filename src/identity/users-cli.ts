import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import type { TenantRef } from './deps.ts';
import { importUsers } from './import-users.ts';
import type { PasswordHasher } from './passwords/index.ts';
import { countFastHashes, type WrapCursor, wrapFastHashes } from './wrap-legacy.ts';

export interface UsersCliDeps {
  err: NodeJS.WritableStream;
  out: NodeJS.WritableStream;
  /** Opens the database, resolves the tenant, runs fn, closes. */
  withTenantDb<T>(slug: string, fn: (db: Database, tenant: TenantRef) => Promise<T>): Promise<T>;
  /** Opens the database, lists every tenant (or the one named), runs fn, closes. */
  withTenantsDb<T>(
    slug: string | undefined,
    fn: (db: Database, tenants: TenantRef[]) => Promise<T>,
  ): Promise<T>;
  /** The bounded hasher at the configured argon2id parameters. */
  hasher(): PasswordHasher;
  clock: Clock;
  context: () => ActionContext;
}

/** Rows per transaction (and audit event) of the CLI's wrapping: an interruption loses at most these. */
const wrapBatch = 200;

function progressBar(deps: UsersCliDeps, format: string) {
  return new cliProgress.SingleBar(
    { stream: deps.err, format, noTTYOutput: true, notTTYSchedule: 1000 },
    cliProgress.Presets.shades_classic,
  );
}

/** `rampart users import FILE --tenant SLUG`: progress on stderr, a summary of rejected rows on stdout. */
export function registerUserCommands(root: Command, deps: UsersCliDeps): void {
  const users = root.command('users').description('manage tenant users');
  users
    .command('import <file>')
    .description(
      'import users with existing password hashes from JSON Lines (.jsonl) or CSV (.csv, header row); ' +
        'fields: email, displayName, role (member|staff|tenant-admin), passwordHash (argon2, bcrypt, salted SHA-256); ' +
        'privileged: a tenant-admin row creates an administrator with the given hash (each imported user is audited)',
    )
    .requiredOption('--tenant <slug>', 'tenant to import into')
    .action(async (file: string, opts: { tenant: string }) => {
      const bar = progressBar(
        deps,
        'importing [{bar}] {percentage}% | {imported} imported | {rejected} rejected',
      );
      const summary = await deps.withTenantDb(opts.tenant, async (db, tenant) => {
        bar.start(100, 0, { imported: 0, rejected: 0 });
        try {
          return await importUsers(
            { db, clock: deps.clock, hasher: deps.hasher() },
            tenant,
            deps.context(),
            file,
            (p) =>
              bar.update(p.bytesTotal === 0 ? 100 : Math.floor((p.bytesRead / p.bytesTotal) * 100), {
                imported: p.imported,
                rejected: p.rejected,
              }),
          );
        } finally {
          bar.stop();
        }
      });
      deps.out.write(`${summary.imported} imported, ${summary.rejected.length} rejected\n`);
      for (const r of summary.rejected.slice(0, 100)) deps.out.write(`  line ${r.line}: ${r.reason}\n`);
      if (summary.rejected.length > 100) deps.out.write(`  … and ${summary.rejected.length - 100} more\n`);
      if (summary.fastHashesRemaining > 0) {
        deps.out.write(
          `${summary.fastHashesRemaining} password hashes in a fast legacy format: a running server wraps them ` +
            `in argon2id in the background, or now: rampart users wrap-legacy-hashes --tenant ${opts.tenant}\n`,
        );
      }
    });
  users
    .command('wrap-legacy-hashes')
    .description(
      'wrap fast legacy password hashes (salted SHA-256, bcrypt below cost 10) in argon2id now, ' +
        'instead of waiting for the background job; one audit event per tenant per 200 hashes',
    )
    .option('--tenant <slug>', 'only this tenant (default: every tenant)')
    .action(async (opts: { tenant?: string }) => {
      const hasher = deps.hasher();
      await deps.withTenantsDb(opts.tenant, async (db, tenants) => {
        const identity = { db, clock: deps.clock, hasher };
        for (const tenant of tenants) {
          const total = await countFastHashes(identity, tenant);
          if (total === 0) {
            deps.out.write(`${tenant.slug}: no fast password hashes\n`);
            continue;
          }
          const bar = progressBar(deps, `${tenant.slug} [{bar}] {value}/{total} wrapped`);
          bar.start(total, 0);
          let wrapped = 0;
          let changed = 0;
          try {
            let cursor: WrapCursor | null = null;
            do {
              const run = await wrapFastHashes(identity, tenant, deps.context(), {
                limit: wrapBatch,
                cursor,
              });
              wrapped += run.wrapped;
              changed += run.changedMeanwhile;
              bar.update(wrapped);
              cursor = run.cursor;
            } while (cursor !== null);
          } finally {
            bar.stop();
          }
          const remaining = await countFastHashes(identity, tenant);
          deps.out.write(
            `${tenant.slug}: ${wrapped} wrapped, ${changed} changed meanwhile (left as they are), ${remaining} remaining\n`,
          );
        }
      });
    });
}
