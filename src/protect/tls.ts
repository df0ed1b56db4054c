import { X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Server } from 'node:https';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Config } from '../platform/config/index.ts';

/**
 * The four TLS 1.2 suites the fact sheets name (ECDHE-RSA with AES-256-GCM-SHA384, AES-128-GCM-SHA256,
 * AES-256-CBC-SHA384, AES-128-CBC-SHA256), strongest first. OpenSSL names.
 */
export const TLS12_RSA_SUITES = [
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-SHA384',
  'ECDHE-RSA-AES128-SHA256',
] as const;

/** The same four with ECDSA authentication, for an EC certificate (an RSA suite cannot use an EC key). */
export const TLS12_ECDSA_SUITES = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-SHA384',
  'ECDHE-ECDSA-AES128-SHA256',
] as const;

/** TLS 1.3 suites are all AEAD; OpenSSL's default set, listed so that naming TLS 1.2 suites keeps 1.3 on. */
export const TLS13_SUITES = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
];

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export function tlsFilesOf(config: Config): TlsFiles | null {
  if (!config.tlsCertFile || !config.tlsKeyFile) return null;
  return { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile };
}

/** The TLS 1.2 suites in force: the configured list, else the fact sheet's four for the key's type. */
export function tls12Suites(config: Config, cert: Buffer): string[] {
  if (config.tlsCiphers.length > 0) return config.tlsCiphers;
  const keyType = new X509Certificate(cert).publicKey.asymmetricKeyType;
  return [...(keyType === 'ec' ? TLS12_ECDSA_SUITES : TLS12_RSA_SUITES)];
}

/** Everything the TLS server needs, read from the files now. Throws when the pair does not load. */
export function secureContextOptions(config: Config, files: TlsFiles): SecureContextOptions {
  const cert = readFileSync(files.certFile);
  const key = readFileSync(files.keyFile);
  const options: SecureContextOptions = {
    cert,
    key,
    minVersion: 'TLSv1.2',
    ciphers: [...TLS13_SUITES, ...tls12Suites(config, cert)].join(':'),
    // Our order, strongest first, not the client's.
    honorCipherOrder: true,
  };
  // Fails here, not at the first handshake, when the key does not match the certificate or a suite is unknown.
  createSecureContext(options);
  return options;
}

/**
 * Fastify's `https` option when TLS_CERT_FILE and TLS_KEY_FILE are set: TLS 1.2 at least, TLS 1.3 on,
 * TLS 1.2 limited to the fact sheet's suites (or TLS_CIPHERS).
 */
export function tlsOptions(config: Config): { https?: SecureContextOptions } {
  const files = tlsFilesOf(config);
  return files ? { https: secureContextOptions(config, files) } : {};
}

export interface TlsReloader {
  /** Reads the files again and swaps the server's context; keeps the old one when the pair is unusable. */
  reload(): boolean;
  stop(): void;
}

/**
 * Watches the certificate and key files and swaps the live server's secure context when they change
 * (certificate renewal without a restart). Polling (fs.watchFile) survives the rename-into-place that
 * certbot and Kubernetes secret mounts use, which an inotify watch on the old inode would miss.
 * A half-written pair (new certificate, old key) fails to load and is retried at the next change.
 */
export function watchTlsFiles(
  server: Server,
  config: Config,
  log: { info(msg: string): void; warn(obj: object, msg: string): void },
): TlsReloader | null {
  const files = tlsFilesOf(config);
  if (!files) return null;
  const reload = () => {
    try {
      server.setSecureContext(secureContextOptions(config, files));
      log.info('TLS certificate reloaded');
      return true;
    } catch (error) {
      log.warn({ err: error }, 'TLS certificate files changed but do not load; keeping the previous ones');
      return false;
    }
  };
  const interval = config.tlsReloadIntervalMs;
  const onChange = (current: { mtimeMs: number }, previous: { mtimeMs: number }) => {
    if (current.mtimeMs !== previous.mtimeMs) reload();
  };
  if (interval > 0) {
    watchFile(files.certFile, { interval, persistent: false }, onChange);
    watchFile(files.keyFile, { interval, persistent: false }, onChange);
  }
  return {
    reload,
    stop() {
      unwatchFile(files.certFile, onChange);
      unwatchFile(files.keyFile, onChange);
    },
  };
}
