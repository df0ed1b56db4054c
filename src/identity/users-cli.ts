import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import type { TenantRef } from './deps.ts';
import { importUsers } from './import-users.ts';

export interface UsersCliDeps {
  err: NodeJS.WritableStream;
  out: NodeJS.WritableStream;
  /** Opens the database, resolves the tenant, runs fn, closes. */
  withTenantDb<T>(slug: string, fn: (db: Database, tenant: TenantRef) => Promise<T>): Promise<T>;
  clock: Clock;
  context: () => ActionContext;
}

/** `rampart users import FILE --tenant SLUG`: progress on stderr, a summary of rejected rows on stdout. */
export function registerUserCommands(root: Command, deps: UsersCliDeps): void {
  root
    .command('users')
    .description('manage tenant users')
    .command('import <file>')
    .description(
      'import users with existing password hashes from JSON Lines (.jsonl) or CSV (.csv, header row); ' +
        'fields: email, displayName, role (member|staff|tenant-admin), passwordHash (argon2, bcrypt, salted SHA-256)',
    )
    .requiredOption('--tenant <slug>', 'tenant to import into')
    .action(async (file: string, opts: { tenant: string }) => {
      const bar = new cliProgress.SingleBar(
        {
          stream: deps.err,
          format: 'importing [{bar}] {percentage}% | {imported} imported | {rejected} rejected',
          noTTYOutput: true,
          notTTYSchedule: 1000,
        },
        cliProgress.Presets.shades_classic,
      );
      const summary = await deps.withTenantDb(opts.tenant, async (db, tenant) => {
        bar.start(100, 0, { imported: 0, rejected: 0 });
        try {
          return await importUsers({ db, clock: deps.clock }, tenant, deps.context(), file, (p) =>
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
    });
}
