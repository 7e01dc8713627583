-- Views that withhold what their names say, ISO weeks, and indexes for analysts' queries
-- (see the PostgreSQL migration and docs/analysts.md). SQLite has no CREATE OR REPLACE VIEW:
-- leads_deidentified is dropped and made again over leads_shareable. A later migration that
-- rebuilds leads_current must drop and recreate every view below first.

-- +goose Up

-- For sharing: every PII column and the vendor's free text (tags) NULL on every row. Still
-- pseudonymous, not anonymous: lead_id, account_id and the dates identify a lead to whoever
-- can look it up at the vendor.
CREATE VIEW leads_shareable AS
SELECT source, account_id, lead_id, kind, status,
       NULL AS first_name, NULL AS last_name, NULL AS email, NULL AS phone, NULL AS company,
       channel, campaign, NULL AS tags, created_at, updated_at, hipaa, NULL AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;

-- For analysts trusted with PII: leads_current, with HIPAA-protected leads de-identified
-- (their PII and tags NULL).
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

-- Deprecated, kept for one release: now withholds what its name says.
DROP VIEW leads_deidentified;
CREATE VIEW leads_deidentified AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_shareable;

-- ISO 8601 weeks of created_at (UTC), without strftime's %G/%V (SQLite 3.46+): a week runs
-- Monday to Sunday ('weekday 0' is the coming Sunday, or the day itself), and its Thursday
-- decides its year; its number counts the Thursdays of that year up to it.
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

CREATE INDEX leads_created_at ON leads (created_at);
CREATE INDEX leads_updated_at ON leads (updated_at);
CREATE INDEX leads_account_created_at ON leads (source, account_id, created_at);

-- +goose Down
DROP INDEX leads_account_created_at;
DROP INDEX leads_updated_at;
DROP INDEX leads_created_at;
DROP VIEW lead_counts_by_week;
DROP VIEW leads_deidentified;
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
DROP VIEW leads_pii;
DROP VIEW leads_shareable;
