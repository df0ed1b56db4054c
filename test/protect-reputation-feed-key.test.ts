/**
 * Block-list feed URLs in the log. Regression (security review, low): IP_BLOCKLISTS feeds carry their
 * access key in the query (or a user and password in the URL): `config check` left it out and metric
 * labels and audit events cut the query (not the user and password, now also cut), but "IP block list loaded" logged the URL whole at info, at start and
 * on every refresh, and a failed load logged it too. The log now shows the URL with those masked.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { expect, it } from 'vitest';
import { loggerOptions } from '../src/platform/log.ts';
import type { OutboundClient } from '../src/protect/outbound/index.ts';
import { createBlockLists, listName } from '../src/protect/reputation/lists.ts';

const feed = 'https://feeder:FEED-PASS-42@feeds.example.com/drop.txt?apikey=FEED-KEY-0123456789&format=net';

/** Block lists fetching through `request`, logging through the server's pino options into a string. */
function listsLoggingTo(request: () => Promise<Response>) {
  const log = { text: '' };
  const stream = new Writable({
    write(chunk, _encoding, done) {
      log.text += String(chunk);
      done();
    },
  });
  const logger = pino(loggerOptions('info'), stream);
  const lists = createBlockLists([feed], {
    outbound: { request } as unknown as OutboundClient,
    clock: { now: () => new Date() },
    log: { info: (o, m) => logger.info(o, m), warn: (o, m) => logger.warn(o, m) },
  });
  return { lists, log };
}

const secrets = ['FEED-KEY-0123456789', 'FEED-PASS-42', 'feeder'];

it('logs a loaded feed without its key, user or password', async () => {
  // 10.0.0.0/8 also brings the second line, about entries that never match.
  const { lists, log } = listsLoggingTo(async () => new Response('1.10.16.0/20\n10.0.0.0/8\n'));
  await lists.refresh();
  await lists.refresh();
  const lines = log.text.trim().split('\n');
  expect(lines).toHaveLength(4);
  for (const line of lines) {
    expect(JSON.parse(line).source).toBe(
      'https://(masked):(masked)@feeds.example.com/drop.txt?apikey=%28masked%29&format=%28masked%29',
    );
    for (const secret of secrets) expect(line).not.toContain(secret);
  }
  // Matching still answers with the configured source.
  expect(lists.match('1.10.16.7')).toBe(feed);
});

it('logs a failed load without the URL, even where the error carries it', async () => {
  const { lists, log } = listsLoggingTo(async () => {
    // As Node's invalid-URL error does: the URL in a property, which pino's error serializer prints.
    throw Object.assign(new TypeError(`cannot fetch ${feed}`), { code: 'ERR_INVALID_URL', input: feed });
  });
  await lists.refresh();
  expect(log.text).toContain('IP block list could not be loaded');
  const line = JSON.parse(log.text);
  expect(line.error).toEqual({
    type: 'TypeError',
    code: 'ERR_INVALID_URL',
    message: `cannot fetch ${line.source}`,
  });
  for (const secret of secrets) expect(log.text).not.toContain(secret);
});

it('names a feed in metric labels and audit details without its query, user or password', () => {
  // Before, only the query was cut there: a feed given as https://user:password@… kept both.
  expect(listName(feed)).toBe('https://feeds.example.com/drop.txt');
  expect(listName('/etc/rampart/blocklist.netset')).toBe('/etc/rampart/blocklist.netset');
});
