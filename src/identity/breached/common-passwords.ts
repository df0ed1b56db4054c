/**
 * Layer 1: the common-password list shipped by @zxcvbn-ts/language-common (~49,000 entries, lowercase,
 * ranked by frequency). See docs/decisions/0010-common-password-list.md.
 */
import { dictionary } from '@zxcvbn-ts/language-common';

let common: Set<string> | null = null;

/** Built on first use: the idle server pays for the list only once a password is actually checked. */
function list(): Set<string> {
  common ??= new Set(dictionary['passwords-common']);
  return common;
}

/**
 * Case-insensitive (the list is lowercase, and "PASSWORD" is as guessable as "password"). NFKC first so that
 * full-width or composed look-alikes of a listed password match too.
 */
export function isCommonPassword(password: string): boolean {
  return list().has(password.normalize('NFKC').toLowerCase());
}

export const commonPasswordCount = (): number => list().size;
