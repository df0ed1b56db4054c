import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type { Database, SystemTx } from '../platform/db/index.ts';

export interface OutboundMail {
  to: string;
  subject: string;
  text: string;
}

interface MailTables {
  mail_outbox: { id?: string; recipient: string; subject: string; body: string; created_at?: Date };
}

export interface OutboxEntry {
  id: string;
  to: string;
  subject: string;
  text: string;
  createdAt: string;
}

export interface Mailer {
  send(mail: OutboundMail): Promise<void>;
  /** Development outbox, newest first (operators only); empty when mail really goes out. */
  outbox(limit: number): Promise<OutboxEntry[]>;
}

// Builds the RFC 5322 message with nodemailer instead of by hand; nothing is sent.
const composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });

/**
 * Without SMTP, mail lands in the development outbox: a table listed to operators and, for an on-disk
 * data directory, one .eml file per message in `<DATA_DIR>/outbox/` that any mail client opens.
 */
export function createOutboxMailer(db: Database, from: string, folder: string | null): Mailer {
  const system = <R>(fn: (tx: SystemTx<MailTables>) => Promise<R>) => db.withSystem(fn);
  if (folder) mkdirSync(folder, { recursive: true, mode: 0o700 });
  return {
    async send(mail) {
      const id = await system(async (tx) => {
        const row = await tx
          .insertInto('mail_outbox')
          .values({ recipient: mail.to, subject: mail.subject, body: mail.text })
          .returning('id')
          .executeTakeFirstOrThrow();
        return row.id as string;
      });
      if (folder) {
        const info = await composer.sendMail({ from, ...mail });
        const stamp = new Date().toISOString().replaceAll(':', '-');
        writeFileSync(join(folder, `${stamp}-${id}.eml`), info.message as Buffer, { mode: 0o600 });
      }
    },
    outbox: (limit) =>
      system(async (tx) => {
        const rows = await tx
          .selectFrom('mail_outbox')
          .selectAll()
          .orderBy('created_at', 'desc')
          .limit(limit)
          .execute();
        return rows.map((r) => ({
          id: r.id as string,
          to: r.recipient,
          subject: r.subject,
          text: r.body,
          createdAt: (r.created_at as Date).toISOString(),
        }));
      }),
  };
}

/**
 * Real delivery through the SMTP server in SMTP_URL (smtp:// upgraded with STARTTLS, or smtps://).
 * STARTTLS is required, not taken when offered: nodemailer's default goes on in plain text when the
 * server's answer lacks STARTTLS, and an attacker on the path who strips that word from it reads the
 * SMTP password and every reset link. A relay that cannot do TLS (one on loopback) is named explicitly
 * with `?requireTLS=false`. Certificates are verified (Node's default; nodemailer leaves it on).
 * Timeouts far below nodemailer's defaults (2 minutes to connect, 10 of silence): a server that does not
 * answer must not hold the dispatcher's queue, or shutdown, for minutes. Query parameters in SMTP_URL
 * (`?connectionTimeout=…`, `?requireTLS=false`) override them; the production profile takes only a few,
 * none of them turning TLS off except to a relay on loopback (src/platform/config/smtp-url.ts).
 */
export function createSmtpMailer(url: string, from: string): Mailer {
  const transport = nodemailer.createTransport({
    url,
    requireTLS: true,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
  return {
    async send(mail) {
      await transport.sendMail({ from, ...mail });
    },
    outbox: async () => [],
  };
}
