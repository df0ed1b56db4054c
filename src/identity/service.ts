import { createAccountService } from './accounts.ts';
import type { IdentityDeps } from './deps.ts';
import { createMfaService } from './mfa.ts';
import { createSessionService } from './sessions.ts';
import { createSettingsService } from './settings.ts';
import { createSignIn } from './sign-in.ts';
import { createUserStatusService } from './user-status.ts';

export function createIdentityService(deps: IdentityDeps) {
  return {
    deps,
    signIn: createSignIn(deps),
    sessions: createSessionService(deps),
    mfa: createMfaService(deps),
    accounts: createAccountService(deps),
    settings: createSettingsService(deps),
    userStatus: createUserStatusService(deps),
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
