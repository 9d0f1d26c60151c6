-- States by exception, coverage, anomalies and set-aside recomputations.
--
-- A state observation holds until the next one (sources report by exception); an
-- equipment may opt in to a staleness limit (state_max_age_s). An agent going offline
-- is an UNKNOWN observation with the agent's incarnation, removed again when the same
-- incarnation comes back (the agent lived on and its buffer carries the outage).
-- A window keeps its scheduled time and coverage, and counts that contradict each
-- other are stored as measured with an anomaly instead of failing the write. A
-- recomputation that fails is set aside with its error and retried later.

-- +goose Up
ALTER TABLE equipment ADD COLUMN state_max_age_s double precision CHECK (state_max_age_s > 0);

ALTER TABLE state_observation ADD COLUMN offline_incarnation text;

ALTER TABLE oee_window
    ADD COLUMN scheduled_s double precision NOT NULL DEFAULT 0 CHECK (scheduled_s >= 0),
    ADD COLUMN coverage double precision CHECK (coverage BETWEEN 0 AND 1),
    ADD COLUMN anomalies text[] NOT NULL DEFAULT '{}',
    -- the clock the window was computed with: before ends_at, the window is still open
    ADD COLUMN computed_through timestamptz NOT NULL DEFAULT '-infinity';
-- Windows computed before: what was scheduled is what was not "not scheduled".
UPDATE oee_window SET scheduled_s = planned_s + planned_down_s + unknown_s,
    coverage = CASE WHEN planned_s + planned_down_s + unknown_s > 0
        THEN (planned_s + planned_down_s) / (planned_s + planned_down_s + unknown_s) END;
-- +goose StatementBegin
DO $$
DECLARE c text;
BEGIN
    SELECT conname INTO c FROM pg_constraint
    WHERE conrelid = 'oee_window'::regclass AND contype = 'c'
      AND pg_get_constraintdef(oid) LIKE '%good_count <= total_count%';
    IF c IS NOT NULL THEN
        EXECUTE format('ALTER TABLE oee_window DROP CONSTRAINT %I', c);
    END IF;
END
$$;
-- +goose StatementEnd

-- The day windows still open (computed before their end): what the aggregator's
-- refresh looks for every minute.
CREATE INDEX oee_window_open_days ON oee_window (ends_at) WHERE granularity = 'day' AND computed_through < ends_at;

ALTER TABLE oee_dirty
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN last_error text,
    ADD COLUMN not_before timestamptz NOT NULL DEFAULT '-infinity';
CREATE INDEX oee_dirty_claim ON oee_dirty (marked_at) WHERE attempts = 0;
ALTER TABLE oee_dirty ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oee_dirty USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT, INSERT, UPDATE ON oee_dirty TO takt_app;

-- +goose Down
REVOKE ALL ON oee_dirty FROM takt_app;
DROP POLICY tenant_isolation ON oee_dirty;
ALTER TABLE oee_dirty DISABLE ROW LEVEL SECURITY;
DROP INDEX oee_dirty_claim;
ALTER TABLE oee_dirty DROP COLUMN not_before, DROP COLUMN last_error, DROP COLUMN attempts;
DROP INDEX oee_window_open_days;
DELETE FROM oee_window WHERE good_count > total_count;
ALTER TABLE oee_window ADD CHECK (good_count <= total_count);
ALTER TABLE oee_window DROP COLUMN computed_through, DROP COLUMN anomalies, DROP COLUMN coverage, DROP COLUMN scheduled_s;
ALTER TABLE state_observation DROP COLUMN offline_incarnation;
ALTER TABLE equipment DROP COLUMN state_max_age_s;
