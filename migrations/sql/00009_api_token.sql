-- API bearer tokens. Only a SHA-256 hash of each token is stored; the token itself is
-- shown once, when made (takt-api token create). The API looks tokens up as the
-- tables' owner, before it knows the tenant; takt_app cannot read this table.

-- +goose Up
CREATE TABLE api_token (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenant ON DELETE CASCADE,
    name       text NOT NULL CHECK (name <> ''),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- +goose Down
DROP TABLE api_token;
