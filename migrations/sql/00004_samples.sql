-- The raw time series: one row per sample, partitioned by day (UTC) on ts, with a
-- BRIN index on ts. A DEFAULT partition catches rows for days that have no partition
-- yet, so no sample is ever refused for its date; takt_ensure_sample_partitions moves
-- such rows into the day's partition when it creates it.

-- +goose Up
CREATE TABLE samples (
    tenant_id  text NOT NULL,
    equipment  text NOT NULL,
    tag        text NOT NULL,
    ts         timestamptz NOT NULL,
    value      double precision,
    text_value text,
    quality    smallint NOT NULL CHECK (quality BETWEEN 1 AND 3),
    role       smallint NOT NULL CHECK (role BETWEEN 1 AND 3),
    agent      text NOT NULL,
    seq        bigint NOT NULL CHECK (seq > 0)
) PARTITION BY RANGE (ts);
CREATE INDEX samples_ts_brin ON samples USING brin (ts) WITH (autosummarize = on);
CREATE TABLE samples_default PARTITION OF samples DEFAULT;

-- +goose StatementBegin
-- takt_ensure_sample_partitions creates the daily partitions for days from_day ..
-- from_day + days - 1 that do not exist yet, moving any rows the default partition
-- holds for those days, and returns how many it created. Safe to run concurrently.
CREATE FUNCTION takt_ensure_sample_partitions(from_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day     date;
    part    text;
    lo      timestamptz;
    hi      timestamptz;
    created integer := 0;
BEGIN
    IF days < 0 OR days > 3660 THEN
        RAISE EXCEPTION 'takt_ensure_sample_partitions: days = %: want 0 to 3660', days;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('takt_sample_partitions'));
    FOR i IN 0 .. days - 1 LOOP
        day  := from_day + i;
        part := 'samples_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(quote_ident(part)) IS NOT NULL THEN
            CONTINUE;
        END IF;
        -- Wait for writers into the default partition to finish, and keep new ones
        -- out until the day's partition is attached: their rows then either are
        -- committed before the move below, or are routed to the new partition.
        LOCK TABLE samples_default IN ACCESS EXCLUSIVE MODE;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        -- The range check lets ATTACH skip scanning the new table.
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (ts >= %L AND ts < %L)', part, part || '_range', lo, hi);
        EXECUTE format('WITH moved AS (DELETE FROM samples_default WHERE ts >= %L AND ts < %L RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE samples ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- takt_drop_sample_partitions drops the daily partitions of days before cutoff, and
-- the default partition's rows from before cutoff, and returns how many partitions
-- it dropped.
CREATE FUNCTION takt_drop_sample_partitions(cutoff date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part    record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('takt_sample_partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'samples'::regclass
          AND c.relname ~ '^samples_[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE samples DETACH PARTITION %I', part.relname);
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM samples_default WHERE ts < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION takt_drop_sample_partitions(date);
DROP FUNCTION takt_ensure_sample_partitions(date, integer);
DROP TABLE samples;
