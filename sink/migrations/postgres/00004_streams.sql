-- Named streams per account (LeadConnector contacts; LocaliQ interactions and daily_counts;
-- LACRM contacts and pipeline_items): each stream has its own cursor and outcome in
-- sync_state, its leads carry it, a full pass deletes only its own stream's leads, and
-- sync_run_streams keeps one ledger row per stream per account per run.

-- +goose Up

-- sync_state is keyed by stream. The rows already there carry over as the stream that
-- read them, so the first run after the upgrade is incremental: leadconnector → contacts,
-- localiq → interactions, any other source → leads, and lacrm → two rows, contacts and
-- pipeline_items, each a copy of the old cursor. LACRM's cursor keys its listings
-- internally ({"v":1,"streams":{"contacts":…,"pipeline:<id>":…}}), so each of its streams
-- reads its own part of the copy.
ALTER TABLE sync_state DROP CONSTRAINT sync_state_pkey;
ALTER TABLE sync_state
    ADD COLUMN stream       text,
    ADD COLUMN last_outcome text CHECK (last_outcome IN ('ok', 'failed', 'restricted', 'cancelled')),
    ADD COLUMN last_error   text,
    ADD COLUMN last_run_id  bigint,
    ADD COLUMN last_ok_at   timestamptz; -- the last sync of the stream that ended ok
UPDATE sync_state SET stream = CASE source
    WHEN 'leadconnector' THEN 'contacts'
    WHEN 'localiq' THEN 'interactions'
    WHEN 'lacrm' THEN 'contacts'
    ELSE 'leads' END;
INSERT INTO sync_state (source, account_id, stream, cursor, updated_at, sync_run_id)
SELECT source, account_id, 'pipeline_items', cursor, updated_at, sync_run_id
FROM sync_state WHERE source = 'lacrm';
ALTER TABLE sync_state
    ALTER COLUMN stream SET NOT NULL,
    ADD PRIMARY KEY (source, account_id, stream);

-- Every lead belongs to the stream that reads it. The default only fills the rows already
-- there (without rewriting the table); it is dropped so that no write can leave it out.
ALTER TABLE leads ADD COLUMN stream text NOT NULL DEFAULT 'contacts';
UPDATE leads SET stream = CASE WHEN kind = 'pipeline_item' THEN 'pipeline_items' ELSE 'interactions' END
WHERE kind = 'pipeline_item' OR source = 'localiq';
ALTER TABLE leads ALTER COLUMN stream DROP DEFAULT;

-- The views gain stream as their last column: CREATE OR REPLACE keeps the grants made to
-- analyst roles (see GrantAnalyst), and may only append columns.
CREATE OR REPLACE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads
WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW leads_deidentified WITH (security_barrier) AS
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

-- Full-pass bookkeeping is transient (the lead ids seen by passes still running): it is
-- recreated scoped by stream. A pass under way during the upgrade saw nothing since, and
-- so deletes nothing.
DROP TABLE full_pass_seen;
CREATE UNLOGGED TABLE full_pass_seen (
    source     text   NOT NULL,
    account_id text   NOT NULL,
    stream     text   NOT NULL,
    run_id     bigint NOT NULL,
    lead_id    text   NOT NULL,
    PRIMARY KEY (source, account_id, stream, run_id, lead_id)
);

-- How each stream of each account ended in each run (StreamSynced).
CREATE TABLE sync_run_streams (
    run_id       bigint      NOT NULL,
    source       text        NOT NULL,
    account_id   text        NOT NULL,
    stream       text        NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('ok', 'failed', 'restricted', 'cancelled')),
    rows_written bigint      NOT NULL DEFAULT 0,
    error        text,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, source, account_id, stream)
);

-- +goose Down
DROP TABLE sync_run_streams;

DROP TABLE full_pass_seen;
CREATE UNLOGGED TABLE full_pass_seen (
    source     text   NOT NULL,
    account_id text   NOT NULL,
    run_id     bigint NOT NULL,
    lead_id    text   NOT NULL,
    PRIMARY KEY (source, account_id, run_id, lead_id)
);

-- A view cannot lose a column in place: the views are recreated as 00001 made them, and the
-- analyst grants on them must be made again (leadsync grant-analyst).
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
CREATE VIEW leads_deidentified WITH (security_barrier) AS
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
SELECT source, account_id, (created_at AT TIME ZONE 'UTC')::date AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, (created_at AT TIME ZONE 'UTC')::date, kind, channel;

-- One cursor per account again: the stream the upgrade made of it (LACRM's contacts copy,
-- whose pipeline positions may lag behind: pipeline items are then read again, which an
-- upsert makes harmless). The other streams' cursors are dropped: those streams start over.
DELETE FROM sync_state WHERE stream <> CASE source
    WHEN 'leadconnector' THEN 'contacts'
    WHEN 'localiq' THEN 'interactions'
    WHEN 'lacrm' THEN 'contacts'
    ELSE 'leads' END;
ALTER TABLE sync_state
    DROP CONSTRAINT sync_state_pkey,
    DROP COLUMN stream,
    DROP COLUMN last_outcome,
    DROP COLUMN last_error,
    DROP COLUMN last_run_id,
    DROP COLUMN last_ok_at,
    ADD PRIMARY KEY (source, account_id);
