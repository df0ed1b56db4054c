export { excessiveCost, hashCostBounds } from './cost-bound.ts';
export { type HashFormat, hashFormat, type ParsedHash, parseHash, type Sha256Layout } from './formats.ts';
export {
  createPasswordHasher,
  type PasswordHasher,
  type PasswordHasherOptions,
  type PasswordHasherStats,
  UnsupportedHashFormatError,
  type VerifyResult,
} from './hasher.ts';
export { HasherBusyError } from './limiter.ts';
export { normalisePassword } from './normalise.ts';
export { type Argon2Params, defaultArgon2Params, importLimits } from './params.ts';
export { bcryptWrapBelowCost, wrapWorthy } from './wrapped.ts';
