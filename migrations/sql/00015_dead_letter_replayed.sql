-- takt-ingest deadletter replay notes here when it replayed a letter, so that a
-- rerun skips the letters already replayed (unless told -again) and an operator sees
-- what was replayed. Replay is exactly-once in storage without it (the sink drops an
-- envelope it holds by its identity); this only saves the work and tells the story.

-- +goose Up
ALTER TABLE dead_letter ADD COLUMN replayed_at timestamptz;

-- +goose Down
ALTER TABLE dead_letter DROP COLUMN replayed_at;
