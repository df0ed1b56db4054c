import { createHash } from 'node:crypto';
import type { TenantRef } from '../identity/index.ts';
import type { Database } from '../platform/db/index.ts';
import type { CriticalActions, JsonValue } from './critical.ts';
import type { Holdings } from './holdings.ts';
import { inTenant } from './tables.ts';

/** JSON with object keys sorted at every level: equal parameters give equal bytes, so equal hashes. */
export function canonicalJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as JsonValue)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export const paramsHash = (params: JsonValue) => createHash('sha256').update(canonicalJson(params)).digest();

/** What `claim` needs checked outside its transaction (they read through the cache and other capabilities). */
export interface Standing {
  /** The approver this was checked for, and whether they still hold `approvals:decide` in the tenant. */
  approver: { type: string | null; id: string | null; decides: boolean };
  /** The hash of the current state the action would overwrite, when the request recorded one. */
  basisHash: Buffer | null;
}

/**
 * What is checked again before an approved request runs, besides its own row (security review: an
 * approval counted after its approver lost the right to give it, and an approved settings change wrote
 * back a document that others had changed since).
 */
export function createStandingCheck(deps: { db: Database; critical: CriticalActions; holdings: Holdings }) {
  const { db, critical, holdings } = deps;

  /** The hash of the state an action would overwrite now; null when it overwrites nothing. */
  async function basisHash(tenant: TenantRef, action: string, params: JsonValue): Promise<Buffer | null> {
    const state = await critical.action(action)?.basis?.(tenant, params);
    // Through JSON first: dates become strings, undefined members drop out, as in the stored params.
    return state === undefined ? null : paramsHash(JSON.parse(JSON.stringify(state)) as JsonValue);
  }

  /**
   * Whether the approval still counts and the state is still the one it was asked against, read before
   * the claim (the cache and other capabilities open their own transactions). The claim then compares
   * under the row lock; a change in the short gap between is no different from two edits racing.
   */
  async function standing(tenant: TenantRef, id: string): Promise<Standing> {
    const row = await inTenant(db, tenant.id, (tx) =>
      tx.selectFrom('access_approval_requests').selectAll().where('id', '=', id).executeTakeFirst(),
    );
    const type = row?.decided_by_type ?? null;
    const approverId = row?.decided_by_id ?? null;
    // The approver's permission now, as the access hook would answer it: a user's roles (nothing while
    // disabled), an operator's live elevations.
    const decides =
      type !== null && approverId !== null
        ? (await holdings(tenant.id, { type, id: approverId })).has('approvals:decide')
        : false;
    const basis =
      row?.status === 'approved' && row.basis_hash
        ? await basisHash(tenant, row.action, row.params as JsonValue)
        : null;
    return { approver: { type, id: approverId, decides }, basisHash: basis };
  }

  return { basisHash, of: standing };
}
