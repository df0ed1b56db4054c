-- The database knows the server's default retentions (security review 2026-11-27, MEDIUM; docs/audit.md,
-- "Why the app role cannot abuse it"). audit_prune_chain and the alert-pruning floor knew only a tenant's
-- own row and otherwise fell back to the 30-day floor, so the app role could delete, at once and with no
-- audit.trail.pruned event, the 31-to-400-day-old events (and alerts) of every tenant on the server's
-- default, and of the platform chain, whose retention lived only in the app's configuration.

-- One row: the default for tenants without an own setting (AUDIT_RETENTION_DAYS) and the platform chain's
-- (AUDIT_PLATFORM_RETENTION_DAYS). Written only by the schema owner: after every migration run (`rampart
-- migrate`, or the embedded engine's start) from the configuration of whoever migrates (retention.ts,
-- retentionDefaultsWriter). The app role may only read it, so a node whose configuration says less
-- cannot prune by less: the database clamps to this value.
CREATE TABLE audit_retention_defaults (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  tenant_days integer NOT NULL CHECK (tenant_days BETWEEN 30 AND 36500),
  platform_days integer NOT NULL CHECK (platform_days BETWEEN 30 AND 36500),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- The shipped defaults, until a migration run with a configuration writes its own.
INSERT INTO audit_retention_defaults (tenant_days, platform_days) VALUES (400, 400);
GRANT SELECT ON audit_retention_defaults TO rampart_app;

-- The retention a chain has when it has no own setting: the tenants' default, or the platform chain's.
CREATE FUNCTION audit_default_retention(p_tenant uuid) RETURNS integer
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT coalesce((SELECT CASE WHEN p_tenant IS NULL THEN d.platform_days ELSE d.tenant_days END
    FROM audit_retention_defaults d), 400)
$$;

-- The alert-pruning floor (0036, 0055): a tenant without a row, and the platform chain, get the default
-- instead of 30 days.
CREATE OR REPLACE FUNCTION audit_alert_prune_floor(p_tenant uuid) RETURNS timestamptz
  LANGUAGE sql STABLE AS $$
  SELECT now() - make_interval(days => greatest(30, coalesce(
    (SELECT audit_retention_in_force(r.days, r.previous_days, r.changed_at, now())
       FROM audit_retention r WHERE p_tenant IS NOT NULL AND r.tenant_id = p_tenant),
    audit_default_retention(p_tenant))))
$$;

-- A tenant's first own setting replaces the default: its history (0055) keeps at least the database's
-- default as the retention in force before it, whatever previous_days the writer gives, so that an app
-- role inserting {days: 30, previous_days: 30} waits 30 days like any other shortening.
CREATE OR REPLACE FUNCTION audit_retention_keep_history() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.days = OLD.days THEN
      NEW.previous_days := OLD.previous_days;
      NEW.changed_at := OLD.changed_at;
      RETURN NEW;
    END IF;
    NEW.previous_days := audit_retention_in_force(OLD.days, OLD.previous_days, OLD.changed_at, now());
  ELSE
    NEW.previous_days := least(36500, greatest(coalesce(NEW.previous_days, 30),
      audit_default_retention(NEW.tenant_id)));
  END IF;
  NEW.changed_at := now();
  RETURN NEW;
END
$$;

-- audit_prune_chain (0058): a chain without an own setting is clamped to the default, not to 30 days.
-- Otherwise unchanged. CREATE OR REPLACE keeps its owner and grants.
CREATE OR REPLACE FUNCTION audit_prune_chain(p_tenant uuid, p_cutoff timestamptz, p_max_events bigint,
    p_dry_run boolean, p_trusted bigint[])
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
  stored_days := coalesce(stored_days, audit_default_retention(p_tenant));
  cutoff := least(p_cutoff, now() - make_interval(days => greatest(30, stored_days)));
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
