package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// pendingWrite is what a refresh has to write to its grant's row: the rotated pair (next),
// or the needs_reauth mark (reauth), or else only the release of its rotation intent.
type pendingWrite struct {
	prev   *grantRecord // the row as claimed: the compare-and-swap's expected version and refresh token
	intent string       // the claim's rotation intent, expected on the row
	next   *grantRecord
	reauth string
	// anyIntent: a pair from a recovery file, written whoever holds the intent now (a
	// process that took the claim over would only spend the stored, spent, refresh token).
	anyIntent bool
}

func (p *pendingWrite) what() string {
	switch {
	case p.next != nil:
		return "rotated token pair"
	case p.reauth != "":
		return "needs_reauth mark"
	}
	return "release of the rotation intent"
}

// errSuperseded: the row no longer holds what the write expects (a new login, a Forget).
var errSuperseded = errors.New("the grant changed since it was claimed")

// write writes p now or, failing that, keeps it in memory and retries it in the background.
// It reports false only when the row was superseded and p is void.
func (s *Store) write(ctx context.Context, conn string, p *pendingWrite) bool {
	err := s.writeGrant(ctx, conn, p)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errSuperseded):
		if p.next != nil {
			s.log.Error("the grant changed during its refresh (a new login?); discarded the rotated token pair",
				slog.String("connection", conn))
		}
		return false
	}
	s.mu.Lock()
	s.pending[conn] = p
	s.mu.Unlock()
	s.syncRecovery()
	msg := p.what() + " not yet durable; retrying the write"
	if p.next != nil {
		msg = "rotated token not yet durable; using it from memory and retrying the write until the token store takes it"
	}
	s.log.Warn(msg, slog.String("connection", conn), slog.String("error", err.Error()))
	s.writers.Add(1)
	go s.retry(conn, p)
	return true
}

// retry writes p with backoff until it lands, is superseded, or Shutdown gives up on it.
func (s *Store) retry(conn string, p *pendingWrite) {
	defer s.writers.Done()
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	started, warned := time.Now(), time.Now()
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-s.stopWriters.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !s.isPending(conn, p) {
			return // superseded by a login in this process
		}
		s.rotate.RLock()
		err := s.writeGrant(s.stopWriters, conn, p)
		s.rotate.RUnlock()
		switch {
		case err == nil:
			s.donePending(conn, p)
			s.log.Info(p.what()+" is now durable", slog.String("connection", conn), slog.Int("attempts", attempt),
				slog.Duration("after", time.Since(started).Round(time.Millisecond)))
			return
		case errors.Is(err, errSuperseded):
			s.donePending(conn, p)
			if p.next != nil {
				s.log.Warn("discarded a rotated token pair not yet durable: the grant was replaced meanwhile (a new login?)",
					slog.String("connection", conn))
			}
			return
		case s.stopWriters.Err() != nil:
			return // Shutdown seals it into the recovery file
		}
		s.log.Debug(p.what()+" not yet durable; retrying the write", slog.String("connection", conn),
			slog.Int("attempt", attempt), slog.String("error", err.Error()))
		if time.Since(warned) >= time.Minute {
			warned = time.Now()
			s.log.Warn(p.what()+" still not durable; retrying the write", slog.String("connection", conn),
				slog.Int("attempts", attempt), slog.Duration("for", time.Since(started).Round(time.Second)),
				slog.String("error", err.Error()))
		}
	}
}

func (s *Store) isPending(conn string, p *pendingWrite) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[conn] == p
}

func (s *Store) donePending(conn string, p *pendingWrite) {
	s.mu.Lock()
	if s.pending[conn] == p {
		delete(s.pending, conn)
	}
	s.mu.Unlock()
	s.syncRecovery()
}

func (s *Store) dropPending(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, conn)
}

// pendingGrant answers for a grant whose refresh result is not yet durable: the rotated
// pair in memory, or the needs_reauth the vendor decided. ok is false when there is none.
func (s *Store) pendingGrant(conn string) (_ *grantRecord, _ error, ok bool) {
	s.mu.Lock()
	p := s.pending[conn]
	s.mu.Unlock()
	switch {
	case p == nil || (p.next == nil && p.reauth == ""):
		return nil, nil, false
	case p.reauth != "":
		return nil, &reauthError{conn: conn, reason: p.reauth}, true
	}
	if !s.isInvalid(conn, p.next.Access.Reveal()) && p.next.usable(s.now()) {
		return p.next, nil, true
	}
	return nil, &refreshError{conn: conn, msg: "the rotated token pair is not yet durable in the token store and its " +
		"access token expired or was rejected: not refreshing again until the write lands"}, true
}

// PendingRotations lists, sorted, the connections whose rotated token pair this Store holds
// only in memory: the vendor answered, the write to the token store has not landed yet.
// Each is retried until it does; Shutdown seals what is left into the recovery file.
func (s *Store) PendingRotations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for conn, p := range s.pending {
		if p.next != nil {
			out = append(out, conn)
		}
	}
	slices.Sort(out)
	return out
}

// writeGrant writes p in a transaction of its own. The caller holds s.rotate for reading.
func (s *Store) writeGrant(ctx context.Context, conn string, p *pendingWrite) error {
	tx, release, err := s.db.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	row, err := s.loadGrant(ctx, tx, conn, true)
	if errors.Is(err, ErrNoGrant) {
		return errSuperseded // forgotten meanwhile
	}
	if err != nil {
		return err
	}
	if err := s.writeGrantTx(ctx, tx, row, p); err != nil {
		return err
	}
	return s.db.commit(tx)
}

// writeGrantTx writes p over row, read under the lock in tx: only if row is still what p's
// claim left (the compare-and-swap on version, refresh token and intent).
func (s *Store) writeGrantTx(ctx context.Context, tx *sql.Tx, row *grantRecord, p *pendingWrite) error {
	if row.Version != p.prev.Version || row.Refresh != p.prev.Refresh || (!p.anyIntent && row.RotatingBy != p.intent) {
		return errSuperseded
	}
	var res sql.Result
	var err error
	switch {
	case p.next != nil:
		return s.casGrant(ctx, tx, row, p.next)
	case p.reauth != "":
		res, err = tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET needs_reauth = TRUE, reauth_reason = ?, rotating_by = '',
			rotating_since_ms = NULL, updated_at_ms = ? WHERE connection = ? AND version = ?`),
			p.reauth, s.now().UnixMilli(), row.Conn, row.Version)
	default:
		res, err = tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET rotating_by = '', rotating_since_ms = NULL
			WHERE connection = ? AND version = ?`), row.Conn, row.Version)
	}
	if err != nil {
		return fmt.Errorf("store: write grant %q: %w", row.Conn, s.db.lockErr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errSuperseded
	}
	return nil
}

// casGrant writes next over row (read under the lock) and clears the rotation intent. The
// WHERE clause repeats the compare-and-swap, so a broken lock is an error, not a silent
// overwrite.
func (s *Store) casGrant(ctx context.Context, tx execer, row, next *grantRecord) error {
	seal := s.seal.Load()
	access, err := seal.seal(next.Access.Reveal(), grantAD(next.Conn, "access"))
	if err != nil {
		return err
	}
	refresh, err := seal.seal(next.Refresh.Reveal(), grantAD(next.Conn, "refresh"))
	if err != nil {
		return err
	}
	prev, err := seal.seal(next.PrevRefresh.Reveal(), grantAD(next.Conn, "prev_refresh"))
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(next.Meta)
	res, err := tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET access_token = ?, refresh_token = ?, prev_refresh_token = ?,
		expiry_ms = ?, token_type = ?, meta = ?, scopes = ?, version = ?, last_refresh_at_ms = ?, rotated_at_ms = ?,
		rotating_by = '', rotating_since_ms = NULL, updated_at_ms = ?
		WHERE connection = ? AND version = ? AND refresh_token = ?`),
		access, refresh, prev, msOrNull(next.Expiry), next.TokenType, string(meta), strings.Join(next.Scopes, " "),
		next.Version, msOrNull(next.LastRefreshAt), msOrNull(next.RotatedAt), s.now().UnixMilli(),
		row.Conn, row.Version, row.refreshCT)
	if err != nil {
		return fmt.Errorf("store: write refreshed grant %q: %w", row.Conn, s.db.lockErr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("store: write refreshed grant %q: compare-and-swap failed (row changed under the lock): %w",
			row.Conn, errSuperseded)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
