import { type SecretBox, UnreadableSealError } from './keys.ts';

/** What a pass over sealed values found: sealed anew, already under the current key, opening under none. */
export interface ResealCount {
  resealed: number;
  current: number;
  unreadable: number;
}

export const noneResealed = (): ResealCount => ({ resealed: 0, current: 0, unreadable: 0 });

/**
 * One sealed value of a `rampart keys rewrap` pass, counted: the value sealed anew under the current
 * key, or null when there is nothing to write (already current, or opening under no configured key:
 * left as it is, since another node may still hold the key it needs).
 */
export function resealCounted(
  box: SecretBox,
  sealed: string,
  associated: string,
  count: ResealCount,
): string | null {
  try {
    const opened = box.unseal(sealed, associated);
    if (opened.resealed === null) count.current++;
    else count.resealed++;
    return opened.resealed;
  } catch (error) {
    if (!(error instanceof UnreadableSealError)) throw error;
    count.unreadable++;
    return null;
  }
}
