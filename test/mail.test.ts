import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutboxMailer, createSmtpMailer } from '../src/mail/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers.ts';
import { plaintextAuthServer } from './mail-helpers.ts';

let database: TestDatabase;
const received: string[] = [];
// A real SMTP peer on loopback (plain, no auth: it only collects what the mailer sends).
const smtp = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  onData(stream, _session, done) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      received.push(Buffer.concat(chunks).toString('utf8'));
      done();
    });
  },
});

// A server that offers no STARTTLS but takes a password in plain text: what a stripped EHLO looks like.
const plaintextAuth = plaintextAuthServer();

beforeAll(async () => {
  database = await createTestDatabase();
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  await plaintextAuth.listen();
});
afterAll(async () => {
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
  await plaintextAuth.close();
  await database?.close();
});

describe('mail', () => {
  it('delivers through SMTP_URL to a real SMTP server', async () => {
    const { port } = smtp.server.address() as AddressInfo;
    // A relay without TLS is named as such: STARTTLS is required otherwise (next test).
    const mailer = createSmtpMailer(
      `smtp://127.0.0.1:${port}?requireTLS=false`,
      'Rampart <no-reply@rampart.test>',
    );
    await mailer.send({
      to: 'someone@example.test',
      subject: 'Reset your password',
      text: 'https://x.test/reset?token=abc',
    });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(/^Subject: Reset your password/m);
    expect(received[0]).toContain('https://x.test/reset?token=abc');
    expect(await mailer.outbox(10)).toEqual([]);
  });

  // Regression: STARTTLS was used only when offered, so a server (or an attacker on the path stripping
  // STARTTLS from its EHLO answer) that offered none got the SMTP password and the mail in plain text.
  it('refuses to send, or authenticate, over smtp:// without STARTTLS', async () => {
    const mailer = createSmtpMailer(
      `smtp://rampart:smtp-password@127.0.0.1:${plaintextAuth.port()}`,
      'Rampart <no-reply@rampart.test>',
    );
    await expect(
      mailer.send({ to: 'someone@example.test', subject: 'Reset', text: 'https://x.test/reset?token=ghi' }),
    ).rejects.toThrow();
    expect(plaintextAuth.passwordsSeen).toEqual([]);
  });

  it('keeps development mail in the outbox table and as .eml files', async () => {
    const folder = join(mkdtempSync(join(tmpdir(), 'rampart-outbox-')), 'outbox');
    const mailer = createOutboxMailer(database.db, 'Rampart <no-reply@localhost>', folder);
    await mailer.send({
      to: 'dev@example.test',
      subject: 'You are invited',
      text: 'https://x.test/invite?token=def',
    });
    const [entry] = await mailer.outbox(1);
    expect(entry).toMatchObject({ to: 'dev@example.test', subject: 'You are invited' });
    const files = readdirSync(folder);
    expect(files).toHaveLength(1);
    const eml = readFileSync(join(folder, files[0] ?? ''), 'utf8');
    expect(eml).toMatch(/^To: dev@example.test$/m);
    expect(eml).toContain('https://x.test/invite?token=def');
  });
});
