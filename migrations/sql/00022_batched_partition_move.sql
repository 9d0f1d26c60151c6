-- The sink's takt_ensure_sample_partitions no longer moves a large backlog out of the
-- default partition under its lock: a day with over 10,000 rows there is left to
-- takt-migrate partitions, which moves them in batches (migrations.MoveDefaultSamples).
-- Everything else about the function (SECURITY DEFINER, its grants) is unchanged.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION takt_ensure_sample_partitions(from_day date, days integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    day     date;
    part    text;
    lo      timestamptz;
    hi      timestamptz;
    created integer := 0;
    max_move constant integer := 10000;
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
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        -- A day the default partition holds many rows of is left to takt-migrate
        -- partitions, which moves them in batches beside the default partition: moving
        -- them here would lock the default partition, and every writer routed to it, for
        -- as long as the move takes. Its rows keep going to the default partition.
        IF (SELECT count(*) FROM (SELECT FROM samples_default WHERE ts >= lo AND ts < hi LIMIT max_move + 1) s) > max_move THEN
            RAISE NOTICE 'takt_ensure_sample_partitions: % has over % rows in samples_default: left to takt-migrate partitions', part, max_move;
            CONTINUE;
        END IF;
        -- Wait for writers into the default partition to finish, and keep new ones
        -- out until the day's partition is attached: their rows then either are
        -- committed before the move below, or are routed to the new partition.
        LOCK TABLE samples_default IN ACCESS EXCLUSIVE MODE;
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION takt_ensure_sample_partitions(from_day date, days integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
