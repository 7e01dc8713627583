-- The warehouse schema on SQLite. Times are UTC text in a fixed-width RFC 3339 form
-- (2006-01-02T15:04:05.000000000Z) so that they sort and compare as strings and work with
-- SQLite's date functions. JSON (tags, raw, meta) is text checked with json_valid.
-- Tables are not STRICT so that older sqlite3 shells can still open the file.

-- +goose Up
CREATE TABLE accounts (
    source          TEXT    NOT NULL,
    account_id      TEXT    NOT NULL,
    name            TEXT    NOT NULL DEFAULT '',
    hipaa_protected INTEGER NOT NULL DEFAULT 0 CHECK (hipaa_protected IN (0, 1)),
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    meta            TEXT CHECK (meta IS NULL OR json_valid(meta)),
    access          TEXT    NOT NULL DEFAULT 'ok' CHECK (access IN ('ok', 'hipaa_restricted', 'forbidden')),
    access_reason   TEXT,
    first_seen_at   TEXT    NOT NULL,
    last_synced_at  TEXT,
    last_error      TEXT,
    last_run_id     INTEGER,
    PRIMARY KEY (source, account_id)
);

CREATE TABLE leads (
    source         TEXT    NOT NULL,
    account_id     TEXT    NOT NULL,
    lead_id        TEXT    NOT NULL CHECK (lead_id <> ''),
    kind           TEXT    NOT NULL,
    status         TEXT,
    first_name     TEXT,
    last_name      TEXT,
    email          TEXT,
    phone          TEXT,
    company        TEXT,
    channel        TEXT,
    campaign       TEXT,
    tags           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    created_at     TEXT,
    updated_at     TEXT,
    hipaa          INTEGER NOT NULL DEFAULT 0 CHECK (hipaa IN (0, 1)),
    raw            TEXT CHECK (raw IS NULL OR json_valid(raw)),
    first_seen_at  TEXT    NOT NULL,
    last_synced_at TEXT    NOT NULL,
    sync_run_id    INTEGER,
    revision       INTEGER NOT NULL DEFAULT 1,
    deleted_at     TEXT,
    PRIMARY KEY (source, account_id, lead_id)
);

CREATE TABLE restricted_fields (
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    field       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    since       TEXT NOT NULL,
    sync_run_id INTEGER,
    PRIMARY KEY (source, account_id, field),
    FOREIGN KEY (source, account_id) REFERENCES accounts (source, account_id) ON DELETE CASCADE
);

CREATE TABLE lead_daily_counts (
    source     TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    day        TEXT    NOT NULL, -- YYYY-MM-DD, UTC
    kind       TEXT    NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 0),
    synced_at  TEXT    NOT NULL,
    PRIMARY KEY (source, account_id, day, kind)
);

CREATE TABLE sync_runs (
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

CREATE TABLE sync_state (
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    cursor      TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL,
    sync_run_id INTEGER,
    PRIMARY KEY (source, account_id)
);

-- Lead ids seen by a full pass, keyed by its run: FinishFullPass soft-deletes what the run's
-- completed pass did not see, so rows left by a cancelled pass never count for a later one.
CREATE TABLE full_pass_seen (
    source     TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    run_id     INTEGER NOT NULL,
    lead_id    TEXT    NOT NULL,
    PRIMARY KEY (source, account_id, run_id, lead_id)
) WITHOUT ROWID;

CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision
FROM leads
WHERE deleted_at IS NULL;

CREATE VIEW leads_deidentified AS
SELECT source, account_id, lead_id, kind, status,
       CASE WHEN hipaa THEN NULL ELSE first_name END AS first_name,
       CASE WHEN hipaa THEN NULL ELSE last_name END AS last_name,
       CASE WHEN hipaa THEN NULL ELSE email END AS email,
       CASE WHEN hipaa THEN NULL ELSE phone END AS phone,
       CASE WHEN hipaa THEN NULL ELSE company END AS company,
       channel, campaign, tags, created_at, updated_at, hipaa,
       CASE WHEN hipaa THEN NULL ELSE raw END AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision
FROM leads_current;

CREATE VIEW lead_counts_by_day AS
SELECT source, account_id, date(created_at) AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, date(created_at), kind, channel;

-- +goose Down
DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_current;
DROP TABLE full_pass_seen;
DROP TABLE sync_state;
DROP TABLE sync_runs;
DROP TABLE lead_daily_counts;
DROP TABLE restricted_fields;
DROP TABLE leads;
DROP TABLE accounts;
