/** Stable codes for the breached-password filter. Messages name the file (and line) so an operator can fix it. */
export type BreachedErrorCode =
  | 'malformed_line'
  | 'bad_input_name'
  | 'no_input'
  | 'bad_magic'
  | 'bad_version'
  | 'truncated'
  | 'corrupt'
  | 'bad_option';

export class BreachedImportError extends Error {
  override readonly name = 'BreachedImportError';
  constructor(
    readonly code: BreachedErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class BreachedFilterError extends Error {
  override readonly name = 'BreachedFilterError';
  constructor(
    readonly code: BreachedErrorCode,
    message: string,
  ) {
    super(message);
  }
}
