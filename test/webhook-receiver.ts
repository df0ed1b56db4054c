import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Delivery<T> {
  /** The `webhook-id` header: what a receiver de-duplicates by. */
  id: string;
  body: T;
}

/**
 * A local Standard Webhooks receiver on 127.0.0.1 that can be stopped and started again on the same
 * port (an outage). A forged or altered message fails verification and is answered 400 (and retried).
 */
export function webhookReceiver<T>() {
  const received: Delivery<T>[] = [];
  let secret = '';
  let server: http.Server | null = null;
  let port = 0;
  return {
    received,
    get port() {
      return port;
    },
    /** The signing secret the server showed once (`whsec_…`). */
    trust(value: string) {
      secret = value;
    },
    async start(): Promise<void> {
      server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (chunk) => {
          body += String(chunk);
        });
        req.on('end', () => {
          try {
            new Webhook(secret).verify(body, req.headers as Record<string, string>);
          } catch {
            res.writeHead(400).end();
            return;
          }
          received.push({ id: String(req.headers['webhook-id']), body: JSON.parse(body) });
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => server?.listen(port, '127.0.0.1', () => resolve()));
      port = (server.address() as AddressInfo).port;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (!server) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
