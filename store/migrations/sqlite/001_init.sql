-- +goose Up
-- One row per grant (connection). Token columns are AES-256-GCM ciphertexts bound to their
-- row and column; everything else is metadata that Status may show. Times are Unix ms.
CREATE TABLE grants (
    connection          TEXT PRIMARY KEY,
    subject             TEXT NOT NULL DEFAULT '',
    scopes              TEXT NOT NULL DEFAULT '',
    meta                TEXT NOT NULL DEFAULT '{}',
    token_type          TEXT NOT NULL DEFAULT '',
    access_token        BLOB,
    refresh_token       BLOB,
    expiry_ms           INTEGER,
    version             INTEGER NOT NULL,
    needs_reauth        INTEGER NOT NULL DEFAULT 0,
    reauth_reason       TEXT NOT NULL DEFAULT '',
    last_refresh_at_ms  INTEGER,
    prev_refresh_token  BLOB,
    rotated_at_ms       INTEGER,
    saved_at_ms         INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
);

-- Access tokens minted per account from a grant (LeadConnector location tokens).
CREATE TABLE account_tokens (
    connection    TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    token_type    TEXT NOT NULL DEFAULT '',
    meta          TEXT NOT NULL DEFAULT '{}',
    access_token  BLOB NOT NULL,
    expiry_ms     INTEGER,
    minted_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (connection, account_id)
);

-- key_check: a known plaintext sealed with the store key, to reject a wrong key at open.
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
