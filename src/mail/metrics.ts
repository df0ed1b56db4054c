import { Counter, Gauge, type Registry } from 'prom-client';
import type { MailDispatcher } from './dispatcher.ts';

/** The dispatcher's outcomes on this node: a rising `failed` or `dropped` means mail is not leaving. */
export function registerMailMetrics(registry: Registry, dispatcher: MailDispatcher): void {
  new Counter({
    name: 'rampart_mail_dispatched_total',
    help: 'Mail handed to the transport by this node, by outcome (sent, retried, failed after every try, dropped on a full queue)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(dispatcher.counts())) this.inc({ outcome }, n);
    },
  });
  new Gauge({
    name: 'rampart_mail_queued',
    help: 'Mail waiting to be sent or being sent by this node',
    registers: [registry],
    collect() {
      this.set(dispatcher.queued());
    },
  });
}
