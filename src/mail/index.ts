import { readMigrations } from '../platform/db/index.ts';

export {
  createMailDispatcher,
  type DispatchCounts,
  type DispatchLog,
  type DispatchOptions,
  type MailDispatcher,
} from './dispatcher.ts';
export { registerMailMetrics } from './metrics.ts';
export {
  createOutboxMailer,
  createSmtpMailer,
  type Mailer,
  type OutboundMail,
  type OutboxEntry,
} from './outbox.ts';

export const mailMigrations = readMigrations(new URL('./migrations/', import.meta.url));
