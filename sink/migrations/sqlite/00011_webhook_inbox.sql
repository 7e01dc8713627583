-- The webhook inbox (see the PostgreSQL migration): verified deliveries, stored before they
-- are answered; UNIQUE (vendor, webhook_id) makes a replay insert nothing. body is the
-- request's bytes as verified (a BLOB), and holds PII.

-- +goose Up
CREATE TABLE webhook_inbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor            TEXT    NOT NULL,
    webhook_id        TEXT    NOT NULL,
    event_type        TEXT    NOT NULL,
    account_id        TEXT,
    kind              TEXT,
    op                TEXT    NOT NULL
                      CHECK (op IN ('upsert', 'delete', 'stage', 'status', 'install', 'uninstall', 'ignore')),
    record_id         TEXT,
    vendor_updated_at TEXT,
    occurred_at       TEXT,
    received_at       TEXT    NOT NULL,
    body              BLOB    NOT NULL,
    applied_at        TEXT,
    apply_error       TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (vendor, webhook_id)
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE applied_at IS NULL;

-- +goose Down
DROP TABLE webhook_inbox;
