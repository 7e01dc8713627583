-- Answers to the analysts' usual questions (issue #18), as views that give the same rows on
-- SQLite and PostgreSQL: the lead funnel, cost per lead by campaign, time to first look and
-- time in stage. They read only PII-free columns (leads_shareable, deals_shareable,
-- campaign_cycles, deal_stage_intervals, pipeline_stages), so grant-analyst grants them; run
-- it again after the upgrade.
--
-- Same numbers on both dialects: durations are whole seconds between times truncated to the
-- second (exact integers on both), and hours are those seconds divided once, in double
-- precision; sums of money are rounded to cents. No avg(): SQLite and PostgreSQL sum floats
-- differently.

-- +goose Up

-- Per source, account, channel and campaign of the leads: how many leads have a live deal,
-- a won one, or only lost or abandoned ones (every deal closed, none won: a lead with an
-- open deal is still in play), and what the won deals are worth.
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
       round(coalesce(sum(d.won_value), 0)::numeric, 2)::double precision AS won_value
FROM leads_shareable l
LEFT JOIN d ON d.source = l.source AND d.account_id = l.account_id AND d.contact_id = l.lead_id
GROUP BY l.source, l.account_id, l.channel, l.campaign;
COMMENT ON VIEW lead_funnel IS
    'Per source, account_id, channel and campaign: leads, with_deal (a live deal), won (a won deal), lost (deals all closed, none won), won_value (sum of won deals, to the cent).';

-- Per LocaliQ campaign (the cycles' campaign_name): its spend over its leads in the
-- warehouse, matched by name (the report and the interactions share names, not ids), next to
-- the vendor's own lead count. last_day is NULL while a cycle runs.
CREATE VIEW campaign_cost_per_lead AS
WITH s AS (
    SELECT source, account_id, campaign_name,
           round(sum(spend)::numeric, 2)::double precision AS spend,
           round(sum(budget)::numeric, 2)::double precision AS budget,
           sum(leads)::bigint AS vendor_leads,
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
       round((s.spend / NULLIF(l.leads, 0))::numeric, 2)::double precision AS cost_per_lead,
       round((s.spend / NULLIF(s.vendor_leads, 0))::numeric, 2)::double precision AS vendor_cost_per_lead,
       s.first_day, s.last_day
FROM s
LEFT JOIN l ON l.source = s.source AND l.account_id = s.account_id AND l.campaign = s.campaign_name;
COMMENT ON VIEW campaign_cost_per_lead IS
    'Per source, account_id and campaign_name of campaign_cycles: spend, budget, vendor_leads, synced_leads (live leads of that campaign), cost_per_lead and vendor_cost_per_lead (NULL without leads), first_day, last_day (NULL while a cycle runs).';

-- Each live lead the business has looked at (LocaliQ read_at), with the hours it took.
CREATE VIEW lead_first_look AS
SELECT source, account_id, lead_id, kind, channel, campaign, created_at, read_at,
       (floor(extract(epoch FROM read_at)) - floor(extract(epoch FROM created_at)))::double precision / 3600
           AS hours_to_first_look,
       archived_at
FROM leads_shareable
WHERE read_at IS NOT NULL;
COMMENT ON VIEW lead_first_look IS
    'Live leads with a read_at: hours_to_first_look from created_at to read_at (to the second; NULL without created_at).';

-- Per stage of a pipeline: how long the deals that left it stayed, in hours. The median is
-- the middle stay, or the mean of the middle two.
CREATE VIEW deal_time_in_stage AS
WITH i AS (
    SELECT source, account_id, pipeline_id, stage_id,
           (floor(extract(epoch FROM left_at)) - floor(extract(epoch FROM entered_at)))::bigint AS seconds
    FROM deal_stage_intervals
    WHERE left_at IS NOT NULL
)
SELECT i.source, i.account_id, i.pipeline_id, p.pipeline_name, i.stage_id, p.stage_name, p.position,
       count(*) AS deals,
       sum(i.seconds)::double precision / (3600 * count(*)) AS avg_hours,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY i.seconds::double precision) / 3600 AS median_hours,
       max(i.seconds)::double precision / 3600 AS max_hours
FROM i
LEFT JOIN pipeline_stages p ON p.source = i.source AND p.account_id = i.account_id AND p.stage_id = i.stage_id
GROUP BY i.source, i.account_id, i.pipeline_id, p.pipeline_name, i.stage_id, p.stage_name, p.position;
COMMENT ON VIEW deal_time_in_stage IS
    'Per source, account_id, pipeline and stage (names and position from pipeline_stages): deals that left the stage, avg_hours, median_hours and max_hours they stayed (to the second).';

-- +goose Down
DROP VIEW deal_time_in_stage;
DROP VIEW lead_first_look;
DROP VIEW campaign_cost_per_lead;
DROP VIEW lead_funnel;
