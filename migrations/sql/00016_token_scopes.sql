-- API tokens get a scope (read: GET only; manage: also change master data and facts;
-- admin: also list and revoke the tenant's tokens), an expiry, and who made them.
-- Tokens made before keep what they could do (manage) and never expire. Every token
-- and tenant operation is written to audit_log (by takt-api and its CLI).

-- +goose Up
ALTER TABLE api_token ADD COLUMN scope text NOT NULL DEFAULT 'manage' CHECK (scope IN ('read', 'manage', 'admin'));
ALTER TABLE api_token ALTER COLUMN scope SET DEFAULT 'read';
ALTER TABLE api_token ADD COLUMN expires_at timestamptz;
ALTER TABLE api_token ADD COLUMN created_by text NOT NULL DEFAULT 'unknown';
CREATE INDEX api_token_tenant ON api_token (tenant_id, created_at DESC);

-- +goose Down
DROP INDEX api_token_tenant;
ALTER TABLE api_token DROP COLUMN created_by;
ALTER TABLE api_token DROP COLUMN expires_at;
ALTER TABLE api_token DROP COLUMN scope;
