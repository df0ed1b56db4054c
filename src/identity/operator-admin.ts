import { createOperatorDirectory } from './operator-directory.ts';
import { createOperatorRevocation } from './operator-revocation.ts';
import { createOperatorStatus } from './operator-status.ts';
import { type OperatorAdminDeps, operatorWrites } from './operator-writes.ts';

/**
 * Revocation and status of operator credentials: sign-out, an operator's own tokens, and disabling,
 * enabling, revoking and unlocking other operators. Every change is audited in its transaction and,
 * once committed, published on the invalidation bus so no node keeps honouring a cached credential
 * (operator-writes.ts). In three parts: who the operators are (operator-directory.ts), revoking
 * credentials (operator-revocation.ts) and an operator's status (operator-status.ts).
 */
export function createOperatorAdmin(deps: OperatorAdminDeps) {
  const writes = operatorWrites(deps);
  return {
    ...createOperatorDirectory(writes),
    ...createOperatorRevocation(writes),
    ...createOperatorStatus(writes),
  };
}

export type OperatorAdmin = ReturnType<typeof createOperatorAdmin>;
