-- A head moves forward by at most 10,000 positions per update (security review, docs/audit.md
-- "Append-only"). The app role may update a head's seq (0034's column grants) and 0084 keeps it from
-- moving back, but it could still move a head to the bigint maximum in one statement: every later append
-- of that chain (seq + n) would then overflow, all audited writes of the tenant refused for good. An
-- append moves the head by the number of events it writes: at most 500 (a user-import batch, the largest
-- append; src/audit/chain.ts refuses more than MAX_EVENTS_PER_APPEND = 2,000). At 10,000 per statement,
-- reaching the maximum takes 9 x 10^14 statements. Gaps the app role can still leave are read in
-- bounded time (src/audit/store.ts chainPages) and reported by verify. The table owner can disable the
-- trigger, as it can every trigger.
CREATE FUNCTION audit_chain_heads_refuse_leap() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_chain_heads: the head of chain % cannot move more than 10000 positions at once (from seq % to %)',
    OLD.chain, OLD.seq, NEW.seq USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_chain_heads_bounded_step BEFORE UPDATE ON audit_chain_heads
  FOR EACH ROW WHEN (NEW.seq > OLD.seq + 10000) EXECUTE FUNCTION audit_chain_heads_refuse_leap();
