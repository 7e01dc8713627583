-- The lead lifecycle beyond leads: deals (LeadConnector opportunities, LACRM pipeline items)
-- with their stage history, the CRMs' dictionaries (pipelines and stages, lost reasons,
-- custom-field definitions, users), form and survey submissions, and campaign cycles with
-- their spend. Each table is one stream's (its stream column says which), upserted like
-- leads: a row is rewritten only when its content changed, and a complete full pass of its
-- stream soft-deletes what it did not see (campaign cycles are overwritten instead).

-- +goose Up
CREATE TABLE deals (
    source            text NOT NULL,
    account_id        text NOT NULL,
    deal_id           text NOT NULL,
    stream            text NOT NULL,
    contact_id        text,                 -- leads.lead_id of the deal's contact
    name              text,                 -- often the contact's name
    pipeline_id       text,                 -- crm_dictionary kind 'pipeline'
    stage_id          text,                 -- crm_dictionary kind 'stage'
    status            text,                 -- the vendor's own word
    status_category   text NOT NULL CHECK (status_category IN ('open', 'won', 'lost', 'abandoned')),
    monetary_value    double precision NOT NULL DEFAULT 0,
    assigned_to       text,                 -- crm_dictionary kind 'user'
    lead_source       text,
    lost_reason_id    text,                 -- crm_dictionary kind 'lost_reason'
    custom_values     jsonb NOT NULL DEFAULT '{}', -- {field id: value}; crm_dictionary kind 'custom_field'
    created_at        timestamptz,
    updated_at        timestamptz,
    stage_changed_at  timestamptz,
    status_changed_at timestamptz,
    hipaa             boolean NOT NULL DEFAULT false,
    raw               jsonb,
    observed_via      text NOT NULL DEFAULT 'poll', -- how the last change was seen: poll (a sync) or webhook
    first_seen_at     timestamptz NOT NULL,
    last_synced_at    timestamptz NOT NULL,
    sync_run_id       bigint,
    revision          integer NOT NULL DEFAULT 1,
    deleted_at        timestamptz,
    PRIMARY KEY (source, account_id, deal_id)
);
COMMENT ON COLUMN deals.name IS 'PII';
COMMENT ON COLUMN deals.custom_values IS 'PII';
COMMENT ON COLUMN deals.raw IS 'PII';
CREATE INDEX deals_contact ON deals (source, account_id, contact_id);
CREATE INDEX deals_created ON deals (created_at);

-- One row each time a sync (or, later, a webhook) sees a deal's stage, status or value
-- change, and when it first sees the deal: the API keeps no history, so this is what time in
-- stage is computed from. Append-only; written by the trigger below, in the same
-- transaction as the deal.
CREATE TABLE opportunity_stage_history (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,
    account_id      text NOT NULL,
    deal_id         text NOT NULL,
    pipeline_id     text,
    stage_id        text,
    status          text,
    status_category text NOT NULL,
    monetary_value  double precision NOT NULL,
    observed_at     timestamptz NOT NULL,
    observed_via    text NOT NULL,
    sync_run_id     bigint
);
CREATE INDEX opportunity_stage_history_deal ON opportunity_stage_history (source, account_id, deal_id, observed_at);

-- +goose StatementBegin
CREATE FUNCTION record_deal_stage() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.stage_id IS DISTINCT FROM OLD.stage_id OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.status_category IS DISTINCT FROM OLD.status_category OR NEW.monetary_value IS DISTINCT FROM OLD.monetary_value THEN
        INSERT INTO opportunity_stage_history (source, account_id, deal_id, pipeline_id, stage_id, status,
            status_category, monetary_value, observed_at, observed_via, sync_run_id)
        VALUES (NEW.source, NEW.account_id, NEW.deal_id, NEW.pipeline_id, NEW.stage_id, NEW.status,
            NEW.status_category, NEW.monetary_value, NEW.last_synced_at, NEW.observed_via, NEW.sync_run_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER deals_stage_history AFTER INSERT OR UPDATE ON deals
    FOR EACH ROW EXECUTE FUNCTION record_deal_stage();

-- LACRM pipeline items are deals now (its pipeline_items stream writes deals): the rows move
-- out of leads with what their raw JSON says, and the stream's cursor is reset, so its next
-- run re-reads every item and fills in what SQL cannot (custom values by field id, a value
-- from another currency field, the exact won/lost rule). Soft-deleted items stay deleted.
INSERT INTO deals (source, account_id, deal_id, stream, contact_id, pipeline_id, stage_id, status,
    status_category, monetary_value, created_at, updated_at, hipaa, raw,
    first_seen_at, last_synced_at, sync_run_id, deleted_at)
SELECT source, account_id, lead_id, 'pipeline_items',
    NULLIF(trim(raw ->> 'ContactId'), ''),
    NULLIF(trim(raw ->> 'PipelineId'), ''),
    NULLIF(trim(raw ->> 'StatusId'), ''),
    NULLIF(trim(status), ''),
    CASE WHEN raw -> 'StatusMetaData' -> 'IsActive' IS NULL OR jsonb_typeof(raw -> 'StatusMetaData' -> 'IsActive') = 'null'
              OR lower(raw -> 'StatusMetaData' ->> 'IsActive') IN ('1', 'true', 't') THEN 'open'
         WHEN (' ' || lower(status) || ' ' LIKE '% won %' OR lower(status) LIKE '%sold%' OR lower(status) LIKE '%signed%')
              AND NOT (' ' || lower(status) || ' ' LIKE '% not %' OR lower(status) LIKE '%lost%'
                       OR lower(status) LIKE '%unsigned%') THEN 'won'
         ELSE 'lost' END,
    CASE WHEN jsonb_typeof(raw -> 'Estimated Value') = 'number' THEN (raw ->> 'Estimated Value')::double precision ELSE 0 END,
    created_at, updated_at, hipaa, raw, first_seen_at, last_synced_at, sync_run_id, deleted_at
FROM leads
WHERE source = 'lacrm' AND kind = 'pipeline_item';
DELETE FROM leads WHERE source = 'lacrm' AND kind = 'pipeline_item';
UPDATE sync_state SET cursor = '' WHERE source = 'lacrm' AND stream = 'pipeline_items';

-- What the ids in deals and leads mean, per account: kind 'pipeline', 'stage' (parent_id:
-- its pipeline), 'lost_reason', 'custom_field' (data_type; category: the model it belongs
-- to), 'user' (the name only; category: the role). No lead PII.
CREATE TABLE crm_dictionary (
    source         text NOT NULL,
    account_id     text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('pipeline', 'stage', 'lost_reason', 'custom_field', 'user')),
    entry_id       text NOT NULL,
    stream         text NOT NULL,
    parent_id      text,
    name           text,
    position       integer NOT NULL DEFAULT 0,
    data_type      text,
    category       text,
    detail         jsonb,
    synced_at      timestamptz NOT NULL,
    sync_run_id    bigint,
    revision       integer NOT NULL DEFAULT 1,
    deleted_at     timestamptz,
    PRIMARY KEY (source, account_id, kind, entry_id)
);

CREATE TABLE submissions (
    source             text NOT NULL,
    account_id         text NOT NULL,
    submission_id      text NOT NULL,
    stream             text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('form', 'survey')),
    form_id            text,
    form_name          text,
    contact_id         text,              -- leads.lead_id of the submitter
    name               text,
    email              text,
    phone              text,
    attribution_source text,
    medium             text,
    campaign           text,
    utm_source         text,
    utm_medium         text,
    utm_campaign       text,
    utm_term           text,
    utm_content        text,
    gclid              text,
    fbclid             text,
    referrer           text,
    page_url           text,
    answers            jsonb,             -- the submitted fields, without the tracking data
    submitted_at       timestamptz,
    hipaa              boolean NOT NULL DEFAULT false,
    raw                jsonb,
    first_seen_at      timestamptz NOT NULL,
    last_synced_at     timestamptz NOT NULL,
    sync_run_id        bigint,
    revision           integer NOT NULL DEFAULT 1,
    deleted_at         timestamptz,
    PRIMARY KEY (source, account_id, submission_id)
);
COMMENT ON COLUMN submissions.name IS 'PII';
COMMENT ON COLUMN submissions.email IS 'PII';
COMMENT ON COLUMN submissions.phone IS 'PII';
COMMENT ON COLUMN submissions.answers IS 'PII';
COMMENT ON COLUMN submissions.raw IS 'PII';
CREATE INDEX submissions_contact ON submissions (source, account_id, contact_id);
CREATE INDEX submissions_submitted ON submissions (submitted_at);

-- Campaign cycles (budget periods) with spend and outcomes, as the vendor's report has them
-- now: PII-free, synced for HIPAA-restricted accounts too, overwritten on every run.
CREATE TABLE campaign_cycles (
    source        text NOT NULL,
    account_id    text NOT NULL,
    campaign_id   text NOT NULL,
    cycle_id      text NOT NULL,
    campaign_name text,
    campaign_type text,
    channel       text,
    status        text,
    currency      text,
    start_day     date,
    end_day       date,                    -- NULL while the cycle runs
    spend         double precision NOT NULL DEFAULT 0,
    budget        double precision NOT NULL DEFAULT 0,
    impressions   bigint NOT NULL DEFAULT 0,
    clicks        bigint NOT NULL DEFAULT 0,
    leads         bigint NOT NULL DEFAULT 0,
    calls         bigint NOT NULL DEFAULT 0,
    synced_at     timestamptz NOT NULL,
    sync_run_id   bigint,
    PRIMARY KEY (source, account_id, campaign_id, cycle_id)
);

-- Views. The *_shareable ones hold no PII (granted to every analyst role); custom_field_values
-- holds the answers themselves (granted with --pii only), never a HIPAA row's.
CREATE VIEW deals_shareable AS
SELECT source, account_id, deal_id, stream, contact_id, pipeline_id, stage_id, status, status_category,
       monetary_value, assigned_to, lead_source, lost_reason_id, created_at, updated_at,
       stage_changed_at, status_changed_at, hipaa, first_seen_at, last_synced_at
FROM deals
WHERE deleted_at IS NULL;
COMMENT ON VIEW deals_shareable IS 'Live deals without PII: no name, custom values or raw.';

CREATE VIEW submissions_shareable AS
SELECT source, account_id, submission_id, stream, kind, form_id, form_name, contact_id,
       attribution_source, medium, campaign, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
       gclid, fbclid, referrer, page_url, submitted_at, hipaa, first_seen_at, last_synced_at
FROM submissions
WHERE deleted_at IS NULL;
COMMENT ON VIEW submissions_shareable IS 'Live submissions without PII: attribution kept; no name, email, phone, answers or raw.';

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

-- Each stage a deal was seen in, from when it was first seen there (entered_at) until it was
-- seen in another (left_at; NULL for its current stage): time in stage is their difference.
-- A status or value change within a stage does not split it. Stages are only as precise as
-- the syncs (and webhooks) that saw them.
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
WHERE n = 1 OR stage_id IS DISTINCT FROM prev_stage;

-- The custom-field answers of live deals and contacts by field name, typed as the vendor
-- types them: deals' custom_values, and LeadConnector contacts' customFields [{id, value}].
-- HIPAA rows are left out.
CREATE VIEW custom_field_values AS
SELECT d.source, d.account_id, 'deal' AS record_type, d.deal_id AS record_id,
       v.key AS field_id, f.name AS field_name, f.data_type,
       CASE jsonb_typeof(v.value) WHEN 'string' THEN v.value #>> '{}' WHEN 'null' THEN NULL ELSE v.value::text END AS value
FROM deals d
CROSS JOIN LATERAL jsonb_each(d.custom_values) AS v
LEFT JOIN crm_dictionary f ON f.source = d.source AND f.account_id = d.account_id
    AND f.kind = 'custom_field' AND f.entry_id = v.key
WHERE d.deleted_at IS NULL AND NOT d.hipaa
UNION ALL
SELECT l.source, l.account_id, 'lead', l.lead_id,
       e.value ->> 'id', f.name, f.data_type,
       CASE jsonb_typeof(e.value -> 'value') WHEN 'string' THEN e.value ->> 'value' WHEN 'null' THEN NULL
            ELSE (e.value -> 'value')::text END
FROM leads l
CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(l.raw -> 'customFields')
    WHEN 'array' THEN l.raw -> 'customFields' ELSE '[]'::jsonb END) AS e
LEFT JOIN crm_dictionary f ON f.source = l.source AND f.account_id = l.account_id
    AND f.kind = 'custom_field' AND f.entry_id = e.value ->> 'id'
WHERE l.deleted_at IS NULL AND NOT l.hipaa AND l.source = 'leadconnector' AND jsonb_typeof(e.value) = 'object';
COMMENT ON VIEW custom_field_values IS 'PII: the custom-field answers of live deals and contacts (HIPAA rows left out), by field name.';

-- A stream whose endpoint the grant lacks the scope for ends 'missing_scope'.
ALTER TABLE sync_state DROP CONSTRAINT sync_state_last_outcome_check,
    ADD CONSTRAINT sync_state_last_outcome_check
    CHECK (last_outcome IN ('ok', 'failed', 'restricted', 'cancelled', 'missing_scope'));
ALTER TABLE sync_run_streams DROP CONSTRAINT sync_run_streams_outcome_check,
    ADD CONSTRAINT sync_run_streams_outcome_check
    CHECK (outcome IN ('ok', 'failed', 'restricted', 'cancelled', 'missing_scope'));

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
UPDATE sync_state SET last_outcome = 'failed' WHERE last_outcome = 'missing_scope';
UPDATE sync_run_streams SET outcome = 'failed' WHERE outcome = 'missing_scope';
ALTER TABLE sync_state DROP CONSTRAINT sync_state_last_outcome_check,
    ADD CONSTRAINT sync_state_last_outcome_check
    CHECK (last_outcome IN ('ok', 'failed', 'restricted', 'cancelled'));
ALTER TABLE sync_run_streams DROP CONSTRAINT sync_run_streams_outcome_check,
    ADD CONSTRAINT sync_run_streams_outcome_check
    CHECK (outcome IN ('ok', 'failed', 'restricted', 'cancelled'));
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
DROP TRIGGER deals_stage_history ON deals;
DROP FUNCTION record_deal_stage();
DROP TABLE opportunity_stage_history;
DROP TABLE deals;
