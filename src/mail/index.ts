import { readMigrations } from '../platform/db/index.ts';

export {
  createOutboxMailer,
  createSmtpMailer,
  type Mailer,
  type OutboundMail,
  type OutboxEntry,
} from './outbox.ts';

export const mailMigrations = readMigrations(new URL('./migrations/', import.meta.url));
