-- Dimensions: the plant's structure (site > area > line > work center > equipment),
-- products and the shift calendar. Every row belongs to a tenant; child rows reference
-- their parent by (tenant_id, id), so a row can never point into another tenant.

-- +goose Up
CREATE TABLE site (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenant ON DELETE CASCADE,
    code       text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text NOT NULL,
    time_zone  text NOT NULL CHECK (takt_is_time_zone(time_zone)),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, code),
    UNIQUE (tenant_id, id)
);

CREATE TABLE area (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    site_id    bigint NOT NULL,
    code       text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text NOT NULL,
    UNIQUE (tenant_id, site_id, code),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, site_id) REFERENCES site (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE line (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    area_id    bigint NOT NULL,
    code       text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text NOT NULL,
    UNIQUE (tenant_id, area_id, code),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, area_id) REFERENCES area (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE work_center (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    line_id    bigint NOT NULL,
    code       text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name       text NOT NULL,
    UNIQUE (tenant_id, line_id, code),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, line_id) REFERENCES line (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE equipment (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              text NOT NULL,
    work_center_id         bigint NOT NULL,
    code                   text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name                   text NOT NULL,
    model                  text,
    manufacturer           text,
    serial_number          text,
    is_active              boolean NOT NULL DEFAULT true,
    -- Default ideal cycle time when no product run says otherwise, seconds per part.
    ideal_cycle_time_s     double precision CHECK (ideal_cycle_time_s > 0),
    -- Unplanned stops shorter than this count as micro-stops (a speed loss).
    micro_stop_threshold_s double precision NOT NULL DEFAULT 120 CHECK (micro_stop_threshold_s >= 0),
    attributes             jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, code),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, work_center_id) REFERENCES work_center (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX equipment_work_center_active ON equipment (work_center_id, is_active);
CREATE INDEX equipment_attributes ON equipment USING gin (attributes jsonb_path_ops) WHERE attributes IS NOT NULL;

CREATE TABLE product (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenant ON DELETE CASCADE,
    code               text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name               text NOT NULL,
    ideal_cycle_time_s double precision NOT NULL CHECK (ideal_cycle_time_s > 0),
    UNIQUE (tenant_id, code),
    UNIQUE (tenant_id, id)
);

-- A shift pattern repeats on the given ISO weekdays (1 = Monday) from starts_at,
-- local time of its site, for duration (which may cross midnight).
CREATE TABLE shift_pattern (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    site_id    bigint NOT NULL,
    name       text NOT NULL CHECK (name <> ''),
    starts_at  time NOT NULL,
    duration   interval NOT NULL CHECK (duration > interval '0' AND duration <= interval '24 hours'),
    weekdays   smallint[] NOT NULL DEFAULT '{1,2,3,4,5}' CHECK (weekdays <@ '{1,2,3,4,5,6,7}' AND cardinality(weekdays) > 0),
    valid_from date NOT NULL DEFAULT '2000-01-01',
    valid_to   date CHECK (valid_to IS NULL OR valid_to >= valid_from),
    UNIQUE (tenant_id, site_id, name, valid_from),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, site_id) REFERENCES site (tenant_id, id) ON DELETE CASCADE
);

-- A planned break within every occurrence of a shift: not planned production time.
CREATE TABLE planned_break (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL,
    shift_pattern_id bigint NOT NULL,
    name             text NOT NULL,
    start_offset     interval NOT NULL CHECK (start_offset >= interval '0'),
    duration         interval NOT NULL CHECK (duration > interval '0'),
    FOREIGN KEY (tenant_id, shift_pattern_id) REFERENCES shift_pattern (tenant_id, id) ON DELETE CASCADE
);

-- A one-off planned stop of one equipment (planned maintenance, trial, holiday).
CREATE TABLE planned_stop (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    equipment_id bigint NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL DEFAULT '',
    CHECK (ends_at > starts_at),
    FOREIGN KEY (tenant_id, equipment_id) REFERENCES equipment (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX planned_stop_equipment_time ON planned_stop (equipment_id, starts_at);

-- +goose Down
DROP TABLE planned_stop;
DROP TABLE planned_break;
DROP TABLE shift_pattern;
DROP TABLE product;
DROP TABLE equipment;
DROP TABLE work_center;
DROP TABLE line;
DROP TABLE area;
DROP TABLE site;
