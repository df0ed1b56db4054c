/**
 * NIST SP 800-63B §5.1.1.2: apply NFKC before hashing so that the same password typed on
 * systems that compose characters differently (macOS sends "ä" as a + U+0308, most others as
 * U+00E4) hashes to the same value. Nothing else is changed: trimming or case folding would
 * silently weaken the password the user chose.
 */
export function normalisePassword(password: string): string {
  return password.normalize('NFKC');
}

/**
 * The forms of a password to try against a hash made by another system, which may or may not
 * have normalised: the password as received first, then its NFKC form when that differs.
 */
export function candidateForms(password: string): string[] {
  const normalised = normalisePassword(password);
  return normalised === password ? [password] : [password, normalised];
}
