-- +goose Up
-- Runs with search_path set to the token store's own schema. See sqlite/001_init.sql.
CREATE TABLE grants (
    connection          TEXT PRIMARY KEY,
    subject             TEXT NOT NULL DEFAULT '',
    scopes              TEXT NOT NULL DEFAULT '',
    meta                TEXT NOT NULL DEFAULT '{}',
    token_type          TEXT NOT NULL DEFAULT '',
    access_token        BYTEA,
    refresh_token       BYTEA,
    expiry_ms           BIGINT,
    version             BIGINT NOT NULL,
    needs_reauth        BOOLEAN NOT NULL DEFAULT FALSE,
    reauth_reason       TEXT NOT NULL DEFAULT '',
    last_refresh_at_ms  BIGINT,
    prev_refresh_token  BYTEA,
    rotated_at_ms       BIGINT,
    saved_at_ms         BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);

CREATE TABLE account_tokens (
    connection    TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    token_type    TEXT NOT NULL DEFAULT '',
    meta          TEXT NOT NULL DEFAULT '{}',
    access_token  BYTEA NOT NULL,
    expiry_ms     BIGINT,
    minted_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (connection, account_id)
);

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
