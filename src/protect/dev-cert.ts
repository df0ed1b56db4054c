import { X509Certificate } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import selfsigned from 'selfsigned';

export interface DevCertOptions {
  /** Host names and addresses the certificate is valid for; the first is the common name. */
  hosts: string[];
  keyType: 'rsa' | 'ec';
  days: number;
  now?: Date;
}

export interface DevCert {
  cert: string;
  key: string;
  fingerprint256: string;
  validTo: string;
}

/**
 * A self-signed development certificate (selfsigned: node's WebCrypto and @peculiar/x509, no hand-made
 * ASN.1), SHA-256 signed, with the hosts as subject alternative names (browsers ignore the CN).
 */
export async function makeDevCert({
  hosts,
  keyType,
  days,
  now = new Date(),
}: DevCertOptions): Promise<DevCert> {
  const notAfter = new Date(now.getTime() + days * 86_400_000);
  const pems = await selfsigned.generate([{ name: 'commonName', value: hosts[0] ?? 'localhost' }], {
    keyType,
    ...(keyType === 'rsa' ? { keySize: 2048 } : { curve: 'P-256' as const }),
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: keyType === 'rsa', critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: hosts.map((host) =>
          isIP(host) ? { type: 7 as const, ip: host } : { type: 2 as const, value: host },
        ),
      },
    ],
  });
  const x509 = new X509Certificate(pems.cert);
  return { cert: pems.cert, key: pems.private, fingerprint256: x509.fingerprint256, validTo: x509.validTo };
}

/** Writes cert.pem and key.pem (0600) into `dir`, each replaced atomically (a running server may be watching). */
export function writeDevCert(dir: string, pair: DevCert): { certFile: string; keyFile: string } {
  mkdirSync(dir, { recursive: true });
  const certFile = resolve(join(dir, 'cert.pem'));
  const keyFile = resolve(join(dir, 'key.pem'));
  writeFileSync(`${keyFile}.tmp`, pair.key, { mode: 0o600 });
  writeFileSync(`${certFile}.tmp`, pair.cert, { mode: 0o644 });
  renameSync(`${keyFile}.tmp`, keyFile);
  renameSync(`${certFile}.tmp`, certFile);
  return { certFile, keyFile };
}
