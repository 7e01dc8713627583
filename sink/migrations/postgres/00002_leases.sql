-- Scale-out (DESIGN §7): several workers share one PostgreSQL warehouse. A run of a
-- connection belongs to a slot (a cron tick, or a --once run that others may join); each
-- account is synced once per slot by whichever worker holds its lease.

-- +goose Up
CREATE TABLE sync_slots (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('incremental', 'full')),
    slot_at      timestamptz NOT NULL, -- the cron tick, or when a --once run opened it
    trigger      text        NOT NULL,
    opened_by    text        NOT NULL,
    opened_at    timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL, -- the last sign of life of any worker in the slot
    closed_at    timestamptz,          -- every account of the slot is done
    UNIQUE (connection, kind, slot_at)
);

CREATE TABLE account_leases (
    source       text        NOT NULL,
    account_id   text        NOT NULL,
    owner        text,                 -- the worker holding the lease; NULL when free
    slot_id      bigint,               -- the slot the owner syncs the account in
    acquired_at  timestamptz,
    heartbeat_at timestamptz,
    expires_at   timestamptz,
    done_slot_id bigint,               -- the last slot in which a sync of the account ended
    done_by      text,
    done_at      timestamptz,
    PRIMARY KEY (source, account_id)
);

-- +goose Down
DROP TABLE account_leases;
DROP TABLE sync_slots;
