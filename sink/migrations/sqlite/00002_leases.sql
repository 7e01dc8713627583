-- The scale-out tables (see the PostgreSQL migration). SQLite is single-writer, so one
-- worker only: the tables stay empty and exist so both dialects share one schema.

-- +goose Up
CREATE TABLE sync_slots (
    id           INTEGER PRIMARY KEY,
    connection   TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('incremental', 'full')),
    slot_at      TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    opened_by    TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    closed_at    TEXT,
    UNIQUE (connection, kind, slot_at)
);

CREATE TABLE account_leases (
    source       TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    owner        TEXT,
    slot_id      INTEGER,
    acquired_at  TEXT,
    heartbeat_at TEXT,
    expires_at   TEXT,
    done_slot_id INTEGER,
    done_by      TEXT,
    done_at      TEXT,
    PRIMARY KEY (source, account_id)
);

-- +goose Down
DROP TABLE account_leases;
DROP TABLE sync_slots;
