-- A shortened retention takes effect for pruning only after 30 days (docs/audit.md, "Retention"):
-- pruning keeps events for the longest retention in effect during the last 30 days, so whoever
-- shortens it cannot delete evidence at the next hourly prune. One step of history is enough:
-- previous_days is the longest retention in effect during the 30 days before changed_at.
ALTER TABLE audit_retention ADD COLUMN previous_days integer CHECK (previous_days BETWEEN 30 AND 36500);
ALTER TABLE audit_retention ADD COLUMN changed_at timestamptz;

-- The retention pruning may use for a tenant now: its setting, or the one it replaced while the change
-- is less than 30 days old (whichever is longer). NULL when the tenant has no row (the server default).
-- Read in the caller's scope (a tenant sees its own row).
CREATE FUNCTION audit_retention_in_force(p_days integer, p_previous integer, p_changed timestamptz,
    p_at timestamptz) RETURNS integer
  LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_previous IS NOT NULL AND p_changed > p_at - interval '30 days'
    THEN greatest(p_days, p_previous) ELSE p_days END
$$;

-- The history is kept by the database, with its own clock: the app role may update the row (it sets
-- the retention) but cannot clear or back-date the history. On the first own setting the database
-- does not know the server's default that applied before, so it keeps the previous_days it is given.
CREATE FUNCTION audit_retention_keep_history() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.days = OLD.days THEN
      NEW.previous_days := OLD.previous_days;
      NEW.changed_at := OLD.changed_at;
      RETURN NEW;
    END IF;
    NEW.previous_days := audit_retention_in_force(OLD.days, OLD.previous_days, OLD.changed_at, now());
  END IF;
  NEW.changed_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_retention_history BEFORE INSERT OR UPDATE ON audit_retention
  FOR EACH ROW EXECUTE FUNCTION audit_retention_keep_history();

-- The floor of alert pruning follows the retention in force too.
CREATE OR REPLACE FUNCTION audit_alert_prune_floor(p_tenant uuid) RETURNS timestamptz
  LANGUAGE sql STABLE AS $$
  SELECT now() - make_interval(days => greatest(30, coalesce(
    (SELECT audit_retention_in_force(r.days, r.previous_days, r.changed_at, now())
       FROM audit_retention r WHERE r.tenant_id = p_tenant), 30)))
$$;

-- audit_prune_chain (0034) clamps its cutoff to the retention in force instead of the stored setting;
-- otherwise unchanged. CREATE OR REPLACE keeps its owner and grants.
CREATE OR REPLACE FUNCTION audit_prune_chain(p_tenant uuid, p_cutoff timestamptz, p_max_events bigint, p_dry_run boolean)
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
