-- Four-eyes: a critical action is recorded with its exact parameters (and their SHA-256 over a canonical
-- JSON form); a different person holding approvals:decide approves it; the requester then runs it with
-- the same parameters, once. Expiry is compared with the clock at each step, never set by a job.
CREATE TABLE access_approval_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  action text NOT NULL,
  -- The permission of the route that asked; the requester must still hold it when the action runs.
  permission text NOT NULL,
  params jsonb NOT NULL,
  params_hash bytea NOT NULL CHECK (length(params_hash) = 32),
  summary text NOT NULL,
  requested_by_type text NOT NULL CHECK (requested_by_type IN ('operator', 'user')),
  requested_by_id text NOT NULL,
  requested_elevation_id uuid,
  requested_at timestamptz NOT NULL,
  -- A pending request expires unless decided by this time; an approval unless executed by it.
  expires_at timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'executing', 'executed', 'failed')),
  decided_by_type text,
  decided_by_id text,
  decided_at timestamptz,
  executed_at timestamptz
);
CREATE INDEX access_approval_requests_status ON access_approval_requests (tenant_id, status, requested_at DESC);
SELECT rampart_enable_tenant_rls('access_approval_requests');
GRANT SELECT, INSERT, UPDATE ON access_approval_requests TO rampart_app;
