-- An envelope's identity gains the agent's incarnation (envelope field "incarnation",
-- new at every start of the agent): an agent whose seq starts over, because its
-- gateway was re-imaged or its buffer lost, sends new identities instead of having
-- its new data dropped as duplicates of old envelopes. Envelopes from agents that do
-- not send the field have the incarnation ''. The primary key is rebuilt: on a large
-- table this takes a lock for as long as the index build (run it in a quiet hour, or
-- trim old claims first: the sink only needs claims as old as anything that can still
-- be resent).

-- +goose Up
ALTER TABLE sink_envelope ADD COLUMN incarnation text NOT NULL DEFAULT '';
ALTER TABLE sink_envelope DROP CONSTRAINT sink_envelope_pkey;
ALTER TABLE sink_envelope ADD PRIMARY KEY (tenant_id, agent, incarnation, first_seq);

-- +goose Down
DELETE FROM sink_envelope a USING sink_envelope b
    WHERE a.tenant_id = b.tenant_id AND a.agent = b.agent AND a.first_seq = b.first_seq
      AND a.incarnation > b.incarnation;
ALTER TABLE sink_envelope DROP CONSTRAINT sink_envelope_pkey;
ALTER TABLE sink_envelope ADD PRIMARY KEY (tenant_id, agent, first_seq);
ALTER TABLE sink_envelope DROP COLUMN incarnation;
