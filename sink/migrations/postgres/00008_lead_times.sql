-- When the business first looked at a lead (LocaliQ read_at) and archived it (LocaliQ
-- archived_at, the vendor's own soft delete: the lead stays live here), and a call's length
-- in whole seconds (LocaliQ call.duration, sent as 265, "04:54" or "1:14:01"). Leads from
-- other vendors, and leads stored before this migration until a sync rewrites them (a full
-- pass rereads them all), have NULL times and 0 seconds. None of them is PII.

-- +goose Up
-- A constant default fills the rows already there without rewriting the table.
ALTER TABLE leads
    ADD COLUMN read_at      timestamptz,
    ADD COLUMN archived_at  timestamptz,
    ADD COLUMN call_seconds bigint NOT NULL DEFAULT 0;

-- The lead views gain them as their last columns: CREATE OR REPLACE keeps the grants made to
-- analyst roles (see GrantAnalyst), and may only append columns. The count views over
-- leads_current are untouched.
CREATE OR REPLACE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads
WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW leads_shareable WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status,
       NULL::text AS first_name, NULL::text AS last_name, NULL::text AS email,
       NULL::text AS phone, NULL::text AS company,
       channel, campaign, NULL::jsonb AS tags, created_at, updated_at, hipaa, NULL::jsonb AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads_current;

CREATE OR REPLACE VIEW leads_pii WITH (security_barrier) AS
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

CREATE OR REPLACE VIEW leads_deidentified WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream,
       read_at, archived_at, call_seconds
FROM leads_shareable;

-- +goose Down
-- A view cannot lose a column in place: the lead views, and the count views over
-- leads_current, are recreated as 00004 and 00005 made them, and the analyst grants on them
-- must be made again (leadsync grant-analyst).
DROP VIEW lead_counts_by_week;
DROP VIEW lead_counts_by_day;
DROP VIEW leads_deidentified;
DROP VIEW leads_pii;
DROP VIEW leads_shareable;
DROP VIEW leads_current;

ALTER TABLE leads
    DROP COLUMN call_seconds,
    DROP COLUMN archived_at,
    DROP COLUMN read_at;

CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads
WHERE deleted_at IS NULL;

CREATE VIEW leads_shareable WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status,
       NULL::text AS first_name, NULL::text AS last_name, NULL::text AS email,
       NULL::text AS phone, NULL::text AS company,
       channel, campaign, NULL::jsonb AS tags, created_at, updated_at, hipaa, NULL::jsonb AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;
COMMENT ON VIEW leads_shareable IS
    'Current leads without PII: first_name, last_name, email, phone, company, tags and raw are NULL on every row. Pseudonymous (lead ids and dates remain).';

CREATE VIEW leads_pii WITH (security_barrier) AS
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
COMMENT ON VIEW leads_pii IS
    'Current leads with PII, except on HIPAA leads (hipaa = true), whose first_name, last_name, email, phone, company, tags and raw are NULL.';

CREATE VIEW leads_deidentified WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_shareable;
COMMENT ON VIEW leads_deidentified IS 'Deprecated: use leads_shareable, which it reads.';

CREATE VIEW lead_counts_by_day AS
SELECT source, account_id, (created_at AT TIME ZONE 'UTC')::date AS day, kind, channel, count(*) AS leads
FROM leads_current
WHERE created_at IS NOT NULL
GROUP BY source, account_id, (created_at AT TIME ZONE 'UTC')::date, kind, channel;

CREATE VIEW lead_counts_by_week AS
SELECT source, account_id, extract(isoyear FROM utc)::integer AS iso_year,
       extract(week FROM utc)::integer AS iso_week, date_trunc('week', utc)::date AS week_start,
       kind, channel, count(*) AS leads
FROM (
    SELECT source, account_id, kind, channel, created_at AT TIME ZONE 'UTC' AS utc
    FROM leads_current
    WHERE created_at IS NOT NULL
) AS w
GROUP BY source, account_id, extract(isoyear FROM utc), extract(week FROM utc),
         date_trunc('week', utc), kind, channel;
