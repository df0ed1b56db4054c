import { type FastifyBaseLogger, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { routeConfig } from './route-config.ts';

/** The path without its query string: query strings can carry one-time tokens (reset links). */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * One access-log line per request, written by Fastify when the answer has gone out ("request
 * completed": request id, method, path, route template, status, milliseconds, client address), instead
 * of Fastify's two. At debug level an "incoming request" line is written on arrival too, for tracing
 * requests that never complete. Fastify's other internal lines (stream errors, serializer failures)
 * are untouched.
 *
 * The access line is built here from those fields only, none of which can hold a secret, so it goes
 * through a child logger without the redaction paths: redaction costs ~20 µs a line, more than a bare
 * request, and it stays on for every other line, where a handler might attach anything.
 */
export class AccessLogController extends LogController {
  #access: FastifyBaseLogger | null = null;
  #traceArrivals = false;

  /** Called once the app's logger exists (Fastify creates it after taking this controller). */
  attach(log: FastifyBaseLogger): void {
    this.#access = log.child({}, { redact: [] } as never);
    this.#traceArrivals = log.level === 'debug' || log.level === 'trace';
  }

  override incomingRequest(request: FastifyRequest): void {
    if (!this.#traceArrivals || !this.#access) return;
    this.#access.debug(
      { reqId: request.id, method: request.method, path: pathOf(request.url), ip: request.ip },
      'incoming request',
    );
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (error) {
      // An error object may carry anything: this line goes through the redacting logger.
      request.log.error({ err: error, status: reply.statusCode }, 'request errored');
      return;
    }
    this.#access?.info(
      {
        reqId: request.id,
        method: request.method,
        path: pathOf(request.url),
        route: routeConfig(request).url ?? null,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        ip: request.ip,
      },
      'request completed',
    );
  }
}

type LogMethod = (...args: unknown[]) => void;

/**
 * `request.log`, created on first use. Fastify makes a child logger per request; with redaction on,
 * pino runs the redaction paths over its bindings, ~2 µs a request, yet most requests never log
 * through it (the access line goes through the controller above).
 */
class LazyChildLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Record<string, unknown>;
  readonly #options: object;
  #real: FastifyBaseLogger | null = null;

  constructor(parent: FastifyBaseLogger, bindings: Record<string, unknown>, options: object) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  #logger(): FastifyBaseLogger {
    this.#real ??= this.#parent.child(this.#bindings, this.#options);
    return this.#real;
  }

  get level(): string {
    return this.#real?.level ?? this.#parent.level;
  }
  set level(level: string) {
    this.#logger().level = level;
  }
  fatal(...args: unknown[]) {
    (this.#logger().fatal as LogMethod)(...args);
  }
  error(...args: unknown[]) {
    (this.#logger().error as LogMethod)(...args);
  }
  warn(...args: unknown[]) {
    (this.#logger().warn as LogMethod)(...args);
  }
  info(...args: unknown[]) {
    (this.#logger().info as LogMethod)(...args);
  }
  debug(...args: unknown[]) {
    (this.#logger().debug as LogMethod)(...args);
  }
  trace(...args: unknown[]) {
    (this.#logger().trace as LogMethod)(...args);
  }
  silent(...args: unknown[]) {
    (this.#logger().silent as LogMethod)(...args);
  }
  child(bindings: Record<string, unknown>, options?: object) {
    return this.#logger().child(bindings, options);
  }
  isLevelEnabled(level: string): boolean {
    const logger = this.#logger() as FastifyBaseLogger & { isLevelEnabled?: (l: string) => boolean };
    return logger.isLevelEnabled?.(level) ?? true;
  }
  bindings(): Record<string, unknown> {
    const logger = this.#logger() as FastifyBaseLogger & { bindings?: () => Record<string, unknown> };
    return logger.bindings?.() ?? { ...this.#bindings };
  }
}

/** Fastify's `childLoggerFactory`: the per-request logger, created only when something logs. */
export function lazyChildLogger(
  parent: FastifyBaseLogger,
  bindings: Record<string, unknown>,
  options: object,
): FastifyBaseLogger {
  return new LazyChildLogger(parent, bindings, options) as unknown as FastifyBaseLogger;
}
