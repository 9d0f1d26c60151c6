-- Production runs say which product ran when (entered through the API or by an MES);
-- their figures are optional, since the aggregator computes OEE from the machine's
-- data. A reason-code catalogue per tenant gives names to the codes PLCs send.
-- Downtime events are derived from stop intervals by the aggregator (source
-- 'derived') or entered by people ('manual'). The derived-from-the-wire tables that
-- nothing wrote (state_interval, part_count) are dropped: state_observation and
-- counter_reading hold the data.

-- +goose Up
ALTER TABLE production_run
    ALTER COLUMN end_time DROP NOT NULL,
    ALTER COLUMN planned_production_time_s DROP NOT NULL,
    ALTER COLUMN operating_time_s DROP NOT NULL,
    ALTER COLUMN total_parts_produced DROP NOT NULL,
    ALTER COLUMN good_parts DROP NOT NULL;

CREATE TABLE downtime_reason (
    tenant_id text NOT NULL REFERENCES tenant ON DELETE CASCADE,
    code      bigint NOT NULL CHECK (code >= 0),
    name      text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    category  text CHECK (category IN ('breakdown', 'setup', 'idle', 'planned', 'quality', 'other')),
    PRIMARY KEY (tenant_id, code)
);
ALTER TABLE downtime_reason ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON downtime_reason USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON downtime_reason TO takt_app;

ALTER TABLE downtime ADD COLUMN source text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'derived'));
CREATE UNIQUE INDEX downtime_derived ON downtime (tenant_id, equipment_id, start_time) WHERE source = 'derived';

DROP TABLE state_interval;
DROP TABLE part_count;

-- +goose Down
CREATE TABLE state_interval (
    tenant_id   text NOT NULL REFERENCES tenant,
    equipment   text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    category    smallint NOT NULL CHECK (category BETWEEN 0 AND 6),
    reason_code bigint NOT NULL DEFAULT 0 CHECK (reason_code >= 0),
    plc_code    double precision,
    PRIMARY KEY (tenant_id, equipment, starts_at),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE TABLE part_count (
    tenant_id text NOT NULL REFERENCES tenant,
    equipment text NOT NULL,
    ts        timestamptz NOT NULL,
    kind      smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    increment bigint NOT NULL CHECK (increment >= 0),
    PRIMARY KEY (tenant_id, equipment, kind, ts)
);
ALTER TABLE state_interval ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON state_interval USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
ALTER TABLE part_count ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON part_count USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT ON state_interval, part_count TO takt_app;
DELETE FROM downtime WHERE source = 'derived';
DROP INDEX downtime_derived;
ALTER TABLE downtime DROP COLUMN source;
DROP TABLE downtime_reason;
DELETE FROM production_run WHERE end_time IS NULL OR planned_production_time_s IS NULL OR operating_time_s IS NULL
    OR total_parts_produced IS NULL OR good_parts IS NULL;
ALTER TABLE production_run
    ALTER COLUMN end_time SET NOT NULL,
    ALTER COLUMN planned_production_time_s SET NOT NULL,
    ALTER COLUMN operating_time_s SET NOT NULL,
    ALTER COLUMN total_parts_produced SET NOT NULL,
    ALTER COLUMN good_parts SET NOT NULL;
