import { identityError } from './errors.ts';

const CONTROL = /\p{Cc}/u;
/** C0 and C1 controls and DEL: what a form or JSON body may carry but no name or address contains. */
export const hasControlCharacters = (text: string): boolean => CONTROL.test(text);

/**
 * Login identifiers are compared case-insensitively: NFC-normalised, trimmed, lowercased.
 * Returns null for anything that is not a plausible single address.
 */
export function normaliseEmail(raw: string): string | null {
  // Control characters are never part of an address, and PostgreSQL text cannot even store NUL.
  if (hasControlCharacters(raw)) return null;
  const email = raw.normalize('NFC').trim().toLowerCase();
  if (email.length > 254) return null;
  return /^[^\s@<>()[\]\\,;:"]{1,64}@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$|^[^\s@]+@localhost$/.test(
    email,
  )
    ? email
    : null;
}

/**
 * The refusal for an address with control characters, naming the field. Sign-in and forgot-password
 * answer a merely implausible address like an unknown one (no account is revealed either way), but a
 * control character is malformed input and must not reach PostgreSQL, which refuses NUL in text.
 */
export const controlCharactersError = () =>
  identityError('invalid_email', 'An email address cannot contain control characters.', {
    errors: [{ pointer: '/body/email', message: 'must not contain control characters' }],
  });
