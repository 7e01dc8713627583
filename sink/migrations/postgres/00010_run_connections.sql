-- Runs per connection (issue #17): a connection failing every run must show as such even
-- while another connection's runs succeed. sync_runs names the connection a run covers
-- (NULL when it covers several) and its mode, and sync_run_connections keeps one row per
-- connection per run, written as the connection's part of the run ends. Runs recorded before
-- the upgrade have neither: NULL connection and mode. Neither holds lead PII, so
-- grant-analyst grants sync_run_connections; run it again after the upgrade.

-- +goose Up
ALTER TABLE sync_runs
    ADD COLUMN connection text,
    ADD COLUMN mode       text CHECK (mode IN ('incremental', 'full'));
COMMENT ON COLUMN sync_runs.connection IS 'The connection the run covers; NULL when it covers several (or it was recorded before migration 00010).';
COMMENT ON COLUMN sync_runs.mode IS 'incremental, or full (a full pass); NULL for runs recorded before migration 00010.';

CREATE TABLE sync_run_connections (
    run_id              bigint      NOT NULL,
    connection          text        NOT NULL,
    source              text        NOT NULL,
    mode                text        NOT NULL CHECK (mode IN ('incremental', 'full')),
    status              text        NOT NULL CHECK (status IN ('ok', 'failed', 'cancelled')),
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL,
    accounts_ok         integer     NOT NULL DEFAULT 0,
    accounts_failed     integer     NOT NULL DEFAULT 0,
    accounts_restricted integer     NOT NULL DEFAULT 0,
    leads_written       bigint      NOT NULL DEFAULT 0,
    error               text,
    PRIMARY KEY (run_id, connection)
);
-- `leadsync status` reads each connection's last run and its last ok one.
CREATE INDEX sync_run_connections_last ON sync_run_connections (connection, finished_at);
COMMENT ON TABLE sync_run_connections IS
    'One row per connection per run: status (failed when its account listing or any of its accounts failed), accounts by outcome, leads_written, and its first error.';

-- +goose Down
DROP TABLE sync_run_connections;
ALTER TABLE sync_runs
    DROP COLUMN mode,
    DROP COLUMN connection;
