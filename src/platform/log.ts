import type { LoggerOptions } from 'pino';

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

export function loggerOptions(level: string): LoggerOptions {
  return {
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
