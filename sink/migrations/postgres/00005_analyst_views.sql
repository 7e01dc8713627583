-- Views that withhold what their names say (issue #18): leads_shareable for sharing,
-- leads_pii for analysts trusted with PII, and leads_deidentified, deprecated, now over
-- leads_shareable; ISO weeks that agree with SQLite's; and indexes for analysts' queries.
-- The new views carry no grants: run leadsync grant-analyst again after the upgrade.

-- +goose Up

-- security_barrier (as leads_deidentified): an analyst's own functions in a WHERE clause
-- run only on the view's output, never on the rows or columns it withholds.

-- For sharing: every PII column and the vendor's free text (tags) NULL on every row. Still
-- pseudonymous, not anonymous: lead_id, account_id and the dates identify a lead to whoever
-- can look it up at the vendor.
CREATE VIEW leads_shareable WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status,
       NULL::text AS first_name, NULL::text AS last_name, NULL::text AS email,
       NULL::text AS phone, NULL::text AS company,
       channel, campaign, NULL::jsonb AS tags, created_at, updated_at, hipaa, NULL::jsonb AS raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_current;
COMMENT ON VIEW leads_shareable IS
    'Current leads without PII: first_name, last_name, email, phone, company, tags and raw are NULL on every row. Pseudonymous (lead ids and dates remain).';

-- For analysts trusted with PII: leads_current, with HIPAA-protected leads de-identified
-- (their PII and tags NULL).
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

-- Deprecated, kept for one release: now withholds what its name says. CREATE OR REPLACE
-- keeps the grants analyst roles have on it.
CREATE OR REPLACE VIEW leads_deidentified WITH (security_barrier) AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision, stream
FROM leads_shareable;
COMMENT ON VIEW leads_deidentified IS 'Deprecated: use leads_shareable, which it reads.';

-- ISO 8601 weeks of created_at (UTC): the same rows as SQLite's view of the same data.
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

-- Built inside the migration's transaction: on a large warehouse the sync's writes wait
-- until they are built.
CREATE INDEX leads_created_at ON leads (created_at);
CREATE INDEX leads_updated_at ON leads (updated_at);
CREATE INDEX leads_account_created_at ON leads (source, account_id, created_at);
-- jsonb_ops (not jsonb_path_ops): serves tags ? 'vip' as well as tags @> '["vip"]'.
CREATE INDEX leads_tags ON leads USING gin (tags);

-- +goose Down
DROP INDEX leads_tags;
DROP INDEX leads_account_created_at;
DROP INDEX leads_updated_at;
DROP INDEX leads_created_at;
DROP VIEW lead_counts_by_week;
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
COMMENT ON VIEW leads_deidentified IS NULL;
DROP VIEW leads_pii;
DROP VIEW leads_shareable;
