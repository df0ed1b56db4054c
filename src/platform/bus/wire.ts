/**
 * The wire format shared by the PostgreSQL and Redis buses: one channel, JSON messages naming the
 * sending node so it can skip its own echo (it delivered locally when it published).
 */
export interface WireMessage {
  node: string;
  topic: string;
  key: string;
}

/** PostgreSQL's NOTIFY payload limit is 8000 bytes; the same bound keeps Redis messages small. */
const MAX_PAYLOAD_BYTES = 7_900;

export function encodeMessage(message: WireMessage): string {
  const payload = JSON.stringify({ n: message.node, t: message.topic, k: message.key });
  if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
    throw new Error(`invalidation message for topic ${message.topic} is too large (keys are ids, not data)`);
  }
  return payload;
}

/** Returns null for anything that is not a well-formed message (another program on the channel). */
export function decodeMessage(payload: string): WireMessage | null {
  try {
    const parsed: unknown = JSON.parse(payload);
    if (typeof parsed !== 'object' || parsed === null) return null;
    const { n, t, k } = parsed as Record<string, unknown>;
    if (typeof n !== 'string' || typeof t !== 'string' || typeof k !== 'string') return null;
    return { node: n, topic: t, key: k };
  } catch {
    return null;
  }
}
