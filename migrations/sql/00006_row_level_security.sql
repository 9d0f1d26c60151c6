-- Row-level security: every tenant-owned table admits, for the takt_app role, only
-- the rows of the tenant set in the transaction (set_config('app.tenant', $1, true)).
-- With no tenant set, nothing matches. The services that span tenants (ingest,
-- aggregator) connect as the tables' owner, which RLS does not restrict; the API
-- switches to takt_app (SET LOCAL ROLE) in every request's transaction.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment',
        'product', 'shift_pattern', 'planned_break', 'planned_stop', 'production_run',
        'downtime', 'maintenance_event', 'state_interval', 'part_count', 'samples',
        'oee_window', 'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant())', t);
    END LOOP;
END
$$;
-- +goose StatementEnd

GRANT SELECT ON tenant TO takt_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON site, area, line, work_center, equipment, product,
    shift_pattern, planned_break, planned_stop, production_run, downtime, maintenance_event TO takt_app;
GRANT SELECT ON state_interval, part_count, samples, oee_window TO takt_app;
GRANT SELECT, INSERT ON audit_log TO takt_app;

-- +goose Down
REVOKE ALL ON tenant, site, area, line, work_center, equipment, product, shift_pattern,
    planned_break, planned_stop, production_run, downtime, maintenance_event,
    state_interval, part_count, samples, oee_window, audit_log FROM takt_app;
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'site', 'area', 'line', 'work_center', 'equipment',
        'product', 'shift_pattern', 'planned_break', 'planned_stop', 'production_run',
        'downtime', 'maintenance_event', 'state_interval', 'part_count', 'samples',
        'oee_window', 'audit_log']
    LOOP
        EXECUTE format('DROP POLICY tenant_isolation ON %I', t);
        EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
