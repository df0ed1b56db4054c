-- Signed checkpoints leave the database too: each one is queued for every active SIEM sink as an
-- `audit.checkpoint` message, in the checkpoint's own transaction (docs/audit.md, "Anchoring outside
-- the database"). The SIEM then holds signed high-water marks that whoever owns the database cannot
-- take back, so cutting off the newest events shows (`rampart audit verify --expect`).
-- event_id is then the message's own id (what a receiver de-duplicates by), not an audit event's.
ALTER TABLE audit_outbox ADD COLUMN message text NOT NULL DEFAULT 'audit.event'
  CONSTRAINT audit_outbox_message_check CHECK (message IN ('audit.event', 'audit.checkpoint'));
