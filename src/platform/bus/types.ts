/**
 * Tells every node that something it may have cached changed. Messages carry only a topic and a key
 * (a session-token hash, a tenant id, ...), never the changed data: a receiver drops its copy and reads
 * the truth from the database on next use.
 */
export interface InvalidationBus {
  /** Delivers to every node, this one included. Call after the change has committed. */
  publish(topic: string, key: string): Promise<void>;
  /** Handler runs for every message on topic from any node; returns an unsubscribe function. */
  subscribe(topic: string, handler: (key: string) => void): () => void;
  /** Runs when messages may have been missed (connection lost and restored): drop whole caches. */
  onReset(handler: () => void): () => void;
  /**
   * Whether messages from the other nodes reach this one now. False from a lost connection until the
   * subscription is back (and on a closed bus): caches then serve and store nothing, so a change made
   * through another node meanwhile takes effect here at the next request, not at the safety TTL.
   */
  live(): boolean;
  close(): Promise<void>;
}

export type BusKind = 'in-process' | 'postgres' | 'redis';
