import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { auditableUrl } from './details.ts';
import { auditError } from './errors.ts';
import { recordAuditEvent } from './record.ts';
import { checkSinkInput, oneCertificatePem, type SinkApproval, type SinkInput } from './sink-input.ts';
import { DEFAULT_MAX_BACKLOG, sinkStatuses, stopSink } from './sink-store.ts';
import type { AuditTables } from './tables.ts';

type Tx = SystemTx<AuditTables>;

/** Operators' management of the platform's SIEM sinks. */
export function createSinkService({
  db,
  clock,
  box,
  maxBacklog = DEFAULT_MAX_BACKLOG,
}: {
  db: Database;
  clock: Clock;
  box: SecretBox;
  maxBacklog?: number;
}) {
  return {
    check: checkSinkInput,

    /**
     * Adds a sink. Only as an approved platform action (four-eyes between two operators, src/access/
     * platform-approvals.ts): `approval.guard` re-checks the approval first in this transaction, and the
     * approval is named in `audit.sink.created`. The webhook signing secret is made here, so it is never
     * part of the request that was approved nor seen by the approver; only the requester gets it, once.
     */
    async create(ctx: ActionContext, input: SinkInput, approval: SinkApproval) {
      const { kind } = input;
      const url = checkSinkInput(input);
      // Stored re-encoded: exactly the one certificate the approver's summary named (checked above).
      const ca = input.caPem === undefined ? null : oneCertificatePem(input.caPem);
      const id = randomUUID();
      // Webhooks are signed (Standard Webhooks); syslog relies on TLS and carries no secret.
      const secret = kind === 'webhook' ? `whsec_${randomBytes(32).toString('base64')}` : null;
      await db.withSystem(async (tx: Tx) => {
        await approval.guard(tx);
        await sql`INSERT INTO audit_sinks (id, kind, url, secret_sealed, tls_ca, created_at)
          VALUES (${id}, ${kind}, ${url}, ${secret === null ? null : box.seal(secret, `audit-sink:${id}`)},
            ${ca}, ${clock.now()})`.execute(tx);
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId: null,
          action: 'audit.sink.created',
          outcome: 'success',
          target: { type: 'audit_sink', id },
          details: {
            kind,
            url: auditableUrl(url),
            privateCa: input.caPem !== undefined,
            approval: approval.approvalId,
            approvedBy: approval.approvedBy,
          },
        });
      });
      // The signing secret is shown once; only its sealed form is kept.
      return secret === null ? { id, kind, url } : { id, kind, url, secret };
    },

    /** Sinks still delivering (active and draining), with their backlog and delivery state. */
    list: () => db.withSystem((tx: Tx) => sinkStatuses(tx, maxBacklog + 1)),

    /**
     * Disables a sink. An active sink receives `audit.sink.disabled` like every other sink (the event
     * is queued while it is still active), then gets no new events and drains: it stops once its
     * backlog, that notice last, is delivered. `now` on a draining sink stops it at once and drops what
     * it still holds, audited with the count (the remaining sinks receive that).
     */
    disable: (ctx: ActionContext, id: string, options: { now?: boolean } = {}) =>
      db.withSystem(async (tx: Tx): Promise<{ state: 'draining' | 'stopped'; dropped: number }> => {
        const { rows } = await sql<{ disabled_at: Date | null }>`SELECT disabled_at FROM audit_sinks
          WHERE id = ${id} AND stopped_at IS NULL FOR NO KEY UPDATE`.execute(tx);
        const sink = rows[0];
        if (!sink) throw auditError('sink_not_found', 'No active or draining sink has that id.');
        if (sink.disabled_at === null) {
          // Recorded first, while the sink is still active: it is queued for this sink too.
          await recordAuditEvent<AuditTables>(tx, clock, ctx, {
            tenantId: null,
            action: 'audit.sink.disabled',
            outcome: 'success',
            target: { type: 'audit_sink', id },
            details: { immediate: options.now === true },
          });
          await sql`UPDATE audit_sinks SET disabled_at = ${clock.now()} WHERE id = ${id}`.execute(tx);
          if (!options.now) return { state: 'draining', dropped: 0 };
        } else if (!options.now) {
          throw auditError(
            'sink_draining',
            'The sink is already draining its backlog; add ?now=true to stop it at once and drop what it holds.',
          );
        }
        const dropped = await stopSink(tx, clock, ctx, id, false);
        return { state: 'stopped', dropped };
      }),
  };
}

export type SinkService = ReturnType<typeof createSinkService>;
