-- Records quarantined rather than stored (DESIGN §4.6: one bad record never blocks a
-- stream), their count per run, and the worker that owns each run, so that a run left
-- running by a dead process can be closed as abandoned.

-- +goose Up
CREATE TABLE rejected_records (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    account_id  text        NOT NULL,
    stream      text,                 -- NULL until runs record their streams
    record_id   text,                 -- NULL when the record has no readable id
    reason      text        NOT NULL,
    raw         text,                 -- the vendor's bytes as valid UTF-8; not always JSON
    rejected_at timestamptz NOT NULL,
    sync_run_id bigint
);
CREATE INDEX rejected_records_account ON rejected_records (source, account_id, rejected_at);

COMMENT ON COLUMN rejected_records.raw IS 'PII';

ALTER TABLE sync_runs
    ADD COLUMN records_rejected bigint NOT NULL DEFAULT 0,
    ADD COLUMN worker text,
    DROP CONSTRAINT sync_runs_status_check,
    ADD CONSTRAINT sync_runs_status_check
        CHECK (status IN ('running', 'ok', 'failed', 'cancelled', 'abandoned'));

-- +goose Down
ALTER TABLE sync_runs
    DROP CONSTRAINT sync_runs_status_check,
    ADD CONSTRAINT sync_runs_status_check CHECK (status IN ('running', 'ok', 'failed', 'cancelled')),
    DROP COLUMN worker,
    DROP COLUMN records_rejected;
DROP TABLE rejected_records;
