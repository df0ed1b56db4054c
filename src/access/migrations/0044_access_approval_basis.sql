-- The state a four-eyes request was made against: the SHA-256 (over canonical JSON) of what the action
-- would overwrite, such as the whole settings document. An approved request runs only while the current
-- state hashes the same, so it never silently undoes a change made after it was asked for. NULL: the
-- action overwrites nothing (a role assignment, an invitation), or the request predates this column.
ALTER TABLE access_approval_requests
  ADD COLUMN basis_hash bytea CHECK (basis_hash IS NULL OR length(basis_hash) = 32);
