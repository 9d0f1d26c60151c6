-- An index of the dead-letter topic, kept by takt-ingest's sink: what was refused, for
-- which tenant (when the topic or key names one), why, and where the letter is in
-- Kafka, so that a tenant sees its refused data through the API and an operator can
-- find a letter to replay. The payload stays in Kafka; its size and SHA-256 are here.

-- +goose Up
CREATE TABLE dead_letter (
    kafka_partition integer NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset    bigint NOT NULL CHECK (kafka_offset >= 0),
    tenant_id       text, -- NULL when nothing in the letter names a tenant
    received_at     timestamptz NOT NULL,
    reason          text NOT NULL,
    error           text NOT NULL,
    source          text NOT NULL,
    payload_bytes   integer NOT NULL CHECK (payload_bytes >= 0),
    payload_sha256  text NOT NULL,
    truncated       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX dead_letter_tenant_time ON dead_letter (tenant_id, received_at DESC);
ALTER TABLE dead_letter ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dead_letter USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT ON dead_letter TO takt_app;

-- +goose Down
DROP TABLE dead_letter;
