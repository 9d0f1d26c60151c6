-- Every change to what an OEE answer is made of (the windows, and the plant
-- hierarchy that decides which equipment a line or site sums) is announced on the
-- channel takt_oee_changed when its transaction commits, so that an API server can
-- keep answers until they change (api/internal/server/answers.go). Payloads:
--   '<tenant> <day>'  the windows of that tenant starting on that UTC day changed;
--   '<tenant>'        the tenant's hierarchy changed: any of its answers may have;
--   '*'               a table was truncated: every answer may have.
-- PostgreSQL sends a payload once per transaction however many rows repeat it.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION takt_oee_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('takt_oee_changed', '*');
    ELSIF TG_TABLE_NAME = 'oee_window' THEN
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('takt_oee_changed', OLD.tenant_id || ' ' || (OLD.starts_at AT TIME ZONE 'UTC')::date);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('takt_oee_changed', NEW.tenant_id || ' ' || (NEW.starts_at AT TIME ZONE 'UTC')::date);
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('takt_oee_changed', OLD.tenant_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('takt_oee_changed', NEW.tenant_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['oee_window', 'equipment', 'work_center', 'line', 'area', 'site']
    LOOP
        EXECUTE format('CREATE TRIGGER takt_oee_changed AFTER INSERT OR UPDATE OR DELETE ON %I
            FOR EACH ROW EXECUTE FUNCTION takt_oee_changed()', t);
        EXECUTE format('CREATE TRIGGER takt_oee_truncated AFTER TRUNCATE ON %I
            FOR EACH STATEMENT EXECUTE FUNCTION takt_oee_changed()', t);
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
    FOREACH t IN ARRAY ARRAY['oee_window', 'equipment', 'work_center', 'line', 'area', 'site']
    LOOP
        EXECUTE format('DROP TRIGGER takt_oee_changed ON %I', t);
        EXECUTE format('DROP TRIGGER takt_oee_truncated ON %I', t);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION takt_oee_changed();
