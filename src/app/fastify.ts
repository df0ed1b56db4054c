import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyServerOptions } from 'fastify';
import type { Config } from '../platform/config/index.ts';
import { frameworkErrors } from '../platform/http/error-handler.ts';
import { requestIdFor } from '../platform/http/request-id.ts';
import { AccessLogController, lazyChildLogger } from '../platform/http/request-log.ts';
import { canonicalUuid } from '../platform/http/schemas.ts';
import { buildValidator } from '../platform/http/validation.ts';
import { logDestination, loggerOptions } from '../platform/log.ts';
import { tlsOptions } from '../protect/index.ts';

/** The Fastify instance with Rampart's server options: logging, limits, validation. No plugin yet. */
export function createFastify(config: Config, logger: FastifyServerOptions['logger'] | undefined) {
  const accessLog = new AccessLogController();
  const app = Fastify({
    ...tlsOptions(config),
    logger: logger ?? loggerOptions(config.logLevel, logDestination()),
    genReqId: requestIdFor,
    requestIdHeader: false,
    // One access-log line per request instead of Fastify's two (request-log.ts).
    logController: accessLog,
    childLoggerFactory: lazyChildLogger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // Requests that arrive while closing are refused by a hook (shutdown.ts), as problem+json like any error.
    return503OnClosing: false,
    // Header floods are cut at 16 KiB by Node; slow clients are cut here.
    requestTimeout: 30_000,
    // Malformed URLs and over-long path parameters are refused before routing: answer them as problems too.
    frameworkErrors,
    schemaController: { compilersFactory: { buildValidator } },
    ajv: {
      customOptions: {
        // Unknown fields are refused (additionalProperties: false), never silently stripped.
        removeAdditional: false,
        coerceTypes: 'array',
        useDefaults: true,
        allErrors: false,
      },
      // After ajv-formats: ids in their one canonical form (lower case), the form Rampart stores and
      // answers. PostgreSQL matches a uuid in any case, but the JavaScript around it compares text (the
      // last administrator, "not yourself", cache keys), so an upper-case id got past those checks.
      onCreate: (ajv) => ajv.addFormat('uuid', canonicalUuid),
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  accessLog.attach(app.log);
  return app;
}

export type App = ReturnType<typeof createFastify>;
