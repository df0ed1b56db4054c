import { createAccountService } from './accounts.ts';
import type { IdentityDeps, ServiceDeps } from './deps.ts';
import { memoryFailureBudget } from './failure-budget.ts';
import { createMfaService } from './mfa.ts';
import { createSessionLookup } from './session-lookup.ts';
import { createSessionRevocation } from './session-revocation.ts';
import { createSettingsService } from './settings.ts';
import { createSignIn } from './sign-in.ts';
import { createUserStatusService } from './user-status.ts';

export function createIdentityService(given: IdentityDeps) {
  // One failed-attempt budget per client address for sign-in and change-password (both check a
  // password): Protect's shared limiter, or else one per process, created here so both use the same.
  const failedSignIns = given.failedSignIns ?? memoryFailureBudget();
  const deps: ServiceDeps = { ...given, failedSignIns };
  return {
    deps,
    signIn: createSignIn(deps),
    sessions: { ...createSessionLookup(deps), ...createSessionRevocation(deps) },
    mfa: createMfaService(deps),
    accounts: createAccountService(deps),
    settings: createSettingsService(deps),
    userStatus: createUserStatusService(deps),
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
