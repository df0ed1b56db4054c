import { recordAuditEvent } from '../audit/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import { noneResealed, type ResealCount, resealCounted as resealed } from '../platform/crypto/reseal.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { audit, inTenant, type TenantRef } from './deps.ts';
import type { IdentityTables } from './tables.ts';

/** Rows per transaction: each batch commits with its audit event, so an interruption loses at most this. */
const BATCH = 200;

/**
 * Seals the tenant's TOTP seeds under the current SECRET_KEY (after a rotation), in its tenant-scoped
 * transactions (RLS), one audit event per batch that changed any. Rows are locked while re-sealed: a
 * sign-in using the seed meanwhile waits, and re-seals nothing (compare-and-set on the old value).
 */
export async function resealTenantSeeds(
  deps: { db: Database; clock: Clock },
  box: SecretBox,
  tenant: TenantRef,
  ctx: ActionContext,
  count: ResealCount = noneResealed(),
): Promise<ResealCount> {
  for (let after: string | null = null; ; ) {
    const last: string | null = await inTenant(deps, tenant, async (tx) => {
      const rows = await tx
        .selectFrom('user_totp')
        .select(['user_id', 'secret_ciphertext'])
        .$if(after !== null, (qb) => qb.where('user_id', '>', after as string))
        .orderBy('user_id')
        .limit(BATCH)
        .forUpdate()
        .execute();
      const before = count.resealed;
      for (const row of rows) {
        const next = resealed(box, row.secret_ciphertext, `totp:${tenant.id}:${row.user_id}`, count);
        if (next === null) continue;
        await tx
          .updateTable('user_totp')
          .set({ secret_ciphertext: next })
          .where('user_id', '=', row.user_id)
          .where('secret_ciphertext', '=', row.secret_ciphertext)
          .execute();
      }
      if (count.resealed > before) {
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.mfa.seeds_resealed',
          outcome: 'success',
          details: { count: count.resealed - before },
        });
      }
      return rows.length < BATCH ? null : (rows.at(-1)?.user_id ?? null);
    });
    if (last === null) return count;
    after = last;
  }
}

/** The same for operators' TOTP seeds (a platform table: the system handle, platform audit chain). */
export async function resealOperatorSeeds(
  deps: { db: Database; clock: Clock },
  box: SecretBox,
  ctx: ActionContext,
  count: ResealCount = noneResealed(),
): Promise<ResealCount> {
  return deps.db.withSystem(async (systemTx: SystemTx<IdentityTables>) => {
    const rows = await systemTx
      .selectFrom('operators')
      .select(['id', 'totp_ciphertext'])
      .where('totp_ciphertext', 'is not', null)
      .forUpdate()
      .execute();
    const before = count.resealed;
    for (const row of rows) {
      const sealed = row.totp_ciphertext ?? '';
      const next = resealed(box, sealed, `operator:${row.id}`, count);
      if (next === null) continue;
      await systemTx
        .updateTable('operators')
        .set({ totp_ciphertext: next })
        .where('id', '=', row.id)
        .where('totp_ciphertext', '=', sealed)
        .execute();
    }
    if (count.resealed > before) {
      await recordAuditEvent<IdentityTables>(systemTx, deps.clock, ctx, {
        tenantId: null,
        action: 'identity.operator.seeds_resealed',
        outcome: 'success',
        details: { count: count.resealed - before },
      });
    }
    return count;
  });
}
