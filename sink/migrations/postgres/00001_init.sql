-- The warehouse schema on PostgreSQL, created in the first schema of the search_path.
-- Times are timestamptz (UTC), JSON is jsonb (tags is a jsonb array of strings).

-- +goose Up
CREATE TABLE accounts (
    source          text        NOT NULL,
    account_id      text        NOT NULL,
    name            text        NOT NULL DEFAULT '',
    hipaa_protected boolean     NOT NULL DEFAULT false,
    active          boolean     NOT NULL DEFAULT true,
    meta            jsonb,
    access          text        NOT NULL DEFAULT 'ok' CHECK (access IN ('ok', 'hipaa_restricted', 'forbidden')),
    access_reason   text,
    first_seen_at   timestamptz NOT NULL,
    last_synced_at  timestamptz,
    last_error      text,
    last_run_id     bigint,
    PRIMARY KEY (source, account_id)
);

CREATE TABLE leads (
    source         text        NOT NULL,
    account_id     text        NOT NULL,
    lead_id        text        NOT NULL CHECK (lead_id <> ''),
    kind           text        NOT NULL,
    status         text,
    first_name     text,
    last_name      text,
    email          text,
    phone          text,
    company        text,
    channel        text,
    campaign       text,
    tags           jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tags) = 'array'),
    created_at     timestamptz,
    updated_at     timestamptz,
    hipaa          boolean     NOT NULL DEFAULT false,
    raw            jsonb,
    first_seen_at  timestamptz NOT NULL,
    last_synced_at timestamptz NOT NULL,
    sync_run_id    bigint,
    revision       integer     NOT NULL DEFAULT 1,
    deleted_at     timestamptz,
    PRIMARY KEY (source, account_id, lead_id)
);

COMMENT ON COLUMN leads.first_name IS 'PII';
COMMENT ON COLUMN leads.last_name IS 'PII';
COMMENT ON COLUMN leads.email IS 'PII';
COMMENT ON COLUMN leads.phone IS 'PII';
COMMENT ON COLUMN leads.company IS 'PII';
COMMENT ON COLUMN leads.raw IS 'PII';

CREATE TABLE restricted_fields (
    source      text        NOT NULL,
    account_id  text        NOT NULL,
    field       text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    since       timestamptz NOT NULL,
    sync_run_id bigint,
    PRIMARY KEY (source, account_id, field),
    FOREIGN KEY (source, account_id) REFERENCES accounts (source, account_id) ON DELETE CASCADE
);

CREATE TABLE lead_daily_counts (
    source     text        NOT NULL,
    account_id text        NOT NULL,
    day        date        NOT NULL,
    kind       text        NOT NULL,
    count      integer     NOT NULL CHECK (count >= 0),
    synced_at  timestamptz NOT NULL,
    PRIMARY KEY (source, account_id, day, kind)
);

CREATE TABLE sync_runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger             text        NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    status              text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed', 'cancelled')),
    accounts_ok         integer     NOT NULL DEFAULT 0,
    accounts_failed     integer     NOT NULL DEFAULT 0,
    accounts_restricted integer     NOT NULL DEFAULT 0,
    leads_written       bigint      NOT NULL DEFAULT 0,
    requests            bigint      NOT NULL DEFAULT 0,
    throttled           bigint      NOT NULL DEFAULT 0,
    error               text
);

CREATE TABLE sync_state (
    source      text        NOT NULL,
    account_id  text        NOT NULL,
    cursor      text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL,
    sync_run_id bigint,
    PRIMARY KEY (source, account_id)
);

-- Lead ids seen by a full pass, keyed by its run (see FinishFullPass). Unlogged: after a
-- server crash the table is emptied, which only forgets passes that can no longer complete.
CREATE UNLOGGED TABLE full_pass_seen (
    source     text   NOT NULL,
    account_id text   NOT NULL,
    run_id     bigint NOT NULL,
    lead_id    text   NOT NULL,
    PRIMARY KEY (source, account_id, run_id, lead_id)
);

CREATE VIEW leads_current AS
SELECT source, account_id, lead_id, kind, status, first_name, last_name, email, phone, company,
       channel, campaign, tags, created_at, updated_at, hipaa, raw,
       first_seen_at, last_synced_at, sync_run_id, revision
FROM leads
WHERE deleted_at IS NULL;

-- security_barrier: an analyst's own functions in a WHERE clause run only on the view's output.
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
