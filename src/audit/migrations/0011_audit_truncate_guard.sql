-- Row triggers do not fire on TRUNCATE: guard it with a statement trigger, so even the table owner
-- cannot empty the trail in one statement (the retention routine will prune through its own path).
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
