/**
 * Login identifiers are compared case-insensitively: NFC-normalised, trimmed, lowercased.
 * Returns null for anything that is not a plausible single address.
 */
export function normaliseEmail(raw: string): string | null {
  const email = raw.normalize('NFC').trim().toLowerCase();
  if (email.length > 254) return null;
  return /^[^\s@<>()[\]\\,;:"]{1,64}@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$|^[^\s@]+@localhost$/.test(
    email,
  )
    ? email
    : null;
}
