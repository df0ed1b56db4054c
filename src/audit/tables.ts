export interface AuditEventsTable {
  id: string;
  tenant_id: string | null;
  occurred_at: Date;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: string;
}

export interface AuditTables {
  audit_events: AuditEventsTable;
}
