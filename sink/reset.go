package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// ResetScope names the cursors ResetState clears: every account of a source, one account,
// or one stream of one account (or of every account).
type ResetScope struct {
	Source  string // required: the vendor name the warehouse keys accounts by
	Account string // "" for every account of the source
	Stream  string // "" for every stream
}

// ResetResult is what ResetState cleared.
type ResetResult struct {
	Cursors int64 // sync_state rows deleted: the next run backfills each of those streams
}

// ErrSyncing means a sync of an account in the scope is in progress, which would write its
// cursor back after the reset.
var ErrSyncing = errors.New("a sync is in progress")

// StateResetter is a warehouse whose sync state can be reset (both dialects).
type StateResetter interface {
	ResetState(ctx context.Context, scope ResetScope) (ResetResult, error)
}

var (
	_ StateResetter = (*SQLite)(nil)
	_ StateResetter = (*Postgres)(nil)
)

// ResetState implements StateResetter. On SQLite it takes the single-writer lock first, so
// it refuses while `leadsync run` (or another --once) syncs into the file.
func (s *SQLite) ResetState(ctx context.Context, scope ResetScope) (ResetResult, error) {
	if err := scope.check(); err != nil {
		return ResetResult{}, err
	}
	if err := s.LockWriter(); err != nil {
		return ResetResult{}, fmt.Errorf("%w: %v; stop it (or wait for it to finish) first", ErrSyncing, err)
	}
	var res ResetResult
	err := s.tx(ctx, func(tx *sqlx.Tx) (err error) {
		res.Cursors, err = s.deleteState(ctx, tx, scope)
		return err
	})
	return res, err
}

// ResetState implements StateResetter. On PostgreSQL, where several workers share the
// warehouse, it locks the leases of the accounts in scope and refuses when any worker holds
// a live one; a worker that claims one of them afterwards reads the cleared cursor.
func (p *Postgres) ResetState(ctx context.Context, scope ResetScope) (ResetResult, error) {
	if err := scope.check(); err != nil {
		return ResetResult{}, err
	}
	var res ResetResult
	err := p.tx(ctx, func(tx *sqlx.Tx) error {
		// Every lease row of the scope is locked, live or not, so that no worker claims one
		// of its accounts until the reset commits.
		var leases []struct {
			Account string `db:"account_id"`
			Owner   string `db:"owner"`
			Live    bool   `db:"live"`
		}
		if err := tx.SelectContext(ctx, &leases, `SELECT account_id, COALESCE(owner, '') AS owner,
    COALESCE(owner IS NOT NULL AND expires_at > clock_timestamp(), false) AS live
FROM account_leases WHERE source = $1 AND ($2 = '' OR account_id = $2)
FOR UPDATE`, scope.Source, scope.Account); err != nil {
			return fmt.Errorf("sink: lock the account leases: %w", err)
		}
		var live []string
		for _, l := range leases {
			if l.Live { // an expired lease belongs to a dead worker
				live = append(live, l.Account+" (worker "+l.Owner+")")
			}
		}
		if len(live) > 0 {
			return fmt.Errorf("%w: %s is being synced: %s; wait for the run to end", ErrSyncing, scope, strings.Join(live, ", "))
		}
		var err error
		res.Cursors, err = p.deleteState(ctx, tx, scope)
		return err
	})
	return res, err
}

// deleteState deletes the scope's sync_state rows: their cursors and last outcomes.
func (c *core) deleteState(ctx context.Context, tx *sqlx.Tx, scope ResetScope) (int64, error) {
	r, err := tx.ExecContext(ctx, c.q(`DELETE FROM sync_state WHERE source = ?
AND (? = '' OR account_id = ?) AND (? = '' OR stream = ?)`),
		scope.Source, scope.Account, scope.Account, scope.Stream, scope.Stream)
	if err != nil {
		return 0, fmt.Errorf("sink: reset %s: %w", scope, err)
	}
	return r.RowsAffected()
}

func (s ResetScope) check() error {
	if s.Source == "" {
		return errors.New("sink: reset: no source")
	}
	return nil
}

// String is the scope for messages: source[/account][ stream S].
func (s ResetScope) String() string {
	out := s.Source
	if s.Account != "" {
		out += "/" + s.Account
	}
	if s.Stream != "" {
		out += " stream " + s.Stream
	}
	return out
}
