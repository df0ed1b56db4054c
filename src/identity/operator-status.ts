import type { Kysely } from 'kysely';
import type { IdentityTables } from './tables.ts';

/**
 * Whether an operator exists and is active, read in any platform transaction with their row held FOR
 * SHARE until the caller commits: disabling an operator (which locks the row FOR UPDATE) waits for the
 * caller, or the caller waits for it and then reads `disabled`. Access's re-check of a platform approval
 * (its approver must still be an operator who may approve) runs it in the transaction that does the action.
 */
export async function isOperatorActive<DB>(tx: Kysely<DB>, operatorId: string): Promise<boolean> {
  const row = await (tx as unknown as Kysely<IdentityTables>)
    .selectFrom('operators')
    .select('status')
    .where('id', '=', operatorId)
    .forShare()
    .executeTakeFirst();
  return row?.status === 'active';
}
