-- Forged checkpoints must not block the server (security review, docs/audit.md "Forged checkpoints").
-- Whoever holds the app's database credentials may INSERT into audit_checkpoints, and rows there can never
-- be deleted. A row with a bad signature at the next position used to take that position for good: the
-- unique index made the server's own INSERT a no-op, verify failed from there on, and pruning, which
-- picked checkpoints by position alone, refused (or would have started verification at a forged row).

-- 1. Several rows per position. The database cannot check an Ed25519 signature, so it cannot tell which
--    row of a position is genuine; the server does (store.ts, createCheckpoint): under an advisory lock
--    per chain it reads the rows at the head's position and writes its own unless one of them verifies
--    under its key, so nodes still keep one genuine checkpoint per position. Forged rows stay, are
--    ignored by every reader and named by verify.
DROP INDEX audit_checkpoints_seq;
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (tenant_id, seq);

-- 2. audit_prune_chain prunes only up to a checkpoint whose signature the caller verified: p_trusted is
--    the list of such positions (prune.ts reads the chain's checkpoints and checks them against the
--    trusted keys). Otherwise unchanged from 0055 (same scope check, cutoff clamp, gap check). The app
--    role could already write checkpoint rows, so taking the list from it trusts it with nothing new;
--    what changes is that the server no longer prunes to, or verifies from, a row nobody signed.
--    The 4-argument version trusted every row, so it goes.
DROP FUNCTION audit_prune_chain(uuid, timestamptz, bigint, boolean);
CREATE FUNCTION audit_prune_chain(p_tenant uuid, p_cutoff timestamptz, p_max_events bigint, p_dry_run boolean,
    p_trusted bigint[])
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
    SELECT audit_retention_in_force(r.days, r.previous_days, r.changed_at, now()) INTO stored_days
      FROM audit_retention r WHERE r.tenant_id = p_tenant;
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
      WHERE c.tenant_id IS NOT DISTINCT FROM p_tenant AND c.seq > pruned AND c.seq = ANY (p_trusted);
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
      AND c.seq < coalesce(barrier, lim + 1) AND c.seq = ANY (p_trusted);
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
REVOKE ALL ON FUNCTION audit_prune_chain(uuid, timestamptz, bigint, boolean, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_prune_chain(uuid, timestamptz, bigint, boolean, bigint[]) TO rampart_app;
