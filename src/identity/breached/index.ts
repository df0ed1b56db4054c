/** Compromised-password screening: common list, offline Pwned Passwords filter, online range API. */
export {
  type BreachedCheck,
  type BreachedCheckerOptions,
  type BreachedPasswordChecker,
  type BreachedSourceLayer,
  createBreachedPasswordChecker,
} from './checker.ts';
export { type BreachedCliIo, registerBreachedCommands } from './cli.ts';
export { commonPasswordCount, isCommonPassword } from './common-passwords.ts';
export { type BreachedErrorCode, BreachedFilterError, BreachedImportError } from './errors.ts';
export { type ImportOptions, type ImportProgress, type ImportSummary, importBreached } from './import.ts';
export { type BreachedFilter, breachedFilterFromBuffer, loadBreachedFilter } from './load.ts';
export {
  createPwnedRangeClient,
  type FetchLike,
  type RangeClient,
  type RangeClientOptions,
  type RangeResult,
} from './range-client.ts';
