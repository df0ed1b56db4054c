-- Retention of alerts (docs/audit.md, "Alerts"): the pruning job deletes acknowledged alerts whose
-- acknowledgement and last match are both older than the chain's retention, once none of their
-- deliveries is pending (a delivery is deleted when it succeeds, so a remaining one is still being
-- retried and keeps its alert). The app role may delete alerts only within those bounds: the trigger
-- below refuses an open alert, or one acknowledged or matched within the chain's stored retention or the
-- 30-day floor, whatever the caller's cutoff.

-- The newest time an alert of the chain may have been acknowledged or matched and still be deleted.
-- Read in the caller's scope (a tenant sees its own audit_retention row; the platform chain has none).
CREATE FUNCTION audit_alert_prune_floor(p_tenant uuid) RETURNS timestamptz
  LANGUAGE sql STABLE AS $$
  SELECT now() - make_interval(days => greatest(30, coalesce(
    (SELECT r.days FROM audit_retention r WHERE r.tenant_id = p_tenant), 30)))
$$;

CREATE FUNCTION audit_alerts_guard_delete() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status IS DISTINCT FROM 'acknowledged' OR OLD.acknowledged_at IS NULL
     OR greatest(OLD.acknowledged_at, OLD.last_seen_at) >= audit_alert_prune_floor(OLD.tenant_id) THEN
    RAISE EXCEPTION 'audit alert % is open or within its retention; it cannot be deleted', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END
$$;
CREATE TRIGGER audit_alerts_retention BEFORE DELETE ON audit_alerts
  FOR EACH ROW EXECUTE FUNCTION audit_alerts_guard_delete();

GRANT DELETE ON audit_alerts TO rampart_app;
