-- Exactly-once for the sink, without a unique index on samples (which would cut COPY
-- to a third of its speed). An agent sends every sample in exactly one envelope and
-- resends an envelope only whole and unchanged (from its disk buffer), so every
-- duplicate the links upstream can make (agent replays, MQTT redelivery, Kafka
-- producer retries) is a duplicate envelope. The sink inserts each envelope's identity
-- here in the same transaction as its rows; an envelope already present is skipped.
-- This is order-independent: envelopes may arrive in any seq order. One row per
-- envelope (hundreds of samples) keeps the index small.

-- +goose Up
CREATE TABLE sink_envelope (
    tenant_id   text NOT NULL,
    agent       text NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    samples     integer NOT NULL CHECK (samples > 0),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent, first_seq),
    CHECK (last_seq >= first_seq)
);
CREATE INDEX sink_envelope_ingested_brin ON sink_envelope USING brin (ingested_at);

-- +goose Down
DROP TABLE sink_envelope;
