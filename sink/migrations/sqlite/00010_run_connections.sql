-- Runs per connection (see the PostgreSQL migration): sync_runs names its connection and
-- mode, and sync_run_connections keeps one row per connection per run. Runs recorded before
-- the upgrade have neither: NULL connection and mode.

-- +goose Up
ALTER TABLE sync_runs ADD COLUMN connection TEXT;
ALTER TABLE sync_runs ADD COLUMN mode TEXT CHECK (mode IN ('incremental', 'full'));

CREATE TABLE sync_run_connections (
    run_id              INTEGER NOT NULL,
    connection          TEXT    NOT NULL,
    source              TEXT    NOT NULL,
    mode                TEXT    NOT NULL CHECK (mode IN ('incremental', 'full')),
    status              TEXT    NOT NULL CHECK (status IN ('ok', 'failed', 'cancelled')),
    started_at          TEXT    NOT NULL,
    finished_at         TEXT    NOT NULL,
    accounts_ok         INTEGER NOT NULL DEFAULT 0,
    accounts_failed     INTEGER NOT NULL DEFAULT 0,
    accounts_restricted INTEGER NOT NULL DEFAULT 0,
    leads_written       INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    PRIMARY KEY (run_id, connection)
);
CREATE INDEX sync_run_connections_last ON sync_run_connections (connection, finished_at);

-- +goose Down
DROP TABLE sync_run_connections;
ALTER TABLE sync_runs DROP COLUMN mode;
ALTER TABLE sync_runs DROP COLUMN connection;
