-- The pruned-prefix guard of 0052, once per statement instead of once per row: the app appends events
-- in batches (one INSERT of up to hundreds of rows), and a row trigger's lookup per event cost about a
-- quarter of the append rate on PostgreSQL. Same rule, same error: an event at or below its chain's
-- pruned_through is refused, now by one join of the statement's new rows with the chain heads (an AFTER
-- trigger raising aborts the statement like the BEFORE trigger did).
DROP TRIGGER audit_events_not_in_pruned_prefix ON audit_events;
DROP FUNCTION audit_events_refuse_pruned_position();

CREATE FUNCTION audit_events_refuse_pruned_positions() RETURNS trigger
  LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.chain_seq AS seq, h.chain INTO bad
    FROM new_events n
    JOIN public.audit_chain_heads h ON h.chain = coalesce(n.tenant_id::text, 'platform')
   WHERE n.chain_seq IS NOT NULL AND n.chain_seq <= h.pruned_through
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'audit_events: seq % of chain % lies in its pruned prefix', bad.seq, bad.chain
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_events_not_in_pruned_prefix AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_pruned_positions();
