export interface AuditEventsTable {
  id: string;
  tenant_id: string | null;
  occurred_at: Date;
  actor_type: string;
  actor_id: string | null;
  actor_elevation_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: string;
  /** int8: written as text, read back as text (pg) or bigint/number (PGlite); see chain.ts. */
  chain_seq: string | null;
  prev_hash: Uint8Array | null;
  hash: Uint8Array | null;
  /** Key id (8 bytes) and HMAC-SHA256 of `hash` (mac.ts); NULL on events from before migration 0059. */
  mac?: Uint8Array | null;
}

export interface AuditChainHeadsTable {
  chain: string;
  tenant_id: string | null;
  seq: string;
  head_hash: Uint8Array;
  legacy_events: string;
  pruned_through: string;
  mac_from_seq: string;
}

export interface AuditCheckpointsTable {
  tenant_id: string | null;
  seq: string;
  head_hash: Uint8Array;
  signed_at: Date;
  key_id: string;
  signature: Uint8Array;
  /** Migration 0085: the chain constants the signature covers; NULL (both) on older checkpoints. */
  mac_from_seq: string | null;
  legacy_events: string | null;
}

export interface AuditTables {
  audit_events: AuditEventsTable;
  audit_chain_heads: AuditChainHeadsTable;
  audit_checkpoints: AuditCheckpointsTable;
}
