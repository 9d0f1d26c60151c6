-- A tamper-evident audit trail. The append-only triggers stop honest mistakes, but
-- the tables' owner can disable them; so every entry also carries its place in a
-- hash chain: hash = sha256(previous entry's hash || this entry's content), in the
-- order entries were written (chain_seq, given under a lock). Changing, removing
-- or inserting an entry afterwards breaks the chain from there on, and
-- `takt-migrate audit-verify` says where; it also prints the head hash, which an
-- operator records elsewhere (a ticket, a second system) so that cutting entries
-- off the end is noticed too.

-- +goose Up
ALTER TABLE audit_log ADD COLUMN chain_seq bigint, ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- +goose StatementBegin
CREATE FUNCTION takt_audit_content(e audit_log) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(concat_ws(E'\x1f', e.chain_seq::text, e.tenant_id, extract(epoch FROM e.at)::text,
        e.actor, e.action, e.entity, e.entity_id, coalesce(e.before::text, ''), coalesce(e.after::text, '')), 'UTF8')
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- SECURITY DEFINER: the chain spans every tenant, while the API inserts as takt_app,
-- which row-level security shows only its own tenant's entries.
CREATE FUNCTION takt_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    last audit_log;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('takt_audit_chain'));
    SELECT * INTO last FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1;
    NEW.chain_seq := coalesce(last.chain_seq, 0) + 1;
    NEW.prev_hash := coalesce(last.hash, '\x'::bytea);
    NEW.hash := sha256(NEW.prev_hash || takt_audit_content(NEW));
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- Entries written before: chained now, in id order (the append-only trigger is
-- lifted for the backfill only).
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete;
-- +goose StatementBegin
DO $$
DECLARE
    r audit_log;
    prev bytea := '\x'::bytea;
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        n := n + 1;
        r.chain_seq := n;
        UPDATE audit_log SET chain_seq = n, prev_hash = prev, hash = sha256(prev || takt_audit_content(r)) WHERE id = r.id
            RETURNING hash INTO prev;
    END LOOP;
END
$$;
-- +goose StatementEnd
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;
ALTER TABLE audit_log ALTER COLUMN chain_seq SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_log_chain ON audit_log (chain_seq);
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION takt_audit_chain();

-- +goose Down
DROP TRIGGER audit_log_chain ON audit_log;
DROP INDEX audit_log_chain;
DROP FUNCTION takt_audit_chain();
DROP FUNCTION takt_audit_content(audit_log);
ALTER TABLE audit_log DROP COLUMN chain_seq, DROP COLUMN prev_hash, DROP COLUMN hash;
