-- Least privilege for the services that span tenants. Migrations run as the tables'
-- owner; no service logs in as it. Each service's login role is made a member of its
-- group role here (the group roles own nothing):
--
--   takt_ingest      the bridge, the sink and `takt-ingest deadletter`: writes samples
--                    (COPY), its claims, offsets and the dead-letter index, and makes
--                    day partitions through takt_ensure_sample_partitions (SECURITY
--                    DEFINER: it runs as the owner, who alone may attach partitions).
--                    PostgreSQL refuses COPY into a table with row-level security to
--                    anyone RLS applies to, whatever the policies say, so the sink's
--                    login role needs BYPASSRLS, which only a superuser can give:
--                    CREATE ROLE takt_ingest_login LOGIN BYPASSRLS PASSWORD '...' IN ROLE takt_ingest
--   takt_aggregator  reads master data and observations of every tenant and writes what
--                    it derives; a policy of its own admits every tenant's rows, so it
--                    needs no BYPASSRLS:
--                    CREATE ROLE takt_aggregator_login LOGIN PASSWORD '...' IN ROLE takt_aggregator
--   takt_api         (00018) reads and writes as takt_app, one tenant per transaction.
--
-- Neither group may read api_token or the audit log, and none may change the schema.
-- Roles are the cluster's: made once, kept by Down (another database may use them).

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takt_ingest') THEN
        CREATE ROLE takt_ingest NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takt_aggregator') THEN
        CREATE ROLE takt_aggregator NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
-- +goose StatementEnd
GRANT USAGE ON SCHEMA public TO takt_ingest, takt_aggregator;

-- Functions are executable by PUBLIC unless revoked: partitions are made by the
-- owner and the ingest role only, and dropped by the owner only.
ALTER FUNCTION takt_ensure_sample_partitions(date, integer) SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION takt_ensure_sample_partitions(date, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION takt_drop_sample_partitions(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION takt_ensure_sample_partitions(date, integer) TO takt_ingest;

GRANT INSERT ON samples TO takt_ingest;
GRANT SELECT, INSERT ON sink_envelope TO takt_ingest;
GRANT SELECT, INSERT, UPDATE ON sink_offset TO takt_ingest;
GRANT SELECT, INSERT, UPDATE ON dead_letter TO takt_ingest;

GRANT SELECT ON tenant, site, area, line, work_center, equipment, product, shift_pattern,
    planned_break, planned_stop, production_run, downtime_reason, maintenance_event TO takt_aggregator;
GRANT SELECT, INSERT, UPDATE, DELETE ON state_observation, counter_reading, product_observation,
    oee_dirty, oee_window, downtime TO takt_aggregator;
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment',
        'product', 'shift_pattern', 'planned_break', 'planned_stop', 'production_run',
        'downtime_reason', 'maintenance_event', 'state_observation', 'counter_reading',
        'product_observation', 'oee_dirty', 'oee_window', 'downtime']
    LOOP
        EXECUTE format('CREATE POLICY takt_aggregator_all ON %I TO takt_aggregator USING (true) WITH CHECK (true)', t);
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
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment',
        'product', 'shift_pattern', 'planned_break', 'planned_stop', 'production_run',
        'downtime_reason', 'maintenance_event', 'state_observation', 'counter_reading',
        'product_observation', 'oee_dirty', 'oee_window', 'downtime']
    LOOP
        EXECUTE format('DROP POLICY takt_aggregator_all ON %I', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON tenant, site, area, line, work_center, equipment, product, shift_pattern,
    planned_break, planned_stop, production_run, downtime_reason, maintenance_event,
    state_observation, counter_reading, product_observation, oee_dirty, oee_window, downtime
    FROM takt_aggregator;
REVOKE ALL ON samples, sink_envelope, sink_offset, dead_letter FROM takt_ingest;
REVOKE EXECUTE ON FUNCTION takt_ensure_sample_partitions(date, integer) FROM takt_ingest;
GRANT EXECUTE ON FUNCTION takt_ensure_sample_partitions(date, integer), takt_drop_sample_partitions(date) TO PUBLIC;
ALTER FUNCTION takt_ensure_sample_partitions(date, integer) SECURITY INVOKER RESET search_path;
REVOKE USAGE ON SCHEMA public FROM takt_ingest, takt_aggregator;
