/** `rampart tls dev-cert` (and the IP list commands): the Protect capability's command line. */
import { type Command, InvalidArgumentError } from 'commander';
import { makeDevCert, writeDevCert } from './dev-cert.ts';

export interface ProtectCliIo {
  out: NodeJS.WritableStream;
}

const parseDays = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 825) {
    throw new InvalidArgumentError('a whole number of days from 1 to 825');
  }
  return Number(value);
};

export function registerProtectCommands(root: Command, io: ProtectCliIo): void {
  registerTlsCommands(root, io);
}

function registerTlsCommands(root: Command, io: ProtectCliIo): Command {
  const tls = root.command('tls').description('TLS certificates');
  tls
    .command('dev-cert')
    .description('make a self-signed certificate for development (never for production: browsers warn)')
    .option('--out <dir>', 'folder for cert.pem and key.pem', './data/tls')
    .option('--host <name...>', 'host names and addresses it is valid for', ['localhost', '127.0.0.1', '::1'])
    .option('--ec', 'an ECDSA P-256 key instead of RSA 2048 (the ECDSA cipher suites are used)')
    .option('--days <n>', 'validity', parseDays, 30)
    .action(async (opts: { out: string; host: string[]; ec?: boolean; days: number }) => {
      const pair = await makeDevCert({ hosts: opts.host, keyType: opts.ec ? 'ec' : 'rsa', days: opts.days });
      const files = writeDevCert(opts.out, pair);
      io.out.write(
        `Self-signed certificate for ${opts.host.join(', ')}, valid until ${pair.validTo}\n` +
          `SHA-256 fingerprint ${pair.fingerprint256}\n\n` +
          `Serve HTTPS with:\n  TLS_CERT_FILE=${files.certFile}\n  TLS_KEY_FILE=${files.keyFile}\n`,
      );
    });
  return tls;
}
