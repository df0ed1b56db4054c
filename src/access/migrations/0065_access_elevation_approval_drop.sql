-- When the last approval would activate an elevation, the earlier approvals are checked again, and one
-- whose approver has since lost the right to approve (disabled, a role removed, no longer holding what
-- the elevation gives) is dropped, with an access.elevation.approval_dropped audit event: the request
-- stays pending (src/access/elevations.ts). Dropping one is a DELETE of its row.
GRANT DELETE ON access_elevation_approvals TO rampart_app;
