-- When the business first looked at a lead and archived it, and a call's length (see the
-- PostgreSQL migration): leads.read_at, leads.archived_at and leads.call_seconds. SQLite has
-- no CREATE OR REPLACE VIEW, and ALTER TABLE checks every view against the changed table:
-- every view over leads_current is dropped first and made again after, the four lead views
-- with the new columns last (as on PostgreSQL, where views may only gain columns at the end)
-- and the count views as they were.

-- +goose Up
DROP VIEW lead_counts_by_week;
DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_pii;
DROP VIEW leads_shareable;
DROP VIEW leads_current;

-- Times as in the other time columns; NULL when the vendor has none. A NOT NULL column needs
-- a default here: 0, which is also the sink's "unknown or not a call".
ALTER TABLE leads ADD COLUMN read_at TEXT;
ALTER TABLE leads ADD COLUMN archived_at TEXT;
ALTER TABLE leads ADD COLUMN call_seconds INTEGER NOT NULL DEFAULT 0;

CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads
WHERE deleted_at IS NULL;

-- For sharing: PII and tags NULL on every row; the times and the call length are not PII.
CREATE VIEW leads_shareable AS
SELECT source, account_id, lead_id, kind, status,
       NULL AS first_name, NULL AS last_name, NULL AS email, NULL AS phone, NULL AS company,
       channel, campaign, NULL AS tags, created_at, updated_at, hipaa, NULL AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads_current;

CREATE VIEW leads_pii AS
SELECT source, account_id, lead_id, kind, status,
       CASE WHEN hipaa THEN NULL ELSE first_name END AS first_name,
       CASE WHEN hipaa THEN NULL ELSE last_name END AS last_name,
       CASE WHEN hipaa THEN NULL ELSE email END AS email,
       CASE WHEN hipaa THEN NULL ELSE phone END AS phone,
       CASE WHEN hipaa THEN NULL ELSE company END AS company,
       channel, campaign,
       CASE WHEN hipaa THEN NULL ELSE tags END AS tags,
       created_at, updated_at, hipaa,
       CASE WHEN hipaa THEN NULL ELSE raw END AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads_current;

-- Deprecated, kept for one release.
CREATE VIEW leads_deidentified AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads_shareable;

CREATE VIEW lead_counts_by_day AS
SELECT source, account_id, date(created_at) AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, date(created_at), kind, channel;

CREATE VIEW lead_counts_by_week AS
SELECT source, account_id,
       CAST(strftime('%Y', thursday) AS INTEGER) AS iso_year,
       (CAST(strftime('%j', thursday) AS INTEGER) - 1) / 7 + 1 AS iso_week,
       week_start, kind, channel, count(*) AS leads
FROM (
    SELECT source, account_id, kind, channel,
           date(created_at, 'weekday 0', '-6 days') AS week_start,
           date(created_at, 'weekday 0', '-3 days') AS thursday
    FROM leads_current
    WHERE created_at IS NOT NULL
) AS w
GROUP BY source, account_id, week_start, thursday, kind, channel;

-- +goose Down
DROP VIEW lead_counts_by_week;
DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_pii;
DROP VIEW leads_shareable;
DROP VIEW leads_current;

ALTER TABLE leads DROP COLUMN call_seconds;
ALTER TABLE leads DROP COLUMN archived_at;
ALTER TABLE leads DROP COLUMN read_at;

-- The views as 00004 and 00005 made them.
CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads
WHERE deleted_at IS NULL;

CREATE VIEW leads_shareable AS
SELECT source, account_id, lead_id, kind, status,
       NULL AS first_name, NULL AS last_name, NULL AS email, NULL AS phone, NULL AS company,
       channel, campaign, NULL AS tags, created_at, updated_at, hipaa, NULL AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;

CREATE VIEW leads_pii AS
SELECT source, account_id, lead_id, kind, status,
       CASE WHEN hipaa THEN NULL ELSE first_name END AS first_name,
       CASE WHEN hipaa THEN NULL ELSE last_name END AS last_name,
       CASE WHEN hipaa THEN NULL ELSE email END AS email,
       CASE WHEN hipaa THEN NULL ELSE phone END AS phone,
       CASE WHEN hipaa THEN NULL ELSE company END AS company,
       channel, campaign,
       CASE WHEN hipaa THEN NULL ELSE tags END AS tags,
       created_at, updated_at, hipaa,
       CASE WHEN hipaa THEN NULL ELSE raw END AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;

CREATE VIEW leads_deidentified AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_shareable;

CREATE VIEW lead_counts_by_day AS
SELECT source, account_id, date(created_at) AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, date(created_at), kind, channel;

CREATE VIEW lead_counts_by_week AS
SELECT source, account_id,
       CAST(strftime('%Y', thursday) AS INTEGER) AS iso_year,
       (CAST(strftime('%j', thursday) AS INTEGER) - 1) / 7 + 1 AS iso_week,
       week_start, kind, channel, count(*) AS leads
FROM (
    SELECT source, account_id, kind, channel,
           date(created_at, 'weekday 0', '-6 days') AS week_start,
           date(created_at, 'weekday 0', '-3 days') AS thursday
    FROM leads_current
    WHERE created_at IS NOT NULL
) AS w
GROUP BY source, account_id, week_start, thursday, kind, channel;
