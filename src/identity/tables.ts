import type { Generated } from 'kysely';

export interface OperatorsTable {
  id: Generated<string>;
  email: string;
  display_name: string;
  status: Generated<'active' | 'disabled'>;
  created_at: Generated<Date>;
}

export interface OperatorTokensTable {
  id: Generated<string>;
  operator_id: string;
  token_hash: Buffer;
  label: string;
  created_at: Generated<Date>;
  expires_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

export interface IdentityTables {
  operators: OperatorsTable;
  operator_tokens: OperatorTokensTable;
}
