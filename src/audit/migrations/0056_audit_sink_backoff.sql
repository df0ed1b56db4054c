-- Per-sink delivery state (forward.ts): backoff lives on the sink, not on each queued row, so a sink that
-- is down is probed with one delivery at a time while the others keep flowing. `last_error_class` is a
-- short class (`timeout`, `http_5xx`, ...), never a message: it is listed to operators.
ALTER TABLE audit_sinks
  ADD COLUMN next_attempt_at timestamptz,
  ADD COLUMN failures integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error_class text CHECK (last_error_class ~ '^[a-z0-9_]{1,32}$'),
  ADD COLUMN last_failure_at timestamptz,
  -- A disabled sink (disabled_at) receives no new events but drains its backlog, the disable notice
  -- included; stopped_at is set when it is empty (or an operator stops it at once).
  ADD COLUMN stopped_at timestamptz,
  -- Bounded backlog: beyond AUDIT_SINK_MAX_BACKLOG the oldest rows are dropped and counted.
  ADD COLUMN overflowed_at timestamptz,
  ADD COLUMN overflow_dropped bigint NOT NULL DEFAULT 0,
  ADD COLUMN dropped_total bigint NOT NULL DEFAULT 0;
-- Sinks disabled before this migration dropped their backlog at once: they are stopped.
UPDATE audit_sinks SET stopped_at = disabled_at WHERE disabled_at IS NOT NULL;
-- A sink's backlog, oldest first: its claims, its bounded count and its overflow boundary.
CREATE INDEX audit_outbox_sink_order ON audit_outbox (sink_id, enqueued_at, event_id);
