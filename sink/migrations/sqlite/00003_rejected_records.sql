-- Records quarantined rather than stored, their count per run, the worker of each run, and
-- the 'abandoned' run status (see the PostgreSQL migration). SQLite cannot alter a CHECK
-- constraint, so sync_runs is rebuilt; its rows are never deleted, so AUTOINCREMENT goes on
-- from the largest id copied.

-- +goose Up
CREATE TABLE rejected_records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    stream      TEXT,
    record_id   TEXT,
    reason      TEXT NOT NULL,
    raw         TEXT,
    rejected_at TEXT NOT NULL,
    sync_run_id INTEGER
);
CREATE INDEX rejected_records_account ON rejected_records (source, account_id, rejected_at);

CREATE TABLE sync_runs_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger             TEXT    NOT NULL,
    started_at          TEXT    NOT NULL,
    finished_at         TEXT,
    status              TEXT    NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'ok', 'failed', 'cancelled', 'abandoned')),
    accounts_ok         INTEGER NOT NULL DEFAULT 0,
    accounts_failed     INTEGER NOT NULL DEFAULT 0,
    accounts_restricted INTEGER NOT NULL DEFAULT 0,
    leads_written       INTEGER NOT NULL DEFAULT 0,
    requests            INTEGER NOT NULL DEFAULT 0,
    throttled           INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    records_rejected    INTEGER NOT NULL DEFAULT 0,
    worker              TEXT
);
INSERT INTO sync_runs_new (id, trigger, started_at, finished_at, status, accounts_ok, accounts_failed,
    accounts_restricted, leads_written, requests, throttled, error)
SELECT id, trigger, started_at, finished_at, status, accounts_ok, accounts_failed,
    accounts_restricted, leads_written, requests, throttled, error
FROM sync_runs;
DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;

-- +goose Down
CREATE TABLE sync_runs_old (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger             TEXT    NOT NULL,
    started_at          TEXT    NOT NULL,
    finished_at         TEXT,
    status              TEXT    NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed', 'cancelled')),
    accounts_ok         INTEGER NOT NULL DEFAULT 0,
    accounts_failed     INTEGER NOT NULL DEFAULT 0,
    accounts_restricted INTEGER NOT NULL DEFAULT 0,
    leads_written       INTEGER NOT NULL DEFAULT 0,
    requests            INTEGER NOT NULL DEFAULT 0,
    throttled           INTEGER NOT NULL DEFAULT 0,
    error               TEXT
);
INSERT INTO sync_runs_old (id, trigger, started_at, finished_at, status, accounts_ok, accounts_failed,
    accounts_restricted, leads_written, requests, throttled, error)
SELECT id, trigger, started_at, finished_at, CASE status WHEN 'abandoned' THEN 'failed' ELSE status END,
    accounts_ok, accounts_failed, accounts_restricted, leads_written, requests, throttled, error
FROM sync_runs;
DROP TABLE sync_runs;
ALTER TABLE sync_runs_old RENAME TO sync_runs;
DROP TABLE rejected_records;
