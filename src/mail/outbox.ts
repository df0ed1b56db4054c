import type { Database, SystemTx } from '../platform/db/index.ts';

export interface OutboundMail {
  to: string;
  subject: string;
  text: string;
}

interface MailTables {
  mail_outbox: { id?: string; recipient: string; subject: string; body: string; created_at?: Date };
}

export interface Mailer {
  send(mail: OutboundMail): Promise<void>;
  /** Development outbox, newest first (operators only). */
  outbox(
    limit: number,
  ): Promise<{ id: string; to: string; subject: string; text: string; createdAt: string }[]>;
}

/**
 * Without SMTP, mail lands in the development outbox table, listed to operators. (Signed SMTP delivery
 * with DKIM is the Mail capability's next step.)
 */
export function createOutboxMailer(db: Database): Mailer {
  const system = <R>(fn: (tx: SystemTx<MailTables>) => Promise<R>) => db.withSystem(fn);
  return {
    send: (mail) =>
      system(async (tx) => {
        await tx
          .insertInto('mail_outbox')
          .values({ recipient: mail.to, subject: mail.subject, body: mail.text })
          .execute();
      }),
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
