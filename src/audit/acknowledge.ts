import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import {
  type AcknowledgementFields,
  acknowledgementOf,
  chainInconsistency,
  type ForgeryAcknowledgement,
  insertAcknowledgement,
  readAcknowledgements,
} from './forged-events.ts';
import { auditMacKey, checkMac } from './mac.ts';
import { recordAuditEvent } from './record.ts';
import { bytes, chainFilter, inChain, readHead } from './store.ts';
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

function checkInput(input: AcknowledgeInput): string {
  if (!Number.isSafeInteger(input.seq) || input.seq < 1) {
    throw auditError(
      'bad_acknowledgement',
      'seq must be the position of the forged event (a whole number ≥ 1).',
    );
  }
  if (!/^[0-9a-f]{64}$/i.test(input.eventHash)) {
    throw auditError(
      'bad_acknowledgement',
      'The event hash must be 64 hex digits, as rampart audit verify prints it.',
    );
  }
  const reason = input.reason.trim();
  // One line of text: verify prints it on the event's line, where a line break could pass for a
  // line of its own (another chain "ok") and control characters could rewrite the terminal.
  if (/\p{Cc}/u.test(reason)) {
    throw auditError(
      'bad_acknowledgement',
      'The reason must be one line of text, without control characters.',
    );
  }
  if (reason.length === 0 || reason.length > MAX_REASON) {
    throw auditError(
      'bad_acknowledgement',
      `Give a reason (what the investigation found), 1-${MAX_REASON} characters.`,
    );
  }
  return reason;
}

/**
 * Acknowledging forged events (docs/audit.md, "Event MACs": recovery). The checkpoint job refuses to
 * sign a chain over an event whose MAC does not match; once an operator has investigated, they name that
 * exact event (position, id, stored hash) with a reason, and the job signs over it again. Refused unless
 * the event is there as named, its MAC really does not match, and it is consistent with the chain: an
 * acknowledgement covers a missing or wrong MAC, never a broken chain.
 */
export function createForgeryService({ db, clock }: { db: Database; clock: Clock }) {
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
      const broken = await chainInconsistency(tx, input.tenantId, input.seq, head);
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
      // The acknowledgement and its audit event on the platform chain commit together (no tenant set:
      // acknowledging is a platform action, whichever chain it names).
      await db.withSystem<AuditTables, void>(async (tx) => {
        await approval.guard(tx);
        const existing = await readAcknowledgements(tx, input.tenantId);
        if (acknowledgementOf(existing, key, { seq: ack.seq, id: ack.eventId, hash: hashHex })) {
          refuseAcknowledged(chain, ack.seq);
        }
        await insertAcknowledgement(tx, key, ack);
        await recordAuditEvent(tx, clock, ctx, {
          tenantId: null,
          action: 'audit.chain.forgery_acknowledged',
          outcome: 'success',
          target: { type: 'audit_chain', id: chain },
          details: {
            seq: ack.seq,
            eventId: ack.eventId,
            acknowledgementId: ack.id,
            reason,
            approval: approval.approvalId,
            approvedBy: approval.approvedBy,
          },
        });
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
