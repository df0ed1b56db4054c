import { readMigrations } from '../platform/db/index.ts';

export { createOutboxMailer, type Mailer, type OutboundMail } from './outbox.ts';

export const mailMigrations = readMigrations(new URL('./migrations/', import.meta.url));
