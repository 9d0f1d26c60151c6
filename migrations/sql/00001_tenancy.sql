-- Tenancy: the tenant table, the application role that row-level security applies
-- to, and the helper every policy uses.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    -- Roles are cluster-wide: create once, never drop (other databases may use it).
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takt_app') THEN
        CREATE ROLE takt_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;
-- +goose StatementEnd

-- takt_tenant is the tenant of the current transaction, set by the application with
-- set_config('app.tenant', $1, true). Unset or empty means no tenant: policies built
-- on it then match no rows.
CREATE FUNCTION takt_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.tenant', true), '') $$;

-- takt_is_time_zone reports whether tz is an IANA time zone name PostgreSQL knows.
CREATE FUNCTION takt_is_time_zone(tz text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) $$;

CREATE TABLE tenant (
    tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

GRANT USAGE ON SCHEMA public TO takt_app;

-- +goose Down
DROP TABLE tenant;
DROP FUNCTION takt_is_time_zone(text);
DROP FUNCTION takt_tenant();
REVOKE USAGE ON SCHEMA public FROM takt_app;
