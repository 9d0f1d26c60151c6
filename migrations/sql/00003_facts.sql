-- Facts. Two kinds:
--  * entered by people or MES (production runs, downtime, maintenance), referencing
--    equipment by id;
--  * derived from the wire (state intervals, part counts), keyed by the equipment
--    code that arrives in envelopes, so that data is never refused because the
--    equipment has not been registered yet.
-- Check constraints on these (potentially big) tables are added NOT VALID and then
-- validated, which takes a weaker lock than a plain ADD CONSTRAINT on a filled table.

-- +goose Up
CREATE TABLE production_run (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id                 text NOT NULL,
    equipment_id              bigint NOT NULL,
    product_id                bigint NOT NULL,
    shift_pattern_id          bigint,
    order_id                  text,
    batch_number              text,
    start_time                timestamptz NOT NULL,
    end_time                  timestamptz NOT NULL,
    planned_production_time_s bigint NOT NULL CHECK (planned_production_time_s >= 0),
    operating_time_s          bigint NOT NULL CHECK (operating_time_s >= 0),
    total_parts_produced      integer NOT NULL CHECK (total_parts_produced >= 0),
    good_parts                integer NOT NULL CHECK (good_parts >= 0),
    scrap_parts               integer NOT NULL DEFAULT 0 CHECK (scrap_parts >= 0),
    rework_parts              integer NOT NULL DEFAULT 0 CHECK (rework_parts >= 0),
    created_at                timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES product (tenant_id, id),
    FOREIGN KEY (tenant_id, shift_pattern_id) REFERENCES shift_pattern (tenant_id, id)
);
ALTER TABLE production_run ADD CONSTRAINT production_run_valid CHECK (
    end_time > start_time
    AND operating_time_s <= planned_production_time_s
    AND good_parts <= total_parts_produced
    AND good_parts + scrap_parts + rework_parts <= total_parts_produced
) NOT VALID;
ALTER TABLE production_run VALIDATE CONSTRAINT production_run_valid;
CREATE INDEX production_run_equipment_time ON production_run (equipment_id, start_time DESC)
    INCLUDE (total_parts_produced, good_parts, operating_time_s, planned_production_time_s);
CREATE INDEX production_run_product_time ON production_run (product_id, start_time DESC);

CREATE TABLE downtime (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    equipment_id bigint NOT NULL,
    start_time   timestamptz NOT NULL,
    end_time     timestamptz,
    category     smallint NOT NULL CHECK (category BETWEEN 0 AND 6),
    reason_code  integer NOT NULL DEFAULT 0 CHECK (reason_code >= 0),
    reason_text  text NOT NULL DEFAULT '',
    planned      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id)
);
ALTER TABLE downtime ADD CONSTRAINT downtime_end_after_start CHECK (end_time IS NULL OR end_time > start_time) NOT VALID;
ALTER TABLE downtime VALIDATE CONSTRAINT downtime_end_after_start;
CREATE INDEX downtime_equipment_time ON downtime (equipment_id, start_time DESC);

CREATE TABLE maintenance_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    equipment_id bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('preventive', 'corrective', 'predictive', 'inspection')),
    start_time   timestamptz NOT NULL,
    end_time     timestamptz,
    description  text NOT NULL DEFAULT '',
    technician   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id)
);
ALTER TABLE maintenance_event ADD CONSTRAINT maintenance_event_end_after_start CHECK (end_time IS NULL OR end_time > start_time) NOT VALID;
ALTER TABLE maintenance_event VALIDATE CONSTRAINT maintenance_event_end_after_start;
CREATE INDEX maintenance_event_equipment_time ON maintenance_event (equipment_id, start_time DESC);

-- Machine state intervals, derived from state samples. ends_at is NULL while open.
-- category holds schemas.StateCategory codes (0 UNKNOWN ... 6 NOT_SCHEDULED).
CREATE TABLE state_interval (
    tenant_id   text NOT NULL REFERENCES tenant,
    equipment   text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    category    smallint NOT NULL CHECK (category BETWEEN 0 AND 6),
    reason_code bigint NOT NULL DEFAULT 0 CHECK (reason_code >= 0),
    plc_code    double precision,
    PRIMARY KEY (tenant_id, equipment, starts_at)
);
ALTER TABLE state_interval ADD CONSTRAINT state_interval_end_after_start CHECK (ends_at IS NULL OR ends_at > starts_at) NOT VALID;
ALTER TABLE state_interval VALIDATE CONSTRAINT state_interval_end_after_start;
CREATE INDEX state_interval_starts_brin ON state_interval USING brin (starts_at) WITH (autosummarize = on);

-- Part counts as increments (counter resets and wraps already resolved).
-- kind holds schemas.CounterKind codes (1 total, 2 good, 3 scrap).
CREATE TABLE part_count (
    tenant_id text NOT NULL REFERENCES tenant,
    equipment text NOT NULL,
    ts        timestamptz NOT NULL,
    kind      smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    increment bigint NOT NULL,
    PRIMARY KEY (tenant_id, equipment, kind, ts)
);
ALTER TABLE part_count ADD CONSTRAINT part_count_increment_non_negative CHECK (increment >= 0) NOT VALID;
ALTER TABLE part_count VALIDATE CONSTRAINT part_count_increment_non_negative;

-- +goose Down
DROP TABLE part_count;
DROP TABLE state_interval;
DROP TABLE maintenance_event;
DROP TABLE downtime;
DROP TABLE production_run;
