-- Personal data is sealed by the application (AES-256-GCM, servicekit/pii): the
-- technician of a maintenance event, who created a token, and the audit log's actor
-- hold "pii:v1:<key id>:..." instead of the name. A maintenance event's technician
-- is found by equality through technician_hash, an HMAC of the name under the index
-- key; the name itself is never stored in clear. Rows written before are sealed by
-- `takt-api pii rotate` (the audit log is append-only and chained: its rows keep the
-- key they were written with, which must stay listed while they are kept).

-- +goose Up
ALTER TABLE maintenance_event ADD COLUMN technician_hash bytea CHECK (length(technician_hash) = 32);
CREATE INDEX maintenance_event_technician ON maintenance_event (tenant_id, technician_hash) WHERE technician_hash IS NOT NULL;

-- +goose Down
DROP INDEX maintenance_event_technician;
ALTER TABLE maintenance_event DROP COLUMN technician_hash;
