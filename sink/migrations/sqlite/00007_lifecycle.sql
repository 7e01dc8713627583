-- The lead lifecycle beyond leads (see the PostgreSQL migration): deals with their stage
-- history, the CRMs' dictionaries, form and survey submissions, and campaign cycles. Times
-- are fixed-width UTC text, days YYYY-MM-DD, JSON text checked with json_valid, as in leads.

-- +goose Up
CREATE TABLE deals (
    source            TEXT    NOT NULL,
    account_id        TEXT    NOT NULL,
    deal_id           TEXT    NOT NULL,
    stream            TEXT    NOT NULL,
    contact_id        TEXT,
    name              TEXT,
    pipeline_id       TEXT,
    stage_id          TEXT,
    status            TEXT,
    status_category   TEXT    NOT NULL CHECK (status_category IN ('open', 'won', 'lost', 'abandoned')),
    monetary_value    REAL    NOT NULL DEFAULT 0,
    assigned_to       TEXT,
    lead_source       TEXT,
    lost_reason_id    TEXT,
    custom_values     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(custom_values)),
    created_at        TEXT,
    updated_at        TEXT,
    stage_changed_at  TEXT,
    status_changed_at TEXT,
    hipaa             INTEGER NOT NULL DEFAULT 0 CHECK (hipaa IN (0, 1)),
    raw               TEXT CHECK (raw IS NULL OR json_valid(raw)),
    observed_via      TEXT    NOT NULL DEFAULT 'poll',
    first_seen_at     TEXT    NOT NULL,
    last_synced_at    TEXT    NOT NULL,
    sync_run_id       INTEGER,
    revision          INTEGER NOT NULL DEFAULT 1,
    deleted_at        TEXT,
    PRIMARY KEY (source, account_id, deal_id)
);
CREATE INDEX deals_contact ON deals (source, account_id, contact_id);
CREATE INDEX deals_created ON deals (created_at);

CREATE TABLE opportunity_stage_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT    NOT NULL,
    account_id      TEXT    NOT NULL,
    deal_id         TEXT    NOT NULL,
    pipeline_id     TEXT,
    stage_id        TEXT,
    status          TEXT,
    status_category TEXT    NOT NULL,
    monetary_value  REAL    NOT NULL,
    observed_at     TEXT    NOT NULL,
    observed_via    TEXT    NOT NULL,
    sync_run_id     INTEGER
);
CREATE INDEX opportunity_stage_history_deal ON opportunity_stage_history (source, account_id, deal_id, observed_at);

-- +goose StatementBegin
CREATE TRIGGER deals_stage_history_insert AFTER INSERT ON deals
BEGIN
    INSERT INTO opportunity_stage_history (source, account_id, deal_id, pipeline_id, stage_id, status,
        status_category, monetary_value, observed_at, observed_via, sync_run_id)
    VALUES (NEW.source, NEW.account_id, NEW.deal_id, NEW.pipeline_id, NEW.stage_id, NEW.status,
        NEW.status_category, NEW.monetary_value, NEW.last_synced_at, NEW.observed_via, NEW.sync_run_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER deals_stage_history_update AFTER UPDATE ON deals
WHEN NEW.stage_id IS NOT OLD.stage_id OR NEW.status IS NOT OLD.status
  OR NEW.status_category IS NOT OLD.status_category OR NEW.monetary_value IS NOT OLD.monetary_value
BEGIN
    INSERT INTO opportunity_stage_history (source, account_id, deal_id, pipeline_id, stage_id, status,
        status_category, monetary_value, observed_at, observed_via, sync_run_id)
    VALUES (NEW.source, NEW.account_id, NEW.deal_id, NEW.pipeline_id, NEW.stage_id, NEW.status,
        NEW.status_category, NEW.monetary_value, NEW.last_synced_at, NEW.observed_via, NEW.sync_run_id);
END;
-- +goose StatementEnd

-- LACRM pipeline items are deals now (its pipeline_items stream writes deals): the rows move
-- out of leads with what their raw JSON says, and the stream's cursor is reset, so its next
-- run re-reads every item and fills in what SQL cannot (custom values by field id, a value
-- from another currency field, the exact won/lost rule). Soft-deleted items stay deleted.
INSERT INTO deals (source, account_id, deal_id, stream, contact_id, pipeline_id, stage_id, status,
    status_category, monetary_value, created_at, updated_at, hipaa, raw,
    first_seen_at, last_synced_at, sync_run_id, deleted_at)
SELECT source, account_id, lead_id, 'pipeline_items',
    NULLIF(trim(CAST(json_extract(raw, '$.ContactId') AS TEXT)), ''),
    NULLIF(trim(CAST(json_extract(raw, '$.PipelineId') AS TEXT)), ''),
    NULLIF(trim(CAST(json_extract(raw, '$.StatusId') AS TEXT)), ''),
    NULLIF(trim(status), ''),
    CASE WHEN json_type(raw, '$.StatusMetaData.IsActive') IS NULL OR json_type(raw, '$.StatusMetaData.IsActive') = 'null'
              OR lower(CAST(json_extract(raw, '$.StatusMetaData.IsActive') AS TEXT)) IN ('1', 'true', 't') THEN 'open'
         WHEN (' ' || lower(status) || ' ' LIKE '% won %' OR lower(status) LIKE '%sold%' OR lower(status) LIKE '%signed%')
              AND NOT (' ' || lower(status) || ' ' LIKE '% not %' OR lower(status) LIKE '%lost%'
                       OR lower(status) LIKE '%unsigned%') THEN 'won'
         ELSE 'lost' END,
    CASE WHEN json_type(raw, '$."Estimated Value"') IN ('integer', 'real') THEN json_extract(raw, '$."Estimated Value"') ELSE 0 END,
    created_at, updated_at, hipaa, raw, first_seen_at, last_synced_at, sync_run_id, deleted_at
FROM leads
WHERE source = 'lacrm' AND kind = 'pipeline_item';
DELETE FROM leads WHERE source = 'lacrm' AND kind = 'pipeline_item';
UPDATE sync_state SET cursor = '' WHERE source = 'lacrm' AND stream = 'pipeline_items';

CREATE TABLE crm_dictionary (
    source      TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('pipeline', 'stage', 'lost_reason', 'custom_field', 'user')),
    entry_id    TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    parent_id   TEXT,
    name        TEXT,
    position    INTEGER NOT NULL DEFAULT 0,
    data_type   TEXT,
    category    TEXT,
    detail      TEXT CHECK (detail IS NULL OR json_valid(detail)),
    synced_at   TEXT    NOT NULL,
    sync_run_id INTEGER,
    revision    INTEGER NOT NULL DEFAULT 1,
    deleted_at  TEXT,
    PRIMARY KEY (source, account_id, kind, entry_id)
);

CREATE TABLE submissions (
    source             TEXT    NOT NULL,
    account_id         TEXT    NOT NULL,
    submission_id      TEXT    NOT NULL,
    stream             TEXT    NOT NULL,
    kind               TEXT    NOT NULL CHECK (kind IN ('form', 'survey')),
    form_id            TEXT,
    form_name          TEXT,
    contact_id         TEXT,
    name               TEXT,
    email              TEXT,
    phone              TEXT,
    attribution_source TEXT,
    medium             TEXT,
    campaign           TEXT,
    utm_source         TEXT,
    utm_medium         TEXT,
    utm_campaign       TEXT,
    utm_term           TEXT,
    utm_content        TEXT,
    gclid              TEXT,
    fbclid             TEXT,
    referrer           TEXT,
    page_url           TEXT,
    answers            TEXT CHECK (answers IS NULL OR json_valid(answers)),
    submitted_at       TEXT,
    hipaa              INTEGER NOT NULL DEFAULT 0 CHECK (hipaa IN (0, 1)),
    raw                TEXT CHECK (raw IS NULL OR json_valid(raw)),
    first_seen_at      TEXT    NOT NULL,
    last_synced_at     TEXT    NOT NULL,
    sync_run_id        INTEGER,
    revision           INTEGER NOT NULL DEFAULT 1,
    deleted_at         TEXT,
    PRIMARY KEY (source, account_id, submission_id)
);
CREATE INDEX submissions_contact ON submissions (source, account_id, contact_id);
CREATE INDEX submissions_submitted ON submissions (submitted_at);

CREATE TABLE campaign_cycles (
    source        TEXT    NOT NULL,
    account_id    TEXT    NOT NULL,
    campaign_id   TEXT    NOT NULL,
    cycle_id      TEXT    NOT NULL,
    campaign_name TEXT,
    campaign_type TEXT,
    channel       TEXT,
    status        TEXT,
    currency      TEXT,
    start_day     TEXT,
    end_day       TEXT,
    spend         REAL    NOT NULL DEFAULT 0,
    budget        REAL    NOT NULL DEFAULT 0,
    impressions   INTEGER NOT NULL DEFAULT 0,
    clicks        INTEGER NOT NULL DEFAULT 0,
    leads         INTEGER NOT NULL DEFAULT 0,
    calls         INTEGER NOT NULL DEFAULT 0,
    synced_at     TEXT    NOT NULL,
    sync_run_id   INTEGER,
    PRIMARY KEY (source, account_id, campaign_id, cycle_id)
);

CREATE VIEW deals_shareable AS
SELECT source, account_id, deal_id, stream, contact_id, pipeline_id, stage_id, status, status_category,
       monetary_value, assigned_to, lead_source, lost_reason_id, created_at, updated_at,
       stage_changed_at, status_changed_at, hipaa, first_seen_at, last_synced_at
FROM deals
WHERE deleted_at IS NULL;

CREATE VIEW submissions_shareable AS
SELECT source, account_id, submission_id, stream, kind, form_id, form_name, contact_id,
       attribution_source, medium, campaign, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
       gclid, fbclid, referrer, page_url, submitted_at, hipaa, first_seen_at, last_synced_at
FROM submissions
WHERE deleted_at IS NULL;

CREATE VIEW pipeline_stages AS
SELECT s.source, s.account_id, s.parent_id AS pipeline_id, p.name AS pipeline_name,
       s.entry_id AS stage_id, s.name AS stage_name, s.position, s.category
FROM crm_dictionary s
LEFT JOIN crm_dictionary p ON p.source = s.source AND p.account_id = s.account_id
    AND p.kind = 'pipeline' AND p.entry_id = s.parent_id AND p.deleted_at IS NULL
WHERE s.kind = 'stage' AND s.deleted_at IS NULL;

CREATE VIEW custom_fields AS
SELECT source, account_id, entry_id AS field_id, name AS field_name, data_type, category AS model, parent_id AS pipeline_id,
       position, detail
FROM crm_dictionary
WHERE kind = 'custom_field' AND deleted_at IS NULL;

CREATE VIEW crm_users AS
SELECT source, account_id, entry_id AS user_id, name, category AS role
FROM crm_dictionary
WHERE kind = 'user' AND deleted_at IS NULL;

CREATE VIEW lost_reasons AS
SELECT source, account_id, entry_id AS lost_reason_id, name
FROM crm_dictionary
WHERE kind = 'lost_reason' AND deleted_at IS NULL;

CREATE VIEW deal_stage_intervals AS
WITH h AS (
    SELECT source, account_id, deal_id, pipeline_id, stage_id, observed_at, id,
           row_number() OVER (PARTITION BY source, account_id, deal_id ORDER BY observed_at, id) AS n,
           lag(stage_id) OVER (PARTITION BY source, account_id, deal_id ORDER BY observed_at, id) AS prev_stage
    FROM opportunity_stage_history
)
SELECT source, account_id, deal_id, pipeline_id, stage_id, observed_at AS entered_at,
       lead(observed_at) OVER (PARTITION BY source, account_id, deal_id ORDER BY observed_at, id) AS left_at
FROM h
WHERE n = 1 OR stage_id IS NOT prev_stage;

CREATE VIEW custom_field_values AS
SELECT d.source, d.account_id, 'deal' AS record_type, d.deal_id AS record_id,
       v.key AS field_id, f.name AS field_name, f.data_type,
       CASE WHEN v.type IN ('object', 'array') THEN v.value WHEN v.type IN ('true', 'false') THEN v.type
            ELSE CAST(v.value AS TEXT) END AS value
FROM deals d
JOIN json_each(d.custom_values) AS v
LEFT JOIN crm_dictionary f ON f.source = d.source AND f.account_id = d.account_id
    AND f.kind = 'custom_field' AND f.entry_id = v.key
WHERE d.deleted_at IS NULL AND NOT d.hipaa
UNION ALL
SELECT l.source, l.account_id, 'lead', l.lead_id,
       json_extract(e.value, '$.id'), f.name, f.data_type,
       CASE WHEN json_type(e.value, '$.value') IN ('object', 'array') THEN json_extract(e.value, '$.value')
            WHEN json_type(e.value, '$.value') IN ('true', 'false') THEN json_type(e.value, '$.value')
            ELSE CAST(json_extract(e.value, '$.value') AS TEXT) END
FROM leads l
JOIN json_each(CASE json_type(l.raw, '$.customFields') WHEN 'array' THEN json_extract(l.raw, '$.customFields') ELSE '[]' END) AS e
LEFT JOIN crm_dictionary f ON f.source = l.source AND f.account_id = l.account_id
    AND f.kind = 'custom_field' AND f.entry_id = json_extract(e.value, '$.id')
WHERE l.deleted_at IS NULL AND NOT l.hipaa AND l.source = 'leadconnector' AND e.type = 'object';

-- A stream whose endpoint the grant lacks the scope for ends 'missing_scope'. SQLite cannot
-- change a CHECK in place: sync_state and sync_run_streams are rebuilt, around the view that
-- reads sync_state.
DROP VIEW stream_freshness;
CREATE TABLE sync_state_new (
    source       TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    stream       TEXT NOT NULL,
    cursor       TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL,
    sync_run_id  INTEGER,
    last_outcome TEXT CHECK (last_outcome IN ('ok', 'failed', 'restricted', 'cancelled', 'missing_scope')),
    last_error   TEXT,
    last_run_id  INTEGER,
    last_ok_at   TEXT,
    PRIMARY KEY (source, account_id, stream)
);
INSERT INTO sync_state_new SELECT source, account_id, stream, cursor, updated_at, sync_run_id,
    last_outcome, last_error, last_run_id, last_ok_at FROM sync_state;
DROP TABLE sync_state;
ALTER TABLE sync_state_new RENAME TO sync_state;
CREATE TABLE sync_run_streams_new (
    run_id       INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    account_id   TEXT    NOT NULL,
    stream       TEXT    NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed', 'restricted', 'cancelled', 'missing_scope')),
    rows_written INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT    NOT NULL,
    PRIMARY KEY (run_id, source, account_id, stream)
);
INSERT INTO sync_run_streams_new SELECT run_id, source, account_id, stream, outcome, rows_written, error,
    started_at, finished_at FROM sync_run_streams;
DROP TABLE sync_run_streams;
ALTER TABLE sync_run_streams_new RENAME TO sync_run_streams;
CREATE VIEW stream_freshness AS
SELECT source, stream,
       count(*) AS accounts,
       sum(CASE WHEN last_outcome = 'failed' THEN 1 ELSE 0 END) AS failing_accounts,
       CASE WHEN count(last_ok_at) = count(*) THEN min(last_ok_at) END AS data_as_of,
       max(last_ok_at) AS last_synced_at
FROM sync_state
WHERE last_outcome IS NULL OR last_outcome <> 'restricted'
GROUP BY source, stream;

-- +goose Down
-- LACRM's deals go back to leads, where the code before this migration reads them, and its
-- pipeline_items stream starts over.
INSERT INTO leads (source, account_id, lead_id, stream, kind, status, tags, created_at, updated_at, hipaa, raw,
    first_seen_at, last_synced_at, sync_run_id, deleted_at)
SELECT source, account_id, deal_id, stream, 'pipeline_item', status, '[]', created_at, updated_at, hipaa, raw,
    first_seen_at, last_synced_at, sync_run_id, deleted_at
FROM deals WHERE source = 'lacrm'
ON CONFLICT (source, account_id, lead_id) DO NOTHING;
UPDATE sync_state SET cursor = '' WHERE source = 'lacrm' AND stream = 'pipeline_items';
DROP VIEW custom_field_values;
DROP VIEW deal_stage_intervals;
DROP VIEW lost_reasons;
DROP VIEW crm_users;
DROP VIEW custom_fields;
DROP VIEW pipeline_stages;
DROP VIEW submissions_shareable;
DROP VIEW deals_shareable;
DROP TABLE campaign_cycles;
DROP TABLE submissions;
DROP TABLE crm_dictionary;
DROP TRIGGER deals_stage_history_update;
DROP TRIGGER deals_stage_history_insert;
DROP TABLE opportunity_stage_history;
DROP TABLE deals;
