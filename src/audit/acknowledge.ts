import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import { asTenantId, type Database, enterTenant, type SystemTx } from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import {
  type AcknowledgementFields,
  acknowledgementOf,
  chainInconsistency,
  checkAcknowledgement,
  type ForgeryAcknowledgement,
  insertAcknowledgement,
  readAcknowledgements,
} from './forged-events.ts';
import { auditMacKey, checkMac, type MacKey } from './mac.ts';
import { recordAuditEvent } from './record.ts';
import { isCanonicalUuid } from './schemas.ts';
import type { CheckpointSigner } from './signer.ts';
import { bytes, chainFilter, inChain, readHead, trustedKeysIn } from './store.ts';
import type { AuditTables } from './tables.ts';

export interface AcknowledgeInput {
  /** The chain: a tenant's id, or null for the platform's. */
  tenantId: string | null;
  seq: number;
  eventId: string;
  /** The event's stored hash, hex, as `rampart audit verify` prints it. */
  eventHash: string;
  reason: string;
}

/**
 * The platform approval an acknowledgement runs under (access's four-eyes; audit cannot import access):
 * one operator asks, another approves, and only then does it run (docs/audit.md, "Recovering from a
 * forged event").
 */
export interface ForgeryApproval {
  /** The approval's re-check (the approver is still an active operator), run first in the insert's transaction. */
  guard: (tx: SystemTx<AuditTables>) => Promise<void>;
  approvalId: string;
  approvedBy: string | null;
}

export interface AcknowledgementView {
  id: string;
  chain: string;
  seq: number;
  eventId: string;
  eventHash: string;
  reason: string;
  acknowledgedBy: { type: string; id: string | null };
  acknowledgedAt: string;
}

const MAX_REASON = 1000;

function refuse(detail: string): never {
  throw auditError('bad_acknowledgement', detail);
}

/** The input as the route's schema takes it, checked again: an approved request runs with its params. */
function checkInput(input: AcknowledgeInput): string {
  if (input.tenantId !== null && !isCanonicalUuid(input.tenantId)) {
    refuse('chain must be platform or a tenant id as a lower-case UUID (as rampart audit verify prints it).');
  }
  if (!isCanonicalUuid(input.eventId)) {
    refuse('eventId must be a lower-case UUID, as rampart audit verify prints it.');
  }
  if (!Number.isSafeInteger(input.seq) || input.seq < 1) {
    refuse('seq must be the position of the forged event (a whole number ≥ 1).');
  }
  if (!/^[0-9a-f]{64}$/i.test(input.eventHash)) {
    refuse('The event hash must be 64 hex digits, as rampart audit verify prints it.');
  }
  const reason = input.reason.trim();
  // One line of text: verify prints it on the event's line, where a line break could pass for a
  // line of its own (another chain "ok") and control characters could rewrite the terminal.
  if (/\p{Cc}/u.test(reason)) refuse('The reason must be one line of text, without control characters.');
  // The database stores a lone surrogate as U+FFFD while the MAC covers the escaped text: the row would
  // never verify, and verify would call it forged for good (the table is append-only; code review).
  if (!(reason as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    refuse('The reason must be well-formed text (it holds a lone UTF-16 surrogate).');
  }
  if (reason.length === 0 || reason.length > MAX_REASON) {
    refuse(`Give a reason (what the investigation found), 1-${MAX_REASON} characters.`);
  }
  return reason;
}

/**
 * The reason as audit details take it: runs of 40 or more hex digits (the event hash an operator
 * pastes, recorded under its own key) are elided, or `clean` would redact the whole reason as a
 * credential. The acknowledgement itself keeps the reason whole (verify prints it).
 */
const reasonForAudit = (reason: string) => reason.replace(/[0-9a-f]{40,}/gi, '[hex elided]');

/** The stored row, read back in the write's transaction: one whose MAC would not verify is never committed. */
async function checkStored(tx: SystemTx<AuditTables>, key: MacKey, ack: AcknowledgementFields) {
  const rows = await readAcknowledgements(tx, ack.chain === 'platform' ? null : ack.chain, {
    after: ack.seq - 1,
    upTo: ack.seq,
  });
  const stored = rows.find((r) => r.id === ack.id);
  if (!stored || checkAcknowledgement(key, stored) !== 'ok') {
    throw new Error(`acknowledgement ${ack.id} does not verify as stored; not committed`);
  }
}

/**
 * Acknowledging forged events (docs/audit.md, "Event MACs": recovery). The checkpoint job refuses to
 * sign a chain over an event whose MAC does not match; once an operator has investigated, they name that
 * exact event (position, id, stored hash) with a reason, and the job signs over it again. Refused unless
 * the event is there as named, its MAC really does not match, and it is consistent with the chain: an
 * acknowledgement covers a missing or wrong MAC, never a broken chain.
 */
export function createForgeryService({
  db,
  clock,
  signer,
}: {
  db: Database;
  clock: Clock;
  /** The checkpoint signer: the trusted keys tell which checkpoint a pruned chain starts from. */
  signer: CheckpointSigner;
}) {
  /** The named event as the chain holds it, checked; throws the error the caller should see. */
  async function checkEvent(input: AcknowledgeInput) {
    const chain = input.tenantId ?? 'platform';
    const hashHex = input.eventHash.toLowerCase();
    await inChain(db, input.tenantId, async (tx) => {
      const head = await readHead(tx, input.tenantId);
      const { rows } = await sql<{ id: string; hash: Uint8Array; mac: Uint8Array | null }>`
        SELECT id::text AS id, hash, mac FROM audit_events
        WHERE ${chainFilter(input.tenantId)} AND chain_seq = ${input.seq}`.execute(tx);
      const row = rows[0];
      if (!row) {
        throw auditError(
          'forged_event_not_found',
          `Chain ${chain} has no event at seq ${input.seq}. rampart audit verify names forged events with their seq, id and hash.`,
        );
      }
      const hash = bytes(row.hash);
      if (row.id !== input.eventId.toLowerCase() || Buffer.from(hash).toString('hex') !== hashHex) {
        throw auditError(
          'acknowledgement_mismatch',
          `The event at seq ${input.seq} of chain ${chain} is not event ${input.eventId} with that hash. Acknowledge exactly the event rampart audit verify names: a different event at that position is not covered.`,
        );
      }
      if (
        input.seq < head.macFromSeq ||
        checkMac(auditMacKey(), hash, row.mac ? bytes(row.mac) : null) === 'ok'
      ) {
        throw auditError(
          'event_not_forged',
          `The event at seq ${input.seq} of chain ${chain} carries a valid MAC (or predates MACs): there is nothing to acknowledge.`,
        );
      }
      const keys = await trustedKeysIn(tx, signer);
      const broken = await chainInconsistency(tx, input.tenantId, input.seq, head, keys);
      if (broken) {
        throw auditError(
          'chain_broken',
          `${broken}. An acknowledgement covers a missing or wrong MAC only, not a broken chain: run rampart audit verify and restore the chain from a backup.`,
        );
      }
    });
    return { chain, hashHex };
  }

  function refuseAcknowledged(chain: string, seq: number): never {
    throw auditError(
      'already_acknowledged',
      `The event at seq ${seq} of chain ${chain} is already acknowledged (rampart audit verify shows by whom).`,
    );
  }

  /**
   * The audit events of an acknowledgement: `audit.chain.forgery_acknowledged` on the platform chain,
   * with the reason; and, when the chain is a tenant's, `audit.forged_event.acknowledged` on that chain,
   * so the tenant's own trail says that the platform vouched for an event it holds. Not the reason
   * there: operators' findings may name other tenants or the platform's systems; the acknowledgement's
   * id leads to it.
   */
  async function recordAcknowledged(
    tx: SystemTx<AuditTables>,
    ctx: ActionContext,
    ack: AcknowledgementFields,
    hashHex: string,
    approval: ForgeryApproval,
  ) {
    const facts = {
      seq: ack.seq,
      eventId: ack.eventId,
      eventHash: hashHex,
      acknowledgementId: ack.id,
      approval: approval.approvalId,
      approvedBy: approval.approvedBy,
    };
    await recordAuditEvent(tx, clock, ctx, {
      tenantId: null,
      action: 'audit.chain.forgery_acknowledged',
      outcome: 'success',
      target: { type: 'audit_chain', id: ack.chain },
      details: { ...facts, reason: reasonForAudit(ack.reason) },
    });
    if (ack.chain === 'platform') return;
    // Last: from here on the transaction is the tenant's, and platform rows are out of its reach.
    const tenantTx = await enterTenant(tx, asTenantId(ack.chain));
    await recordAuditEvent(tenantTx, clock, ctx, {
      tenantId: ack.chain,
      action: 'audit.forged_event.acknowledged',
      outcome: 'success',
      target: { type: 'audit_event', id: ack.eventId },
      details: facts,
    });
  }

  return {
    /**
     * The checks `acknowledge` makes, before anything is asked for: an acknowledgement that could not
     * run is refused (4xx), never put up for another operator's approval. Returns the chain's label.
     */
    async check(input: AcknowledgeInput): Promise<string> {
      checkInput(input);
      const { chain, hashHex } = await checkEvent(input);
      const existing = await db.withSystem<AuditTables, ForgeryAcknowledgement[]>((tx) =>
        readAcknowledgements(tx, input.tenantId),
      );
      const named = { seq: input.seq, id: input.eventId.toLowerCase(), hash: hashHex };
      if (acknowledgementOf(existing, auditMacKey(), named)) refuseAcknowledged(chain, input.seq);
      return chain;
    },

    /**
     * Records the acknowledgement. Only as an approved platform action (four-eyes between two operators,
     * src/access/platform-approvals.ts): `approval.guard` re-checks the approval first in the write's
     * transaction, and the approval is named in `audit.chain.forgery_acknowledged`. One operator alone
     * could otherwise forge a row with database access and acknowledge it with their account.
     */
    async acknowledge(
      ctx: ActionContext,
      input: AcknowledgeInput,
      approval: ForgeryApproval,
    ): Promise<AcknowledgementView> {
      const reason = checkInput(input);
      const { chain, hashHex } = await checkEvent(input);
      const key = auditMacKey();
      const ack: AcknowledgementFields = {
        id: randomUUID(),
        chain,
        seq: input.seq,
        eventId: input.eventId.toLowerCase(),
        eventHash: Buffer.from(hashHex, 'hex'),
        reason,
        actorType: ctx.actor.type,
        actorId: ctx.actor.id ?? null,
        acknowledgedAt: clock.now(),
      };
      // The acknowledgement, its audit event on the platform chain and the notice on the tenant's chain
      // commit together (no tenant set until the last: acknowledging is a platform action).
      await db.withSystem<AuditTables, void>(async (tx) => {
        await approval.guard(tx);
        // Acknowledgements of a chain are written one at a time: two approved requests for the same
        // event run at once would otherwise both find none and both insert (code review). A lock, not a
        // unique index: a row anyone writes straight into the table (whose MAC does not verify) would
        // then block the genuine acknowledgement for good.
        await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_forgery_ack'), hashtext(${chain}))`.execute(
          tx,
        );
        const existing = await readAcknowledgements(tx, input.tenantId);
        if (acknowledgementOf(existing, key, { seq: ack.seq, id: ack.eventId, hash: hashHex })) {
          refuseAcknowledged(chain, ack.seq);
        }
        await insertAcknowledgement(tx, key, ack);
        await checkStored(tx, key, ack);
        await recordAcknowledged(tx, ctx, ack, hashHex, approval);
      });
      return {
        id: ack.id,
        chain,
        seq: ack.seq,
        eventId: ack.eventId,
        eventHash: hashHex,
        reason,
        acknowledgedBy: { type: ack.actorType, id: ack.actorId },
        acknowledgedAt: ack.acknowledgedAt.toISOString(),
      };
    },
  };
}

export type ForgeryService = ReturnType<typeof createForgeryService>;
