-- An event is never above its chain's head, and a head never moves back (security review, MEDIUM;
-- docs/audit.md "Append-only"). The app role may INSERT audit_events at any chain_seq and UPDATE a head's
-- seq (0034's column grants): one row written at head+1 without moving the head, or a head moved back
-- below existing rows, made every later append of that chain fail on the unique index audit_events_chain
-- (the app appends at head+1 and cannot delete the row): all audited writes of the tenant blocked for good.

-- (a) A head's seq only goes forward. Appends add to it; retention moves pruned_through, never seq
-- (audit_prune_chain, 0034/0082); nothing else writes it. The WHEN clause keeps the append path free of
-- a function call. The table owner can disable the trigger (an attacker with the owner's rights can do
-- anything; verify then reports what it finds).
CREATE FUNCTION audit_chain_heads_refuse_rewind() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_chain_heads: the head of chain % cannot move back from seq % to %', OLD.chain,
    OLD.seq, NEW.seq USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_chain_heads_no_rewind BEFORE UPDATE ON audit_chain_heads
  FOR EACH ROW WHEN (NEW.seq < OLD.seq) EXECUTE FUNCTION audit_chain_heads_refuse_rewind();

-- (b) An event lies at or below its chain's head when it is written, and so for good: the head never
-- moves back (a), and no one but the table owner may update or delete an event (no grant, and the
-- append-only trigger of 0010). The legitimate append moves the head first and inserts its events after
-- it in the same transaction (src/audit/chain.ts: both paths UPDATE audit_chain_heads, then INSERT), so a
-- check at the end of the INSERT statement holds for it; no deferred check is needed. An event of a chain
-- with no head row is refused too (the first append creates the head before its events).
-- It extends the pruned-prefix guard of 0057 (same statement trigger, same one join of the statement's
-- new rows with the heads): the position must lie in (pruned_through, seq] of its chain. The head table
-- is named with its schema (0052: a temporary table of that name must not stand in for it). It applies to
-- every role; the table owner writing tampered rows directly moves the head before inserting beyond it,
-- as the app role would have to.
CREATE FUNCTION audit_events_refuse_misplaced_positions() RETURNS trigger
  LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.chain_seq AS seq, coalesce(n.tenant_id::text, 'platform') AS chain, h.seq AS head,
      h.pruned_through AS pruned
    INTO bad
    FROM new_events n
    LEFT JOIN public.audit_chain_heads h ON h.chain = coalesce(n.tenant_id::text, 'platform')
   WHERE n.chain_seq IS NOT NULL
     AND (h.chain IS NULL OR n.chain_seq <= h.pruned_through OR n.chain_seq > h.seq)
   -- A row in the pruned prefix is named first, as 0057 named it, whatever else the statement holds.
   ORDER BY (n.chain_seq <= h.pruned_through) DESC NULLS LAST
   LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF bad.head IS NULL THEN
    RAISE EXCEPTION 'audit_events: chain % has no head; seq % cannot be written', bad.chain, bad.seq
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF bad.seq <= bad.pruned THEN
    RAISE EXCEPTION 'audit_events: seq % of chain % lies in its pruned prefix', bad.seq, bad.chain
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RAISE EXCEPTION 'audit_events: seq % of chain % lies beyond its head (seq %)', bad.seq, bad.chain,
    bad.head USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER audit_events_not_in_pruned_prefix ON audit_events;
DROP FUNCTION audit_events_refuse_pruned_positions();
CREATE TRIGGER audit_events_within_chain AFTER INSERT ON audit_events
  REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_misplaced_positions();

-- Defence in depth (security review): columns no role changes once written.
-- mac_from_seq (0059) and legacy_events (0030) are set when a head row is created (by the migrations or
-- by the columns' defaults) and never change: the app role has no UPDATE right on them (0034's column
-- grants), and this trigger keeps them fixed should a grant ever widen, for every role. The table owner
-- can still disable it (as a tamper test simulating a legacy chain does); an attacker with the owner's
-- rights is out of reach of any trigger.
CREATE FUNCTION audit_chain_heads_refuse_fixed_change() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_chain_heads: mac_from_seq and legacy_events of chain % cannot change', OLD.chain
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_chain_heads_fixed_columns BEFORE UPDATE ON audit_chain_heads
  FOR EACH ROW WHEN (NEW.mac_from_seq IS DISTINCT FROM OLD.mac_from_seq
    OR NEW.legacy_events IS DISTINCT FROM OLD.legacy_events)
  EXECUTE FUNCTION audit_chain_heads_refuse_fixed_change();

-- audit_signing_keys.recorded_at (0060) is the database's clock at insert, whatever the insert says: a
-- key cannot be backdated to look older than the server's own key (trust follows the recording order,
-- src/audit/store.ts trustedKeysIn). The app role may insert only key_id and public_key already; this
-- holds for every role, should a grant widen. The table owner can disable the trigger.
CREATE FUNCTION audit_signing_keys_stamp() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  NEW.recorded_at := clock_timestamp();
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_signing_keys_recorded_now BEFORE INSERT ON audit_signing_keys
  FOR EACH ROW EXECUTE FUNCTION audit_signing_keys_stamp();
