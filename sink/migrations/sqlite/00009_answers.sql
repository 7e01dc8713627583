-- Answers to the analysts' usual questions: the lead funnel, cost per lead by campaign, time
-- to first look and time in stage (see the PostgreSQL migration), with the same rows as
-- PostgreSQL's. Durations are whole seconds between times truncated to the second: the
-- first 19 characters of the fixed-width times, as julianday() rounds to the millisecond and
-- its float differences are not PostgreSQL's exact ones. A later migration that drops or
-- rebuilds a view they read (leads_shareable, deals_shareable, deal_stage_intervals,
-- pipeline_stages) must drop and recreate these first.

-- +goose Up

-- lost: every deal of the lead closed, none won.
CREATE VIEW lead_funnel AS
WITH d AS (
    SELECT source, account_id, contact_id,
           max(CASE WHEN status_category = 'won' THEN 1 ELSE 0 END) AS is_won,
           max(CASE WHEN status_category = 'open' THEN 1 ELSE 0 END) AS is_open,
           sum(CASE WHEN status_category = 'won' THEN monetary_value ELSE 0 END) AS won_value
    FROM deals_shareable
    WHERE contact_id IS NOT NULL
    GROUP BY source, account_id, contact_id
)
SELECT l.source, l.account_id, l.channel, l.campaign,
       count(*) AS leads,
       count(d.contact_id) AS with_deal,
       count(CASE WHEN d.is_won = 1 THEN 1 END) AS won,
       count(CASE WHEN d.is_won = 0 AND d.is_open = 0 THEN 1 END) AS lost,
       round(coalesce(sum(d.won_value), 0), 2) AS won_value
FROM leads_shareable l
LEFT JOIN d ON d.source = l.source AND d.account_id = l.account_id AND d.contact_id = l.lead_id
GROUP BY l.source, l.account_id, l.channel, l.campaign;

CREATE VIEW campaign_cost_per_lead AS
WITH s AS (
    SELECT source, account_id, campaign_name,
           round(sum(spend), 2) AS spend,
           round(sum(budget), 2) AS budget,
           sum(leads) AS vendor_leads,
           min(start_day) AS first_day,
           CASE WHEN count(end_day) = count(*) THEN max(end_day) END AS last_day
    FROM campaign_cycles
    GROUP BY source, account_id, campaign_name
), l AS (
    SELECT source, account_id, campaign, count(*) AS leads
    FROM leads_shareable
    WHERE campaign IS NOT NULL
    GROUP BY source, account_id, campaign
)
SELECT s.source, s.account_id, s.campaign_name, s.spend, s.budget, s.vendor_leads,
       coalesce(l.leads, 0) AS synced_leads,
       round(s.spend / NULLIF(l.leads, 0), 2) AS cost_per_lead,
       round(s.spend / NULLIF(s.vendor_leads, 0), 2) AS vendor_cost_per_lead,
       s.first_day, s.last_day
FROM s
LEFT JOIN l ON l.source = s.source AND l.account_id = s.account_id AND l.campaign = s.campaign_name;

CREATE VIEW lead_first_look AS
SELECT source, account_id, lead_id, kind, channel, campaign, created_at, read_at,
       (CAST(strftime('%s', substr(read_at, 1, 19)) AS INTEGER)
        - CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER)) / 3600.0 AS hours_to_first_look,
       archived_at
FROM leads_shareable
WHERE read_at IS NOT NULL;

-- The median: the middle stay (k = (n + 1) / 2 = (n + 2) / 2 when n is odd), or the mean of
-- the middle two.
CREATE VIEW deal_time_in_stage AS
WITH i AS (
    SELECT source, account_id, pipeline_id, stage_id,
           CAST(strftime('%s', substr(left_at, 1, 19)) AS INTEGER)
           - CAST(strftime('%s', substr(entered_at, 1, 19)) AS INTEGER) AS seconds
    FROM deal_stage_intervals
    WHERE left_at IS NOT NULL
), r AS (
    SELECT source, account_id, pipeline_id, stage_id, seconds,
           row_number() OVER (PARTITION BY source, account_id, pipeline_id, stage_id ORDER BY seconds) AS k,
           count(*) OVER (PARTITION BY source, account_id, pipeline_id, stage_id) AS n
    FROM i
)
SELECT r.source, r.account_id, r.pipeline_id, p.pipeline_name, r.stage_id, p.stage_name, p.position,
       count(*) AS deals,
       sum(r.seconds) * 1.0 / (3600 * count(*)) AS avg_hours,
       sum(CASE WHEN r.k IN ((r.n + 1) / 2, (r.n + 2) / 2) THEN r.seconds END) * 1.0
           / (3600 * count(CASE WHEN r.k IN ((r.n + 1) / 2, (r.n + 2) / 2) THEN 1 END)) AS median_hours,
       max(r.seconds) / 3600.0 AS max_hours
FROM r
LEFT JOIN pipeline_stages p ON p.source = r.source AND p.account_id = r.account_id AND p.stage_id = r.stage_id
GROUP BY r.source, r.account_id, r.pipeline_id, p.pipeline_name, r.stage_id, p.stage_name, p.position;

-- +goose Down
DROP VIEW deal_time_in_stage;
DROP VIEW lead_first_look;
DROP VIEW campaign_cost_per_lead;
DROP VIEW lead_funnel;
