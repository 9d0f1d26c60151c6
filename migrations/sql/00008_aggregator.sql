-- What the aggregator keeps from the events topic, and the windows it has to
-- recompute. Observations are stored as they arrive, in any order, idempotently
-- (the primary keys drop replays); intervals and increments are derived from them
-- in time order when a window is computed, so late data simply lands in its place.

-- +goose Up
-- One machine-state sample: the state holds from ts until the next observation, for
-- at most the aggregator's max gap (then it is unknown).
CREATE TABLE state_observation (
    tenant_id   text NOT NULL, -- no foreign key: data is never refused for an unregistered tenant
    equipment   text NOT NULL,
    ts          timestamptz NOT NULL,
    category    smallint NOT NULL CHECK (category BETWEEN 0 AND 6),
    reason_code bigint NOT NULL DEFAULT 0 CHECK (reason_code >= 0),
    plc_code    double precision,
    PRIMARY KEY (tenant_id, equipment, ts)
);
CREATE INDEX state_observation_ts_brin ON state_observation USING brin (ts) WITH (autosummarize = on);

-- One reading of a cumulative part counter (before reset and wrap handling).
CREATE TABLE counter_reading (
    tenant_id text NOT NULL,
    equipment text NOT NULL,
    tag       text NOT NULL,
    kind      smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    ts        timestamptz NOT NULL,
    value     double precision NOT NULL CHECK (value >= 0),
    wrap      double precision NOT NULL DEFAULT 0 CHECK (wrap >= 0),
    PRIMARY KEY (tenant_id, equipment, tag, ts)
);
CREATE INDEX counter_reading_ts_brin ON counter_reading USING brin (ts) WITH (autosummarize = on);

-- Equipment-days whose windows must be computed again (new or late data). Written
-- in the same transaction as the observations; any aggregator instance may claim one.
CREATE TABLE oee_dirty (
    tenant_id text NOT NULL,
    equipment text NOT NULL,
    day       date NOT NULL, -- UTC day of the data; the windows touched are found from it
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, equipment, day)
);

ALTER TABLE state_observation ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON state_observation USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
ALTER TABLE counter_reading ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON counter_reading USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT ON state_observation, counter_reading TO takt_app;

-- +goose Down
DROP TABLE oee_dirty;
DROP TABLE counter_reading;
DROP TABLE state_observation;
