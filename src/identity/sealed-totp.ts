import { type SecretBox, UnreadableSealError } from '../platform/crypto/keys.ts';
import { AppError } from '../platform/http/problem.ts';
import { identityError } from './errors.ts';

/**
 * Opens a sealed TOTP seed under SECRET_KEY or one of SECRET_KEY_PREVIOUS (`resealed` is the seed under
 * the current key, to store, when it opened under a previous one). A seed that opens under none (the
 * previous key was not configured after a rotation) is a 503 `factor_unavailable`, never a 500 nor a
 * wrong code: thrown inside the attempt's transaction, it rolls back the reserved try, so a server
 * misconfiguration never counts against the user or locks them out.
 */
export function openTotpSeed(box: SecretBox, sealed: string, associated: string) {
  try {
    return box.unseal(sealed, associated);
  } catch (error) {
    if (!(error instanceof UnreadableSealError)) throw error;
    throw identityError(
      'factor_unavailable',
      'The authenticator cannot be checked now: it was sealed under a server key that is no longer configured. Use a recovery code or ask an administrator (SECRET_KEY_PREVIOUS).',
    );
  }
}

export const isFactorUnavailable = (error: unknown) =>
  error instanceof AppError && error.code === 'factor_unavailable';
