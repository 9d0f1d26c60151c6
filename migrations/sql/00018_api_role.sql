-- Least privilege for the API. takt_api is the group role the API's login role is
-- made a member of (CREATE ROLE takt_api_login LOGIN PASSWORD '...' IN ROLE takt_api):
-- it owns nothing and reads no tenant table itself; a request's transaction switches
-- to takt_app (a member may), whose rows row-level security limits to the request's
-- tenant. Besides, it may look tokens up and revoke them (api_token, which takt_app
-- cannot read) and write the audit log. A compromised API that skipped the switch
-- would see nothing: not the tables (no grant), not other tenants (RLS).
-- Roles are the cluster's: made once, kept by Down (another database may use them).

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takt_api') THEN
        CREATE ROLE takt_api NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
-- +goose StatementEnd
GRANT takt_app TO takt_api;
GRANT USAGE ON SCHEMA public TO takt_api;
GRANT SELECT, UPDATE (revoked_at) ON api_token TO takt_api;
GRANT INSERT ON audit_log TO takt_api;

-- +goose Down
REVOKE INSERT ON audit_log FROM takt_api;
REVOKE SELECT, UPDATE (revoked_at) ON api_token FROM takt_api;
REVOKE USAGE ON SCHEMA public FROM takt_api;
REVOKE takt_app FROM takt_api;
