import type { ChainReport } from './verify.ts';

/**
 * verify's lines for a chain's forged events: each with its id and hash (what an acknowledgement must
 * name), acknowledged or not, and for acknowledgement rows no node wrote. There is no CLI command to
 * acknowledge one: it is a platform four-eyes action (docs/access.md, "The server CLI is not a second
 * control"), asked for through the API and approved by another operator.
 */
export function describeForgedEvents(label: string, r: ChainReport): string[] {
  const lines = r.forgedEvents.map((f) => {
    const what = `${label}: forged event at seq ${f.seq} (event ${f.eventId}, hash ${f.hash})`;
    const a = f.acknowledgement;
    if (a) {
      const by = a.actorId === null ? a.actorType : `${a.actorType} ${a.actorId}`;
      return `${what}: acknowledged by ${by} at ${a.acknowledgedAt.toISOString()}: ${a.reason}`;
    }
    return (
      `${what}: NOT acknowledged (once investigated, an operator asks: POST /api/v1/audit/chains/${r.chain}/forgery-acknowledgements ` +
      `{"seq": ${f.seq}, "eventId": "${f.eventId}", "eventHash": "${f.hash}", "reason": "..."}; another operator approves it)`
    );
  });
  for (const f of r.forgedAcknowledgements) {
    lines.push(
      `${label}: FORGED acknowledgement at seq ${f.seq} of chain ${r.chain} (ignored): ${f.message}`,
    );
  }
  return lines;
}
