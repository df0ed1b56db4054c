-- Retention: each chain keeps its events for a number of days, then whole prefixes of the chain are
-- pruned up to a signed checkpoint, and verification starts from that checkpoint (pruned_through).

-- A tenant's own retention (days). No row: the server's default (AUDIT_RETENTION_DAYS). The platform
-- chain's retention is a server setting (AUDIT_PLATFORM_RETENTION_DAYS), not stored here.
CREATE TABLE audit_retention (
  tenant_id uuid NOT NULL,
  days integer NOT NULL CHECK (days BETWEEN 30 AND 36500),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id)
);
SELECT rampart_enable_tenant_rls('audit_retention');
GRANT SELECT, INSERT, UPDATE ON audit_retention TO rampart_app;

-- The app moves a head forward (seq, head_hash) and creates heads; it must not move pruned_through
-- (that would skip verification of a prefix) nor raise legacy_events (that would hide rows slipped in
-- outside the chain). Only audit_prune_chain, below, moves pruned_through.
REVOKE INSERT, UPDATE ON audit_chain_heads FROM rampart_app;
GRANT INSERT (chain, tenant_id) ON audit_chain_heads TO rampart_app;
GRANT UPDATE (seq, head_hash) ON audit_chain_heads TO rampart_app;

-- The append-only guard, now with one exception: the retention routine (audit_prune_chain) announces in
-- a transaction-local setting the chain and the checkpoint it prunes through, and only rows of that
-- chain at or before that position may be deleted. The app role has no DELETE privilege at all, so the
-- setting opens nothing to it; the only way it can delete is through audit_prune_chain's own checks.
CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
  LANGUAGE plpgsql AS $$
DECLARE
  allowed text := coalesce(current_setting('rampart.audit_prune', true), '');
BEGIN
  IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND TG_TABLE_NAME = 'audit_events' AND allowed <> ''
     AND OLD.chain_seq IS NOT NULL
     AND split_part(allowed, ':', 1) = coalesce(OLD.tenant_id::text, 'platform')
     AND OLD.chain_seq <= split_part(allowed, ':', 2)::bigint THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Prunes one chain: deletes the events after pruned_through up to the newest signed checkpoint whose
-- events are all older than the cutoff, and moves pruned_through there. Runs with its owner's rights
-- (the app role may not delete), so it enforces everything itself:
--   * the caller's scope must be the chain's (a tenant transaction prunes only its own chain);
--   * the cutoff is never later than now() minus the chain's stored retention, and never later than
--     now() minus 30 days, whatever the caller passes: a recent event cannot be deleted through here;
--   * it stops at a signed checkpoint, so verification can start from a signed head;
--   * it refuses a prefix with a gap (deleted rows would hide a tampering).
-- At most about p_max_events positions per call (the next checkpoint if it lies further), so a large
-- backlog is pruned in several short transactions. p_dry_run: only say what would be pruned.
CREATE FUNCTION audit_prune_chain(p_tenant uuid, p_cutoff timestamptz, p_max_events bigint, p_dry_run boolean)
  RETURNS TABLE (from_seq bigint, through_seq bigint, events bigint, effective_cutoff timestamptz)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  chain_name text := coalesce(p_tenant::text, 'platform');
  stored_days integer;
  cutoff timestamptz;
  pruned bigint;
  head_seq bigint;
  lim bigint;
  barrier bigint;
  target bigint;
  deleted bigint;
BEGIN
  IF p_tenant IS DISTINCT FROM rampart_current_tenant() THEN
    RAISE EXCEPTION 'audit_prune_chain: the chain is not the transaction''s scope'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_tenant IS NOT NULL THEN
    SELECT r.days INTO stored_days FROM audit_retention r WHERE r.tenant_id = p_tenant;
  END IF;
  cutoff := least(p_cutoff, now() - make_interval(days => greatest(30, coalesce(stored_days, 30))));
  -- Two pruners of one chain take turns (writers of the chain are not blocked meanwhile).
  IF NOT p_dry_run THEN
    PERFORM pg_advisory_xact_lock(hashtext('rampart.audit_prune'), hashtext(chain_name));
  END IF;
  SELECT h.pruned_through, h.seq INTO pruned, head_seq FROM audit_chain_heads h WHERE h.chain = chain_name;
  IF pruned IS NULL THEN
    RETURN QUERY SELECT 0::bigint, 0::bigint, 0::bigint, cutoff;
    RETURN;
  END IF;
  -- How far this call may go: p_max_events positions, or the first checkpoint beyond that.
  lim := head_seq;
  IF p_max_events IS NOT NULL THEN
    SELECT greatest(pruned + p_max_events, min(c.seq)) INTO lim FROM audit_checkpoints c
      WHERE c.tenant_id IS NOT DISTINCT FROM p_tenant AND c.seq > pruned;
    lim := least(coalesce(lim, pruned + p_max_events), head_seq);
  END IF;
  -- The first event in range that is too young: pruning stops before it.
  IF p_tenant IS NULL THEN
    SELECT min(e.chain_seq) INTO barrier FROM audit_events e
      WHERE e.tenant_id IS NULL AND e.chain_seq > pruned AND e.chain_seq <= lim AND e.occurred_at >= cutoff;
  ELSE
    SELECT min(e.chain_seq) INTO barrier FROM audit_events e
      WHERE e.tenant_id = p_tenant AND e.chain_seq > pruned AND e.chain_seq <= lim AND e.occurred_at >= cutoff;
  END IF;
  SELECT max(c.seq) INTO target FROM audit_checkpoints c
    WHERE c.tenant_id IS NOT DISTINCT FROM p_tenant AND c.seq > pruned AND c.seq <= lim
      AND c.seq < coalesce(barrier, lim + 1);
  IF target IS NULL THEN
    RETURN QUERY SELECT pruned, pruned, 0::bigint, cutoff;
    RETURN;
  END IF;
  IF p_dry_run THEN
    RETURN QUERY SELECT pruned, target, target - pruned, cutoff;
    RETURN;
  END IF;
  PERFORM set_config('rampart.audit_prune', chain_name || ':' || target, true);
  IF p_tenant IS NULL THEN
    DELETE FROM audit_events e WHERE e.tenant_id IS NULL AND e.chain_seq > pruned AND e.chain_seq <= target;
  ELSE
    DELETE FROM audit_events e WHERE e.tenant_id = p_tenant AND e.chain_seq > pruned AND e.chain_seq <= target;
  END IF;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  PERFORM set_config('rampart.audit_prune', '', true);
  IF deleted <> target - pruned THEN
    RAISE EXCEPTION 'audit_prune_chain: chain % has a gap between seq % and %; run rampart audit verify',
      chain_name, pruned, target USING ERRCODE = 'data_exception';
  END IF;
  UPDATE audit_chain_heads h SET pruned_through = target WHERE h.chain = chain_name;
  RETURN QUERY SELECT pruned, target, deleted, cutoff;
END
$$;
REVOKE ALL ON FUNCTION audit_prune_chain(uuid, timestamptz, bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_prune_chain(uuid, timestamptz, bigint, boolean) TO rampart_app;
