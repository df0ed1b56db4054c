/**
 * RFC 9457 problem details. `code` is stable and machine-readable; `detail` is written for a person
 * and says what to change. Nothing secret ever goes into either.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  requestId?: string;
  errors?: FieldError[];
  retryAfterSeconds?: number;
}

export interface FieldError {
  /** JSON pointer into the request part: `/body/slug`, `/query/limit`. */
  pointer: string;
  message: string;
}

export interface ErrorSpec {
  status: number;
  title: string;
}

/** An error a handler throws on purpose; the error handler turns it into problem+json. */
export class AppError extends Error {
  constructor(
    readonly code: string,
    readonly spec: ErrorSpec,
    readonly detail: string,
    readonly extra: {
      errors?: FieldError[];
      retryAfterSeconds?: number;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(detail);
    this.name = 'AppError';
  }
}

/** Declares a capability's error table: `const errors = defineErrors({ tenant_not_found: {...} })`. */
export function defineErrors<K extends string>(table: Record<K, ErrorSpec>) {
  return (code: K, detail: string, extra?: AppError['extra']) =>
    new AppError(code, table[code], detail, extra);
}

export const problemType = (code: string) => `https://rampart.dev/problems/${code.replaceAll('_', '-')}`;
