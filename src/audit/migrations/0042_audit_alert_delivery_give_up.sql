-- Alert deliveries give up (docs/audit.md, "Anomaly rules and alerts"): one still failing
-- AUDIT_ALERT_DELIVERY_MAX_HOURS after it was first due (enqueued_at) is marked failed, keeps its last
-- error, and is no longer attempted. SIEM forwarding (audit_outbox) never gives up; this is only alerts.
ALTER TABLE audit_alert_deliveries ADD COLUMN failed_at timestamptz;

-- The delivery job claims pending rows only.
DROP INDEX audit_alert_deliveries_due;
CREATE INDEX audit_alert_deliveries_due ON audit_alert_deliveries (next_attempt_at) WHERE failed_at IS NULL;

-- A failed delivery goes with its alert when retention prunes the alert (the cascade runs as the table
-- owner, so the queue's row-level security does not hide it from a tenant's pruning transaction). A
-- pending one still keeps its alert, as before: the trigger refuses deleting it through the cascade
-- (trigger depth 2: the foreign key's own trigger is depth 1), while the delivery job's own delete of a
-- delivered row (depth 1) goes through.
ALTER TABLE audit_alert_deliveries
  DROP CONSTRAINT audit_alert_deliveries_alert_id_fkey,
  ADD CONSTRAINT audit_alert_deliveries_alert_id_fkey FOREIGN KEY (alert_id) REFERENCES audit_alerts (id)
    ON DELETE CASCADE;

CREATE FUNCTION audit_alert_deliveries_guard_cascade() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.failed_at IS NULL AND pg_trigger_depth() > 1 THEN
    RAISE EXCEPTION 'audit alert % has a delivery pending; it cannot be deleted', OLD.alert_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END
$$;
CREATE TRIGGER audit_alert_deliveries_pending BEFORE DELETE ON audit_alert_deliveries
  FOR EACH ROW EXECUTE FUNCTION audit_alert_deliveries_guard_cascade();
