-- Freshness per source and stream (see the PostgreSQL migration and docs/analysts.md).

-- +goose Up
CREATE VIEW stream_freshness AS
SELECT source, stream,
       count(*) AS accounts,
       sum(CASE WHEN last_outcome = 'failed' THEN 1 ELSE 0 END) AS failing_accounts,
       -- Every account's data is at least this fresh; NULL while an account has never synced ok.
       CASE WHEN count(last_ok_at) = count(*) THEN min(last_ok_at) END AS data_as_of,
       max(last_ok_at) AS last_synced_at
FROM sync_state
WHERE last_outcome IS NULL OR last_outcome <> 'restricted' -- the vendor withholds it: never fresh
GROUP BY source, stream;

-- +goose Down
DROP VIEW stream_freshness;
