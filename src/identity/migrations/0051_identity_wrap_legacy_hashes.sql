-- Wrapping fast legacy password hashes in argon2id (docs/identity.md, decision 0012). The background
-- job and `rampart users wrap-legacy-hashes` look for hashes still in a fast format: salted SHA-256
-- (three layouts) and bcrypt below cost 10. Partial indexes keep that look-up, run for every tenant
-- at each tick, an index probe that finds nothing once the work is done. The predicate is repeated
-- word for word by the queries (wrap-legacy.ts), which is what lets the planner use these indexes.
CREATE INDEX users_fast_password_hash ON users (tenant_id, id)
  WHERE password_hash LIKE 'sha256$%' OR password_hash LIKE 'sha256:%'
    OR password_hash LIKE '{SSHA256}%' OR password_hash LIKE '$2_$0_$%';
CREATE INDEX password_history_fast_password_hash ON password_history (tenant_id, user_id)
  WHERE password_hash LIKE 'sha256$%' OR password_hash LIKE 'sha256:%'
    OR password_hash LIKE '{SSHA256}%' OR password_hash LIKE '$2_$0_$%';

-- Old passwords kept for the reuse rule are hashes at rest too: the job wraps them in place (the only
-- column the app may update there; row-level security still confines it to the tenant).
GRANT UPDATE (password_hash) ON password_history TO rampart_app;
