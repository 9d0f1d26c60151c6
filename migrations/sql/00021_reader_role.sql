-- A read-only role across tenants for reporting tools (the Grafana plant dashboard,
-- deploy/grafana/takt-plant.json): it reads the OEE windows and the plant hierarchy
-- of every tenant, and nothing else (no samples, tokens, audit log or personal data);
-- it writes nothing.
--   CREATE ROLE grafana_takt LOGIN PASSWORD '...' IN ROLE takt_reader;

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takt_reader') THEN
        CREATE ROLE takt_reader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
-- +goose StatementEnd
GRANT USAGE ON SCHEMA public TO takt_reader;
GRANT SELECT ON tenant, site, area, line, work_center, equipment, oee_window TO takt_reader;
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment', 'oee_window']
    LOOP
        EXECUTE format('CREATE POLICY takt_reader_all ON %I FOR SELECT TO takt_reader USING (true)', t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment', 'oee_window']
    LOOP
        EXECUTE format('DROP POLICY takt_reader_all ON %I', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
REVOKE SELECT ON tenant, site, area, line, work_center, equipment, oee_window FROM takt_reader;
REVOKE USAGE ON SCHEMA public FROM takt_reader;
