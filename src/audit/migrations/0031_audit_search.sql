-- Search: newest first by (occurred_at, chain_seq), the order the API pages in. Each filter has an index
-- that leads with the chain (tenant_id) and ends with that order, so a page of a 10-million-event tenant
-- is an index range scan whichever filter is given. Outcome is left to these (three values).
CREATE INDEX audit_events_search_time ON audit_events (tenant_id, occurred_at, chain_seq);
CREATE INDEX audit_events_search_actor ON audit_events (tenant_id, actor_id, occurred_at, chain_seq);
CREATE INDEX audit_events_search_action ON audit_events (tenant_id, action text_pattern_ops, occurred_at, chain_seq);
CREATE INDEX audit_events_search_target ON audit_events (tenant_id, target_type, target_id, occurred_at, chain_seq);
CREATE INDEX audit_events_search_ip ON audit_events (tenant_id, ip, occurred_at, chain_seq);
-- Superseded by audit_events_search_time.
DROP INDEX audit_events_tenant_time;
