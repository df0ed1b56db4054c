import { createHash } from 'node:crypto';
import type { TenantRef } from '../identity/index.ts';
import { safeEqual } from '../platform/crypto/tokens.ts';
import type { Classified, CriticalActions, JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import type { LockedHoldings } from './locked-holdings.ts';
import type { AccessApprovalRequestsTable, Tx } from './tables.ts';

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

/** Deeper than any approved parameters are (a few levels): sent parameters nested deeper match none. */
export const MAX_PARAMS_DEPTH = 64;

/** Whether a value nests arrays and objects no deeper than `max` levels, walked without recursion. */
export function withinDepth(value: unknown, max = MAX_PARAMS_DEPTH): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, depth] = next;
    if (item === null || typeof item !== 'object') continue;
    if (depth >= max) return false;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return true;
}

/**
 * Whether parameters sent to run a request are the approved ones. Security review: deeply nested
 * parameters overflowed the recursive `canonicalJson` and the run answered 500; they are refused as
 * different (`params_changed`), which they are.
 */
export const sameParams = (sent: JsonValue, approvedHash: Uint8Array) =>
  withinDepth(sent) && safeEqual(paramsHash(sent), Buffer.from(approvedHash));

/**
 * Why an approved request may not run now: its approver lost `approvals:decide` or would now benefit from
 * it (`approverLost`: the approval no longer counts), or the state changed.
 */
export type StandingLoss = 'approverLost' | 'stateChanged';

/** Thrown by an approval's guard in the action's transaction (which it rolls back: nothing ran). */
export class StandingLost extends Error {
  constructor(readonly loss: StandingLoss) {
    super(`approved request no longer stands: ${loss}`);
  }
}

type Checked = Pick<
  AccessApprovalRequestsTable,
  'action' | 'params' | 'basis_hash' | 'decided_by_type' | 'decided_by_id'
>;

/**
 * What is checked again before an approved request runs, besides its own row (security review: an
 * approval counted after its approver lost the right to give it, or after they came to benefit from it,
 * and an approved settings change wrote back a document that others had changed since). Both are read
 * in the caller's transaction with the rows they read locked until it commits (locked-holdings.ts; each
 * action's `basis` locks its state), and run first in the transaction that claims the request and again
 * in the one that does the action: what could take either answer away waits for that commit, or the
 * check waits for it and sees its result.
 */
export function createStandingCheck(deps: { critical: CriticalActions; lockedHoldings: LockedHoldings }) {
  const { critical, lockedHoldings } = deps;

  /** The hash of the state an action would overwrite now, locked; null when it overwrites nothing. */
  async function basisHash(
    tx: Tx,
    tenant: TenantRef,
    action: string,
    params: JsonValue,
  ): Promise<Buffer | null> {
    const state = await critical.action(action)?.basis?.(tx, tenant, params);
    // Through JSON first: dates become strings, undefined members drop out, as in the stored params.
    return state === undefined ? null : paramsHash(JSON.parse(JSON.stringify(state)) as JsonValue);
  }

  /**
   * Whether the approving user would now get access from the action (its `beneficiary`), as checked when
   * the approval was recorded (approval-decisions.ts). Security review: the rule was checked then only;
   * a role widened with an administrator power was approved by a non-holder, the role (no such power
   * yet, so no four-eyes) was then granted to the approver, and the approved run gave them the power
   * they had approved. Such an approval no longer counts, as one whose approver lost the right.
   */
  async function benefits(tx: Tx, row: Checked, userId: string): Promise<boolean> {
    const beneficiary = critical.action(row.action)?.beneficiary;
    return beneficiary !== undefined && (await beneficiary(tx, row.params as JsonValue, userId));
  }

  /**
   * Whether the approval still counts (its approver holds `approvals:decide` and would not benefit from
   * the action) and the state is still the one it was asked against.
   */
  async function check(tx: Tx, tenant: TenantRef, row: Checked): Promise<StandingLoss | null> {
    const type = row.decided_by_type;
    const id = row.decided_by_id;
    const recorded = row.basis_hash ? Buffer.from(row.basis_hash) : null;
    const stateNow = () => basisHash(tx, tenant, row.action, row.params as JsonValue);
    // Lock order (see lockStateFirst): the state first for state others lock before users' rows.
    const early = recorded && critical.action(row.action)?.lockStateFirst ? await stateNow() : undefined;
    // The approver's permission now, as the access hook would answer it: a user's roles (nothing while
    // disabled), an operator's live elevations.
    const decides =
      type !== null && id !== null && (await lockedHoldings(tx, { type, id })).has('approvals:decide');
    if (!decides) return 'approverLost';
    // The state, locked, before the beneficiary is asked: a grant of a role locks it FOR SHARE until its
    // assignment commits, so a role change's holders are read with none of them still to come.
    const now = early === undefined ? await stateNow() : early;
    if (type === 'user' && id !== null && (await benefits(tx, row, id))) return 'approverLost';
    // Recorded with no basis, yet the action has one now: asked before its state was pinned (a grant of
    // a custom role before the security review), so the approver saw no state it could run on.
    if (!recorded) return now === null ? null : 'stateChanged';
    return now && safeEqual(now, recorded) ? null : 'stateChanged';
  }

  return { basisHash, check };
}

/**
 * Security review: the gate writes the summary against the state it read, and the request records the
 * basis it locks a moment later. A change committed in between (one PUT raising 2FA enforcement while
 * another, shortening the password, was being asked for) was recorded as the basis, so the approved run
 * also lowered 2FA back, which the summary did not name. Such a request is not recorded: sent again, its
 * summary is written against the state it will run on.
 */
export function refuseUnseenBasis(what: Classified, basis: Buffer | null): void {
  if (what.seen === undefined) return;
  // Through JSON first, as the basis is: dates become strings, undefined members drop out.
  const seen = paramsHash(JSON.parse(JSON.stringify(what.seen)) as JsonValue);
  if (basis && safeEqual(seen, basis)) return;
  throw accessError(
    'state_changed',
    'What this action changes was changed while the request was checked, so its summary would not say ' +
      'what approving it does; nothing was asked for. Send the request again.',
  );
}
