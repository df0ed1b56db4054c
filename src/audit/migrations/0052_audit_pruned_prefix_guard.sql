-- A pruned prefix stays empty. Retention deletes positions 1..pruned_through of a chain (0034), and
-- verification then starts at the checkpoint there; a row written back into that range would be served
-- by search and export yet never walked. No legitimate writer goes there: the app appends after the
-- head, which is always at or beyond pruned_through. So an insert at or below the chain's pruned_through
-- is refused, for every role the trigger applies to (the app role cannot disable it).
-- One lookup of the chain's head row by its primary key per inserted row; events with no position
-- (rows from before 0030) are left to the audit_events_chained constraint. The head table is named with
-- its schema: the inserting role's own temporary table of that name must not stand in for it.
-- Verification also counts rows in the pruned range (src/audit/verify.ts), for rows written past this
-- trigger by the table owner.
CREATE FUNCTION audit_events_refuse_pruned_position() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.chain_seq IS NOT NULL AND NEW.chain_seq <= (
    SELECT h.pruned_through FROM public.audit_chain_heads h
    WHERE h.chain = coalesce(NEW.tenant_id::text, 'platform')
  ) THEN
    RAISE EXCEPTION 'audit_events: seq % of chain % lies in its pruned prefix', NEW.chain_seq,
      coalesce(NEW.tenant_id::text, 'platform') USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_not_in_pruned_prefix BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_pruned_position();
