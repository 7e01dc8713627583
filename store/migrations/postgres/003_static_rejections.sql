-- +goose Up
-- Static tokens (HighLevel Private Integration Tokens, LACRM API keys) live in the
-- configuration's secrets, never here. A row records that the vendor refused one (a revoked
-- or expired token): the connection then needs a rotation until its secret holds another
-- token. fingerprint is the first 16 bytes of the refused token's SHA-256, in hex: enough to
-- tell a new token from the refused one, never the token. Times are Unix ms.
CREATE TABLE static_rejections (
    connection     TEXT    NOT NULL,
    credential     TEXT    NOT NULL, -- '' for the connection's one token; a location id for a PIT
    fingerprint    TEXT    NOT NULL,
    secret         TEXT    NOT NULL DEFAULT '', -- where the secret is configured (a file, an env var)
    reason         TEXT    NOT NULL DEFAULT '',
    fix            TEXT    NOT NULL DEFAULT '', -- what the operator does first
    rejected_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (connection, credential)
);

-- +goose Down
DROP TABLE static_rejections;
