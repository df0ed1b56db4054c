import pino, { type DestinationStream, type LoggerOptions } from 'pino';

/**
 * Paths that may carry secrets. Request bodies are not logged at all; these catch headers and anything a
 * handler might attach to a log line by mistake.
 */
export const redactedPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.currentPassword',
  '*.token',
  '*.secret',
  '*.passwordHash',
  '*.totpSecret',
  '*.recoveryCodes',
  '*.apiKey',
  '*.privateKey',
];

/** How many bytes of log lines are gathered before one write, and how long a line may wait at most. */
const LOG_BUFFER_BYTES = 4096;
const LOG_FLUSH_EVERY_MS = 1000;

export type LogDestination = DestinationStream & ReturnType<typeof pino.destination>;

/**
 * Where log lines go (stdout by default): gathered into writes of 4 KiB, and written at the latest a second
 * after they were logged, instead of a write as soon as a line comes while none is in flight. A server logs
 * a line per request, and handing a line to the file system costs a cheap request more than anything it
 * does itself (benchmarked in docs/protect.md, "Performance"). pino flushes the batch when
 * the process exits (exit, uncaught exception, SIGINT, SIGTERM); a kill -9 or a power cut loses at most the
 * last second of lines. The audit trail is in the database and never depends on this.
 */
export function logDestination(dest: number | string = 1): LogDestination {
  const stream = pino.destination({ dest, minLength: LOG_BUFFER_BYTES, sync: false });
  // Our own timer rather than sonic-boom's periodicFlush: unref'd, so it never keeps a process alive.
  const timer = setInterval(() => {
    try {
      stream.flush();
    } catch {
      clearInterval(timer); // destroyed: nothing left to flush
    }
  }, LOG_FLUSH_EVERY_MS).unref();
  return stream;
}

export function loggerOptions(
  level: string,
  stream?: LogDestination,
): LoggerOptions & { stream?: LogDestination } {
  return {
    ...(stream ? { stream } : {}),
    level,
    redact: { paths: redactedPaths, censor: '[redacted]' },
    serializers: {
      req: (req: { id: string; method: string; url: string; ip?: string }) => ({
        id: req.id,
        method: req.method,
        // Query strings can carry one-time tokens (reset links): log the path only.
        path: req.url.split('?')[0],
        ip: req.ip,
      }),
    },
  };
}
