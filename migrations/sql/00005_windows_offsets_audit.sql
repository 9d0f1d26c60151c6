-- Computed OEE windows, the sink's Kafka positions, and the append-only audit log.

-- +goose Up
-- One row per equipment and window. Times are seconds; every figure a roll-up needs
-- (times, counts, ideal run time) is stored so that lines, sites and longer windows
-- are computed from sums, never by averaging ratios. The ratios are NULL when their
-- denominator is zero (no planned time, no run time, no parts).
CREATE TABLE oee_window (
    tenant_id         text NOT NULL REFERENCES tenant,
    equipment         text NOT NULL,
    granularity       text NOT NULL CHECK (granularity IN ('hour', 'shift', 'day')),
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    planned_s         double precision NOT NULL CHECK (planned_s >= 0),
    run_s             double precision NOT NULL CHECK (run_s >= 0),
    setup_s           double precision NOT NULL DEFAULT 0 CHECK (setup_s >= 0),
    breakdown_s       double precision NOT NULL DEFAULT 0 CHECK (breakdown_s >= 0),
    micro_stop_s      double precision NOT NULL DEFAULT 0 CHECK (micro_stop_s >= 0),
    idle_s            double precision NOT NULL DEFAULT 0 CHECK (idle_s >= 0),
    planned_down_s    double precision NOT NULL DEFAULT 0 CHECK (planned_down_s >= 0),
    not_scheduled_s   double precision NOT NULL DEFAULT 0 CHECK (not_scheduled_s >= 0),
    unknown_s         double precision NOT NULL DEFAULT 0 CHECK (unknown_s >= 0),
    ideal_run_s       double precision NOT NULL DEFAULT 0 CHECK (ideal_run_s >= 0),
    total_count       bigint NOT NULL CHECK (total_count >= 0),
    good_count        bigint NOT NULL CHECK (good_count >= 0),
    scrap_count       bigint NOT NULL DEFAULT 0 CHECK (scrap_count >= 0),
    availability      double precision,
    performance       double precision,
    quality           double precision,
    oee               double precision,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment, granularity, starts_at),
    CHECK (ends_at > starts_at),
    CHECK (good_count <= total_count)
);

-- Where each sink consumer group stands in each Kafka partition: the offset of the
-- next record to read. Written in the same transaction as the rows, so rows and
-- position never disagree.
CREATE TABLE sink_offset (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL CHECK (partition >= 0),
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Who changed what. Append-only: the trigger below refuses UPDATE, DELETE and
-- TRUNCATE for everyone, owner included.
CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenant,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL CHECK (actor <> ''),
    action    text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    entity    text NOT NULL,
    entity_id text NOT NULL,
    before    jsonb,
    after     jsonb
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at DESC);

-- +goose StatementBegin
CREATE FUNCTION takt_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION takt_audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION takt_audit_log_append_only();

-- +goose Down
DROP TABLE audit_log;
DROP FUNCTION takt_audit_log_append_only();
DROP TABLE sink_offset;
DROP TABLE oee_window;
