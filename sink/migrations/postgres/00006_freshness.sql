-- Freshness per source and stream, for a BI tool's "data as of" label and dbt's source
-- freshness: how recently every account of the stream was synced.

-- +goose Up
CREATE VIEW stream_freshness AS
SELECT source, stream,
       count(*)::integer AS accounts,
       (count(*) FILTER (WHERE last_outcome = 'failed'))::integer AS failing_accounts,
       -- Every account's data is at least this fresh; NULL while an account has never synced ok.
       CASE WHEN count(last_ok_at) = count(*) THEN min(last_ok_at) END AS data_as_of,
       max(last_ok_at) AS last_synced_at
FROM sync_state
WHERE last_outcome IS DISTINCT FROM 'restricted' -- the vendor withholds it: never fresh
GROUP BY source, stream;
COMMENT ON VIEW stream_freshness IS
    'Per source and stream: accounts synced (restricted ones excluded), how many failed their last sync, data_as_of (the oldest last successful sync; NULL while one never succeeded) and last_synced_at.';

-- +goose Down
DROP VIEW stream_freshness;
