-- Re-checks of an approver lock the assignments that give their permission FOR SHARE until the action
-- they guard commits (src/access/locked-holdings.ts), so a role removed meanwhile waits for it, or it for
-- the removal. PostgreSQL lets a role lock rows only with UPDATE on some column. created_at is the one
-- granted: changing it gives nothing the role cannot do already (it may delete and insert assignments).
GRANT UPDATE (created_at) ON access_assignments TO rampart_app;
