import type { ChainConstants } from './canonical.ts';
import type { HeadRow } from './store.ts';
import type { ChainBreak, StoredCheckpoint } from './walk.ts';

/**
 * What a chain created after migration 0059 has on its head row (the columns' defaults): every event
 * carries a MAC, and no event is without a position.
 */
export const DEFAULT_CONSTANTS: ChainConstants = { macFromSeq: 1, legacyEvents: 0 };

const columns = [
  ['mac_from_seq', 'macFromSeq'],
  ['legacy_events', 'legacyEvents'],
] as const;

/** The chain's constants, and what is wrong with them (the first problem found), if anything. */
export interface ResolvedConstants {
  constants: ChainConstants;
  problem: ChainBreak | null;
}

const breakOf = (kind: ChainBreak['kind'], seq: number | null, message: string): ChainBreak => ({
  kind,
  seq,
  eventId: null,
  message,
});

/**
 * The head row's columns that differ from `signed`, as a break naming the column, the signed value and
 * the value found: only the table owner (with the trigger of migration 0084 off) can have changed them.
 */
function headDiffers(head: HeadRow, signed: ChainConstants, by: string): ChainBreak | null {
  for (const [column, field] of columns) {
    if (head[field] !== signed[field]) {
      return breakOf(
        'modified',
        null,
        `the chain head's ${column} is ${head[field]} but ${by} ${signed[field]}: the head row was changed`,
      );
    }
  }
  return null;
}

/**
 * A chain's constants (mac_from_seq, legacy_events), taken from what its trusted checkpoints sign and
 * never from the head row alone, which the table owner can change (docs/audit.md, "What the database
 * owner can still do"):
 *
 * - checkpoints that carry constants (signed since migration 0085) must all agree (else a `checkpoint`
 *   break), and the head row must hold the same values (else a `modified` break naming the column);
 *   the signed values are used either way;
 * - a chain none of whose trusted checkpoints carries them must hold the defaults in its head row (else a
 *   `modified` break): every chain created after migration 0059 does. A chain signed before the upgrade
 *   whose head row holds other values (it existed at migration 0059 or 0030) takes them only when an
 *   operator adopts them (`adopt`: `rampart audit checkpoint --adopt-constants`, once after upgrading),
 *   never by itself: the owner could otherwise delete the checkpoints carrying constants, raise the
 *   column and have the job trust it again (review of 2026-11-28).
 *
 * `carrying`: trusted checkpoints; those without constants are passed over (verify passes all of them,
 * the checkpoint job the newest one carrying constants); `anyTrusted`: whether the chain has a trusted
 * checkpoint at all.
 */
export function resolveConstants(
  carrying: readonly StoredCheckpoint[],
  anyTrusted: boolean,
  head: HeadRow,
  adopt = false,
): ResolvedConstants {
  const signed = signedConstants(carrying);
  if (signed.constants) {
    const { constants } = signed;
    return {
      constants,
      problem: signed.problem ?? headDiffers(head, constants, 'its signed checkpoints say'),
    };
  }
  if (anyTrusted && adopt) {
    return { constants: { macFromSeq: head.macFromSeq, legacyEvents: head.legacyEvents }, problem: null };
  }
  return {
    constants: DEFAULT_CONSTANTS,
    problem: headDiffers(
      head,
      DEFAULT_CONSTANTS,
      anyTrusted
        ? 'a chain whose signed checkpoints carry no constants must have (after upgrading a chain that ' +
            'existed at migration 0059, adopt its values once: rampart audit checkpoint --adopt-constants)'
        : 'a chain without a signed checkpoint must have',
    ),
  };
}

/**
 * The constants the given (trusted) checkpoints sign: the newest carrying ones', null when none carries
 * them, with a `checkpoint` break when two of them disagree. verify-file uses this alone: a bundle has no
 * head row to compare with.
 */
export function signedConstants(checkpoints: readonly StoredCheckpoint[]): {
  constants: ChainConstants | null;
  problem: ChainBreak | null;
} {
  let newest: (StoredCheckpoint & { constants: ChainConstants }) | null = null;
  for (const c of checkpoints) {
    if (c.constants && (!newest || c.seq > newest.seq)) newest = { ...c, constants: c.constants };
  }
  if (!newest) return { constants: null, problem: null };
  const { constants } = newest;
  for (const c of checkpoints) {
    for (const [column, field] of columns) {
      if (c.constants && c.constants[field] !== constants[field]) {
        return {
          constants,
          problem: breakOf(
            'checkpoint',
            c.seq,
            `the signed checkpoints at seq ${c.seq} and ${newest.seq} carry different ${column} (${c.constants[field]} and ${constants[field]})`,
          ),
        };
      }
    }
  }
  return { constants, problem: null };
}
