// The baseline server: Fastify with one route and nothing else, as a newcomer would write it.
// Imported, it serves in this process; run as a script, it is the cold-start baseline and announces
// itself with a JSON line like Rampart's 'rampart ready'.
import { pathToFileURL } from 'node:url';
import Fastify from 'fastify';

export async function startBareServer() {
  const app = Fastify();
  app.get('/', async () => ({ status: 'ok' }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: `${url}/`, close: () => app.close() };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { url } = await startBareServer();
  process.stdout.write(`${JSON.stringify({ msg: 'bare ready', url })}\n`);
  process.once('SIGTERM', () => process.exit(0));
}
