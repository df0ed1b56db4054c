import type { Clock } from '../platform/context.ts';

export interface AuditSamplerOptions {
  /** The most keys remembered; past it the least recently audited are forgotten first. */
  maxKeys: number;
  /** The longest window any caller samples with: an entry older than it decides nothing any more. */
  maxWindowMs: number;
}

/**
 * When each key (a route class, a refused host, a blocked address) was last written to the audit trail by
 * this node, to write it at most once per window. Bounded: the keys come from outside (request addresses,
 * hostnames a tenant admin's webhook or its redirects name), so a map that only grew would grow without
 * limit. Entries past `maxWindowMs` are pruned; past `maxKeys` the least recently audited key goes even
 * within its window (it may then be audited again sooner: an event more, never more memory).
 */
export function createAuditSampler(clock: Clock, options: AuditSamplerOptions) {
  // Insertion order is audit order: a key admitted again is deleted and re-inserted at the end.
  const last = new Map<string, number>();

  const prune = (now: number) => {
    for (const [key, at] of last) {
      if (now - at < options.maxWindowMs && last.size < options.maxKeys) return;
      last.delete(key);
    }
  };

  return {
    /** Whether `key` may be audited now (not within `windowMs` of its last time); if so, records it. */
    admit(key: string, windowMs: number): boolean {
      const now = clock.now().getTime();
      const at = last.get(key);
      if (at !== undefined && now - at < windowMs) return false;
      last.delete(key);
      prune(now);
      last.set(key, now);
      return true;
    },
    /** How many keys are remembered (for tests and the bound's own check). */
    get size() {
      return last.size;
    },
  };
}

export type AuditSampler = ReturnType<typeof createAuditSampler>;
