package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jmoiron/sqlx"
)

// DefaultLeaseDuration is how long an account lease lasts without a heartbeat.
const DefaultLeaseDuration = 60 * time.Second

// ErrLeaseLost means this worker no longer holds the account's lease (it expired, or another
// worker took the account over): the write was refused and nothing was committed.
var ErrLeaseLost = errors.New("account lease lost")

// Slot kinds: incremental runs and full passes are separate slots.
const (
	SlotIncremental = "incremental"
	SlotFull        = "full"
)

// SlotRequest asks for the slot a run of a connection belongs to.
type SlotRequest struct {
	Connection string
	Kind       string // SlotIncremental or SlotFull
	// At is the cron tick: every worker firing the tick gets the same slot. Zero (a --once
	// run) joins the connection's open slot of another live worker, or opens one now.
	At      time.Time
	Trigger string
	// Dead (optional) reports a worker known to be gone (its process on this host ended). A
	// --once run does not join a slot such a worker opened: the slot is abandoned, and joining
	// it would skip the accounts the dead worker finished, whatever changed since.
	Dead func(worker string) bool
}

// Slot is one run of a connection shared by the workers: each account is synced once in it.
type Slot struct {
	ID       int64
	At       time.Time
	OpenedBy string
	// Closed: every account of the slot is already done (by other workers).
	Closed bool
}

// Claim is the state of an account's lease as seen by a claim or a peek.
type Claim struct {
	Held    bool      // this worker holds the lease
	Done    bool      // a sync of the account already ended in the slot
	Owner   string    // the worker holding a live lease ("" if none)
	Expires time.Time // when Owner's lease runs out
}

// Leaser is a warehouse shared by several workers (PostgreSQL opened with Options.Worker):
// account leases, and the slots that make each account sync once per run across workers.
// Times are the database's, so the workers' clocks need not agree.
type Leaser interface {
	// WorkerID is this worker's identity ("" when the sink is not in multi-worker mode).
	WorkerID() string
	LeaseDuration() time.Duration
	// OpenSlot returns the slot of a run (see SlotRequest.At).
	OpenSlot(ctx context.Context, req SlotRequest) (Slot, error)
	// CloseSlot records that every account of the slot is done.
	CloseSlot(ctx context.Context, slot int64) error
	// ClaimAccount takes the account's lease for the slot unless its sync already ended in
	// the slot or another worker holds a live lease. steal, when not empty, is a worker known
	// to be dead whose live lease may be taken over at once.
	ClaimAccount(ctx context.Context, slot int64, source, account, steal string) (Claim, error)
	// PeekAccounts reads the lease state of accounts of one source, for the slot.
	PeekAccounts(ctx context.Context, slot int64, source string, accounts []string) (map[string]Claim, error)
	// Heartbeat extends this worker's lease; false when it was lost.
	Heartbeat(ctx context.Context, slot int64, source, account string) (bool, error)
	// ReleaseAccount frees this worker's lease; done records that the account's sync ended
	// in the lease's slot. False when the lease had already been lost.
	ReleaseAccount(ctx context.Context, source, account string, done bool) (bool, error)
}

var _ Leaser = (*Postgres)(nil)

// WorkerID implements Leaser.
func (c *core) WorkerID() string { return c.worker }

// LeaseDuration implements Leaser.
func (c *core) LeaseDuration() time.Duration { return c.lease }

func (c *core) leaseInterval() string { return fmt.Sprintf("%d milliseconds", c.lease.Milliseconds()) }

// sqlFence reads, and locks against a takeover until the page commits, the account's lease.
const sqlFence = `SELECT COALESCE(owner, ''), COALESCE(expires_at > clock_timestamp(), false)
FROM account_leases WHERE source = $1 AND account_id = $2 FOR SHARE`

// fenceResult turns the fence row into nil or ErrLeaseLost.
func (c *core) fenceResult(source, account string, owner string, live bool, err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows), errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: worker %s never claimed %s/%s", ErrLeaseLost, c.worker, source, account)
	case err != nil:
		return fmt.Errorf("check account lease: %w", err)
	case owner != c.worker:
		return fmt.Errorf("%w: %s/%s is held by worker %q", ErrLeaseLost, source, account, owner)
	case !live:
		return fmt.Errorf("%w: the lease on %s/%s expired", ErrLeaseLost, source, account)
	}
	return nil
}

// fence checks, inside a write transaction, that this worker holds the account's lease, and
// keeps it from being taken over until the transaction ends. A single writer (no worker
// identity) has nothing to check. PostgreSQL's page write runs the same check in its batch.
func (c *core) fence(ctx context.Context, tx *sqlx.Tx, source, account string) error {
	if c.worker == "" {
		return nil
	}
	var owner string
	var live bool
	err := tx.QueryRowxContext(ctx, sqlFence, source, account).Scan(&owner, &live)
	return c.fenceResult(source, account, owner, live, err)
}

// OpenSlot implements Leaser.
func (p *Postgres) OpenSlot(ctx context.Context, req SlotRequest) (Slot, error) {
	var s Slot
	err := p.tx(ctx, func(tx *sqlx.Tx) error {
		if !req.At.IsZero() {
			// A cron tick: the first worker to fire it inserts the slot, the others join it.
			if _, err := tx.ExecContext(ctx, `INSERT INTO sync_slots
    (connection, kind, slot_at, trigger, opened_by, opened_at, heartbeat_at)
VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp())
ON CONFLICT (connection, kind, slot_at) DO NOTHING`,
				req.Connection, req.Kind, storedTime(req.At), req.Trigger, p.worker); err != nil {
				return err
			}
			return p.scanSlot(tx.QueryRowxContext(ctx, `SELECT id, slot_at, opened_by, closed_at IS NOT NULL
FROM sync_slots WHERE connection = $1 AND kind = $2 AND slot_at = $3`,
				req.Connection, req.Kind, storedTime(req.At)), &s)
		}
		// A --once run: serialize the join-or-open decision per connection.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('leadsync.slot.' || $1 || '.' || $2))`,
			req.Connection, req.Kind); err != nil {
			return err
		}
		// Join a slot another worker is still working through; never one this worker
		// opened itself: its own earlier run is over, and a new run is asked for.
		rows, err := tx.QueryxContext(ctx, `SELECT id, slot_at, opened_by FROM sync_slots
WHERE connection = $1 AND kind = $2 AND closed_at IS NULL AND opened_by <> $3
  AND heartbeat_at > clock_timestamp() - $4::interval
ORDER BY slot_at DESC LIMIT 16`, req.Connection, req.Kind, p.worker, p.leaseInterval())
		if err != nil {
			return err
		}
		var found bool
		for !found && rows.Next() {
			var at nullTime
			if err := rows.Scan(&s.ID, &at, &s.OpenedBy); err != nil {
				rows.Close()
				return err
			}
			s.At, found = at.Time, req.Dead == nil || !req.Dead(s.OpenedBy)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if found {
			return nil
		}
		s = Slot{}
		return p.scanSlot(tx.QueryRowxContext(ctx, `INSERT INTO sync_slots
    (connection, kind, slot_at, trigger, opened_by, opened_at, heartbeat_at)
VALUES ($1, $2, clock_timestamp(), $3, $4, clock_timestamp(), clock_timestamp())
RETURNING id, slot_at, opened_by, false`, req.Connection, req.Kind, req.Trigger, p.worker), &s)
	})
	if err != nil {
		return Slot{}, fmt.Errorf("sink: open slot of %s: %w", req.Connection, err)
	}
	return s, nil
}

func (p *Postgres) scanSlot(row *sqlx.Row, s *Slot) error {
	var at nullTime
	if err := row.Scan(&s.ID, &at, &s.OpenedBy, &s.Closed); err != nil {
		return err
	}
	s.At = at.Time
	return nil
}

// CloseSlot implements Leaser.
func (p *Postgres) CloseSlot(ctx context.Context, slot int64) error {
	if _, err := p.pool.Exec(ctx, `UPDATE sync_slots SET closed_at = clock_timestamp()
WHERE id = $1 AND closed_at IS NULL`, slot); err != nil {
		return fmt.Errorf("sink: close slot %d: %w", slot, err)
	}
	return nil
}

// ClaimAccount implements Leaser: one statement, so two workers never both win. The slot's
// heartbeat rides along (at most once a second) so that late --once runs can join it.
func (p *Postgres) ClaimAccount(ctx context.Context, slot int64, source, account, steal string) (Claim, error) {
	var owner string
	err := p.pool.QueryRow(ctx, `WITH beat AS (
    UPDATE sync_slots SET heartbeat_at = clock_timestamp()
    WHERE id = $4 AND heartbeat_at < clock_timestamp() - interval '1 second')
INSERT INTO account_leases AS l (source, account_id, owner, slot_id, acquired_at, heartbeat_at, expires_at)
VALUES ($1, $2, $3, $4, clock_timestamp(), clock_timestamp(), clock_timestamp() + $5::interval)
ON CONFLICT (source, account_id) DO UPDATE SET
    owner = excluded.owner, slot_id = excluded.slot_id, acquired_at = excluded.acquired_at,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
WHERE l.done_slot_id IS DISTINCT FROM excluded.slot_id
  AND (l.owner IS NULL OR l.expires_at < clock_timestamp() OR l.owner = excluded.owner OR l.owner = $6)
RETURNING owner`, source, account, p.worker, slot, p.leaseInterval(), steal).Scan(&owner)
	if err == nil {
		return Claim{Held: true, Owner: owner}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, fmt.Errorf("sink: claim %s/%s: %w", source, account, err)
	}
	st, err := p.PeekAccounts(ctx, slot, source, []string{account})
	if err != nil {
		return Claim{}, err
	}
	return st[account], nil
}

// PeekAccounts implements Leaser.
func (p *Postgres) PeekAccounts(ctx context.Context, slot int64, source string, accounts []string) (map[string]Claim, error) {
	rows, err := p.pool.Query(ctx, `SELECT account_id, COALESCE(owner, ''), expires_at,
    COALESCE(expires_at > clock_timestamp(), false), done_slot_id IS NOT DISTINCT FROM $3
FROM account_leases WHERE source = $1 AND account_id = ANY($2)`, source, accounts, slot)
	if err != nil {
		return nil, fmt.Errorf("sink: read leases of %s: %w", source, err)
	}
	defer rows.Close()
	out := make(map[string]Claim, len(accounts))
	for rows.Next() {
		var id, owner string
		var exp *time.Time
		var live, done bool
		if err := rows.Scan(&id, &owner, &exp, &live, &done); err != nil {
			return nil, fmt.Errorf("sink: read leases of %s: %w", source, err)
		}
		c := Claim{Done: done}
		if live && owner != "" {
			c.Owner, c.Expires = owner, exp.UTC()
			c.Held = owner == p.worker
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sink: read leases of %s: %w", source, err)
	}
	return out, nil
}

// Heartbeat implements Leaser.
func (p *Postgres) Heartbeat(ctx context.Context, slot int64, source, account string) (bool, error) {
	tag, err := p.pool.Exec(ctx, `WITH beat AS (
    UPDATE sync_slots SET heartbeat_at = clock_timestamp() WHERE id = $4)
UPDATE account_leases SET heartbeat_at = clock_timestamp(), expires_at = clock_timestamp() + $5::interval
WHERE source = $1 AND account_id = $2 AND owner = $3 AND expires_at > clock_timestamp()`,
		source, account, p.worker, slot, p.leaseInterval())
	if err != nil {
		return false, fmt.Errorf("sink: heartbeat %s/%s: %w", source, account, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseAccount implements Leaser. An expired lease nobody took over is still this
// worker's to release: its pages were fenced, so whatever it recorded is consistent.
func (p *Postgres) ReleaseAccount(ctx context.Context, source, account string, done bool) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE account_leases SET owner = NULL, expires_at = NULL, heartbeat_at = NULL,
    done_slot_id = CASE WHEN $4 THEN slot_id ELSE done_slot_id END,
    done_by = CASE WHEN $4 THEN owner ELSE done_by END,
    done_at = CASE WHEN $4 THEN clock_timestamp() ELSE done_at END
WHERE source = $1 AND account_id = $2 AND owner = $3`, source, account, p.worker, done)
	if err != nil {
		return false, fmt.Errorf("sink: release %s/%s: %w", source, account, err)
	}
	return tag.RowsAffected() == 1, nil
}
