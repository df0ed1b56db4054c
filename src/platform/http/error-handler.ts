import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isStatementTimeout, isTransientConflict } from '../db/index.ts';
import { platformError } from './errors.ts';
import { AppError, type FieldError, type Problem, problemType } from './problem.ts';

const partNames: Record<string, string> = {
  querystring: 'query',
  body: 'body',
  params: 'path',
  headers: 'header',
};

function fieldErrors(error: FastifyError): FieldError[] {
  const part = partNames[error.validationContext ?? 'body'] ?? 'body';
  return (error.validation ?? []).map((issue) => {
    const params = issue.params as Record<string, unknown>;
    const extra = typeof params.additionalProperty === 'string' ? `/${params.additionalProperty}` : '';
    const missing = typeof params.missingProperty === 'string' ? `/${params.missingProperty}` : '';
    const pointer = `/${part}${issue.instancePath}${extra}${missing}`;
    const message =
      issue.keyword === 'additionalProperties'
        ? 'unknown field: remove it'
        : issue.keyword === 'required'
          ? 'is required'
          : issue.keyword === 'format' && params.format === 'uuid'
            ? 'must be a UUID in lower case (8-4-4-4-12 hex digits), as Rampart returns ids'
            : (issue.message ?? 'is invalid');
    return { pointer, message };
  });
}

/** Maps anything thrown during a request to an AppError; unknown errors become a logged 500. */
/**
 * PostgreSQL data exceptions that only a value sent in can cause: an invalid datetime format (22007), a
 * datetime out of range (22008), an invalid text representation (22P02), an invalid parameter value
 * (22023). Others of class 22 (a numeric overflow, the prune function's chain gap) are the server's.
 */
const clientValueCodes = new Set(['22007', '22008', '22P02', '22023']);
export const isDataException = (error: unknown): boolean => {
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  return typeof code === 'string' && clientValueCodes.has(code) && typeof severity === 'string';
};

export function toAppError(error: FastifyError | AppError | Error): AppError {
  if (error instanceof AppError) return error;
  const fe = error as FastifyError;
  if (fe.validation) {
    const errors = fieldErrors(fe);
    const first = errors[0];
    const detail = first ? `${first.pointer} ${first.message}.` : 'The request does not match the schema.';
    return platformError('validation_failed', detail, { errors });
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return platformError('malformed_json', 'Send a well-formed JSON document (RFC 8259) as the body.');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return platformError('body_too_large', 'Send a smaller body; the limit is set by BODY_LIMIT_BYTES.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return platformError('unsupported_media_type', 'Send the body as application/json.');
  }
  if (error instanceof SyntaxError && fe.statusCode === 400) {
    return platformError('malformed_json', 'Send a well-formed JSON document (RFC 8259) as the body.');
  }
  if (isDataException(error)) {
    // A backstop, not the way input is checked: schemas and handlers refuse bad values with a named
    // problem first. A value that slipped past them (a date PostgreSQL has no such day for, an address
    // form it does not parse) is still the client's, and the handler logs it to be caught earlier.
    return platformError(
      'value_not_accepted',
      'A value in the request is not one the database accepts (an impossible date, an address form it ' +
        'does not read); check the values you sent.',
    );
  }
  if (isTransientConflict(error)) {
    // A deadlock or serialization failure rolled the whole transaction back: nothing changed, and the
    // same request sent again normally goes through (the paths that expect one retry it themselves).
    return platformError(
      'unavailable',
      'Another change to the same records ran at the same moment and this one was rolled back, changing ' +
        'nothing; send the request again.',
      { retryAfterSeconds: 1 },
    );
  }
  if (isStatementTimeout(error)) {
    // DATABASE_STATEMENT_TIMEOUT_MS cancelled a statement and its transaction rolled back: a request over
    // far more rows than usual, or a database under strain. Not the client's fault, and nothing changed.
    return platformError(
      'unavailable',
      'The database took too long on this request and cancelled it, changing nothing; send it again ' +
        'later, or ask for less at once (a shorter time range, a smaller page).',
      { retryAfterSeconds: 5 },
    );
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new AppError(
      'bad_request',
      { status: fe.statusCode, title: 'Bad request' },
      'The request is malformed.',
    );
  }
  return platformError('internal', 'Something failed on our side; the request id identifies it in the logs.');
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: AppError) {
  const problem: Problem = {
    type: problemType(error.code),
    title: error.spec.title,
    status: error.spec.status,
    detail: error.detail,
    code: error.code,
    instance: request.url.split('?')[0] ?? '/',
    requestId: request.id,
    ...(error.extra.errors ? { errors: error.extra.errors } : {}),
    ...(error.extra.retryAfterSeconds !== undefined
      ? { retryAfterSeconds: error.extra.retryAfterSeconds }
      : {}),
  };
  if (error.extra.retryAfterSeconds !== undefined) {
    reply.header('retry-after', String(error.extra.retryAfterSeconds));
  }
  for (const [name, value] of Object.entries(error.extra.headers ?? {})) reply.header(name, value);
  return reply.status(problem.status).type('application/problem+json; charset=utf-8').send(problem);
}

/** Errors Fastify raises before routing (bad percent-encoding, over-long parameters), as problems. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const appError =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? platformError('uri_too_long', 'A path segment is too long; no resource has such a name.')
      : platformError('malformed_url', 'The URL is not valid: check its percent-encoding.');
  request.log.info({ code: appError.code }, 'request refused');
  reply.header('x-request-id', request.id);
  return sendProblem(request, reply, appError);
}

export interface ErrorHandlerOptions {
  /** Called for every 403 before it is sent (the audit capability records denials). */
  onDenied?: (request: FastifyRequest, error: AppError) => Promise<void>;
}

export const errorHandlerPlugin = fp<ErrorHandlerOptions>(
  async (app: FastifyInstance, { onDenied }) => {
    app.setErrorHandler(async (error: FastifyError, request, reply) => {
      const appError = toAppError(error);
      if (isTransientConflict(error))
        request.log.warn({ err: error }, 'transaction rolled back by a conflict');
      else if (appError.spec.status >= 500) request.log.error({ err: error }, 'request failed');
      else if (appError.code === 'value_not_accepted')
        request.log.warn({ err: error }, 'a value reached the database unchecked');
      else request.log.info({ code: appError.code }, 'request refused');
      if (appError.spec.status === 403 && onDenied) await onDenied(request, appError);
      return sendProblem(request, reply, appError);
    });
    app.setNotFoundHandler({}, (request, reply) =>
      sendProblem(
        request,
        reply,
        platformError('not_found', `Nothing is served at ${request.method} ${request.url.split('?')[0]}.`),
      ),
    );
  },
  { name: 'rampart-errors' },
);
