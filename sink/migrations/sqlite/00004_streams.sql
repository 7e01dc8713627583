-- Named streams per account (see the PostgreSQL migration): sync_state keyed by stream, with
-- each stream's last outcome; leads.stream; full_pass_seen scoped by stream; the
-- sync_run_streams ledger. SQLite cannot change a primary key in place, so sync_state is
-- rebuilt, and its views are dropped and created again around the change to leads.

-- +goose Up

-- The rows already there carry over as the stream that read them, so the first run after the
-- upgrade is incremental: leadconnector → contacts, localiq → interactions, any other
-- source → leads, and lacrm → two rows, contacts and pipeline_items, each a copy of the old
-- cursor. LACRM's cursor keys its listings internally
-- ({"v":1,"streams":{"contacts":…,"pipeline:<id>":…}}), so each of its streams reads its
-- own part of the copy.
CREATE TABLE sync_state_new (
    source       TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    stream       TEXT NOT NULL,
    cursor       TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL,
    sync_run_id  INTEGER,
    last_outcome TEXT CHECK (last_outcome IN ('ok', 'failed', 'restricted', 'cancelled')),
    last_error   TEXT,
    last_run_id  INTEGER,
    last_ok_at   TEXT, -- the last sync of the stream that ended ok
    PRIMARY KEY (source, account_id, stream)
);
INSERT INTO sync_state_new (source, account_id, stream, cursor, updated_at, sync_run_id)
SELECT source, account_id, CASE source
        WHEN 'leadconnector' THEN 'contacts'
        WHEN 'localiq' THEN 'interactions'
        WHEN 'lacrm' THEN 'contacts'
        ELSE 'leads' END,
    cursor, updated_at, sync_run_id
FROM sync_state
UNION ALL
SELECT source, account_id, 'pipeline_items', cursor, updated_at, sync_run_id
FROM sync_state WHERE source = 'lacrm';
DROP TABLE sync_state;
ALTER TABLE sync_state_new RENAME TO sync_state;

-- Every lead belongs to the stream that reads it. SQLite adds a NOT NULL column only with a
-- default, which fills the rows already there; the sink always writes stream.
DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_current;
ALTER TABLE leads ADD COLUMN stream TEXT NOT NULL DEFAULT 'contacts';
UPDATE leads SET stream = CASE WHEN kind = 'pipeline_item' THEN 'pipeline_items' ELSE 'interactions' END
WHERE kind = 'pipeline_item' OR source = 'localiq';

-- The views as before, with stream as their last column (as on PostgreSQL, where views may
-- only gain columns at the end).
CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
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
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;

CREATE VIEW lead_counts_by_day AS
SELECT source, account_id, date(created_at) AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, date(created_at), kind, channel;

-- Full-pass bookkeeping is transient (the lead ids seen by passes still running): it is
-- recreated scoped by stream. A pass under way during the upgrade saw nothing since, and so
-- deletes nothing.
DROP TABLE full_pass_seen;
CREATE TABLE full_pass_seen (
    source     TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    stream     TEXT    NOT NULL,
    run_id     INTEGER NOT NULL,
    lead_id    TEXT    NOT NULL,
    PRIMARY KEY (source, account_id, stream, run_id, lead_id)
) WITHOUT ROWID;

-- How each stream of each account ended in each run (StreamSynced).
CREATE TABLE sync_run_streams (
    run_id       INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    account_id   TEXT    NOT NULL,
    stream       TEXT    NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed', 'restricted', 'cancelled')),
    rows_written INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT    NOT NULL,
    PRIMARY KEY (run_id, source, account_id, stream)
);

-- +goose Down
DROP TABLE sync_run_streams;

DROP TABLE full_pass_seen;
CREATE TABLE full_pass_seen (
    source     TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    run_id     INTEGER NOT NULL,
    lead_id    TEXT    NOT NULL,
    PRIMARY KEY (source, account_id, run_id, lead_id)
) WITHOUT ROWID;

DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_current;
ALTER TABLE leads DROP COLUMN stream;
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

-- One cursor per account again: the stream the upgrade made of it (LACRM's contacts copy,
-- whose pipeline positions may lag behind: pipeline items are then read again, which an
-- upsert makes harmless). The other streams' cursors are dropped: those streams start over.
CREATE TABLE sync_state_old (
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    cursor      TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL,
    sync_run_id INTEGER,
    PRIMARY KEY (source, account_id)
);
INSERT INTO sync_state_old (source, account_id, cursor, updated_at, sync_run_id)
SELECT source, account_id, cursor, updated_at, sync_run_id
FROM sync_state
WHERE stream = CASE source
    WHEN 'leadconnector' THEN 'contacts'
    WHEN 'localiq' THEN 'interactions'
    WHEN 'lacrm' THEN 'contacts'
    ELSE 'leads' END;
DROP TABLE sync_state;
ALTER TABLE sync_state_old RENAME TO sync_state;
