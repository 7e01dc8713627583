-- The webhook inbox (issue #19): every verified delivery is inserted here before it is
-- answered 2xx, so an acknowledged event survives a crash; an applier drains it later. The
-- unique key on (vendor, webhook_id) makes a replay, or a second worker's copy of the same
-- delivery, insert nothing. body is the request's bytes exactly as verified (bytea: a
-- signature covers bytes, and they need not be valid text); it holds PII, so grant-analyst
-- never grants this table.

-- +goose Up
CREATE TABLE webhook_inbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vendor            text        NOT NULL,
    webhook_id        text        NOT NULL,
    event_type        text        NOT NULL,
    account_id        text,                 -- NULL for an agency-level install
    kind              text,                 -- NULL when op is ignore
    op                text        NOT NULL
                      CHECK (op IN ('upsert', 'delete', 'stage', 'status', 'install', 'uninstall', 'ignore')),
    record_id         text,
    vendor_updated_at timestamptz,
    occurred_at       timestamptz,
    received_at       timestamptz NOT NULL,
    body              bytea       NOT NULL,
    applied_at        timestamptz,
    apply_error       text,
    attempts          integer     NOT NULL DEFAULT 0,
    UNIQUE (vendor, webhook_id)
);
-- The applier drains the pending rows in arrival order; the endpoint counts them.
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE applied_at IS NULL;
COMMENT ON TABLE webhook_inbox IS
    'Verified webhook deliveries, one row per event, stored before the vendor was answered; applied_at is set when the applier has applied it.';
COMMENT ON COLUMN webhook_inbox.body IS 'PII';

-- +goose Down
DROP TABLE webhook_inbox;
