import { Secret, TOTP } from 'otpauth';
import QRCode from 'qrcode';

/** RFC 6238 as authenticator apps expect it: SHA-1, 6 digits, 30-second steps. */
const totpFor = (secret: Secret, label: string, issuer: string) =>
  new TOTP({ issuer, label, algorithm: 'SHA1', digits: 6, period: 30, secret });

export const newTotpSecret = () => new Secret({ size: 20 }).base32;

/**
 * The time step a code belongs to (±1 step of clock drift), or null when it matches none. Callers
 * accept a step only if it is later than the last one used, which refuses replays.
 */
export function totpStep(secretBase32: string, code: string, now: Date): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const delta = totpFor(Secret.fromBase32(secretBase32), 'x', 'x').validate({
    token: code,
    timestamp: now.getTime(),
    window: 1,
  });
  return delta === null ? null : Math.floor(now.getTime() / 30_000) + delta;
}

/** What an authenticator app needs: the secret, its otpauth:// URI and that URI as a QR code (SVG). */
export async function enrolmentFor(secretBase32: string, label: string, issuer: string) {
  const uri = totpFor(Secret.fromBase32(secretBase32), label, issuer).toString();
  const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 1 });
  return { secret: secretBase32, uri, qrSvg };
}
