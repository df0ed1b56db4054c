-- Least-privilege operator API tokens (security review, 2026-11-27: every operator API token carried
-- every platform permission, so the decision API's caller and a WAF log shipper each held a token that
-- could disable operators and suspend tenants). NULL: every platform permission, as before (sign-in
-- sessions, and API tokens issued without scopes). Else the only platform permissions the token carries;
-- the authorizer refuses any other. Only API tokens are scoped, and never to nothing.
-- Expand-only: a nullable column. A node of an older build ignores it (the token has every platform
-- permission there): issue scoped tokens once every node runs this build.
ALTER TABLE operator_tokens
  ADD COLUMN scopes text[],
  ADD CONSTRAINT operator_tokens_scopes_api CHECK (scopes IS NULL OR (kind = 'api' AND cardinality(scopes) > 0));
