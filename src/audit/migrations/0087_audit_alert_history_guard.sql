-- The alert-retention guard (0036, 0055, 0082) holds against the app role (security review of
-- 2026-11-28, docs/audit.md "Retention of alerts"). It lets the app role delete an alert only once it is
-- acknowledged and both its acknowledgement and its last match are older than the chain's retention, and
-- it read those from the row, which the app role may update (0033 grants UPDATE on audit_alerts):
-- acknowledged and back-dated, an open alert raised today was deleted at once. And its floor function
-- read `audit_retention` by bare name without a pinned search_path, so the app role's own temporary
-- table of that name (searched first) lowered a tenant's retention for it.

-- (a) What an alert has been stays: its identity and when it was raised never change; an acknowledgement
-- is given once (never taken back or re-dated) and not before the alert was raised; the last match only
-- moves forward. The engine's updates (a new match: keys, occurrences, last event, last_seen_at = now,
-- summary) and an acknowledgement (status, acknowledged_at = now, by, note) keep to that.
CREATE FUNCTION audit_alerts_keep_history() RETURNS trigger
  LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
     OR NEW.rule IS DISTINCT FROM OLD.rule OR NEW.raised_at IS DISTINCT FROM OLD.raised_at
     OR NEW.first_event_id IS DISTINCT FROM OLD.first_event_id THEN
    RAISE EXCEPTION 'audit alert %: its id, chain, rule, first event and raise time cannot change', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.status = 'acknowledged' AND (NEW.status IS DISTINCT FROM 'acknowledged'
     OR NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at) THEN
    RAISE EXCEPTION 'audit alert %: an acknowledgement is not taken back or re-dated', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.acknowledged_at IS DISTINCT FROM OLD.acknowledged_at AND NEW.acknowledged_at < OLD.raised_at THEN
    RAISE EXCEPTION 'audit alert %: it cannot be acknowledged before it was raised', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.last_seen_at < OLD.last_seen_at THEN
    RAISE EXCEPTION 'audit alert %: its last match cannot move back', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_alerts_history BEFORE UPDATE ON audit_alerts
  FOR EACH ROW EXECUTE FUNCTION audit_alerts_keep_history();

-- (b) The guard's functions see only the schema's own tables (pg_temp last: never in front of them).
ALTER FUNCTION audit_alert_prune_floor(uuid) SET search_path = public, pg_temp;
ALTER FUNCTION audit_alerts_guard_delete() SET search_path = public, pg_temp;
