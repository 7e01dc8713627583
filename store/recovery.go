package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A recovery file holds, sealed with the store key, the writes a Store could not make
// before Shutdown's deadline. Each process writes its own; any Open of a store with the
// same RecoveryDir applies and removes them all.
const (
	recoveryPrefix = "token-recovery-"
	recoverySuffix = ".sealed"
	recoveryAD     = "recovery\x00v1"
)

type recoveryFile struct {
	Entries []recoveryEntry `json:"entries"`
}

type recoveryEntry struct {
	Conn        string         `json:"connection"`
	Intent      string         `json:"intent"`
	PrevVersion int64          `json:"prev_version"`
	PrevRefresh string         `json:"prev_refresh"`
	Reauth      string         `json:"reauth,omitempty"`
	Next        *recoveredPair `json:"next,omitempty"`
}

// recoveredPair is a grantRecord's written fields. Secret fields redact themselves when
// marshalled, hence the plain strings.
type recoveredPair struct {
	Access        string            `json:"access"`
	Refresh       string            `json:"refresh"`
	PrevRefresh   string            `json:"prev_refresh"`
	TokenType     string            `json:"token_type"`
	Meta          map[string]string `json:"meta"`
	Scopes        []string          `json:"scopes"`
	Version       int64             `json:"version"`
	Expiry        time.Time         `json:"expiry"`
	LastRefreshAt time.Time         `json:"last_refresh_at"`
	RotatedAt     time.Time         `json:"rotated_at"`
}

func entryOf(conn string, p *pendingWrite) recoveryEntry {
	e := recoveryEntry{Conn: conn, Intent: p.intent, PrevVersion: p.prev.Version, PrevRefresh: p.prev.Refresh.Reveal(),
		Reauth: p.reauth}
	if n := p.next; n != nil {
		e.Next = &recoveredPair{Access: n.Access.Reveal(), Refresh: n.Refresh.Reveal(), PrevRefresh: n.PrevRefresh.Reveal(),
			TokenType: n.TokenType, Meta: n.Meta, Scopes: n.Scopes, Version: n.Version, Expiry: n.Expiry,
			LastRefreshAt: n.LastRefreshAt, RotatedAt: n.RotatedAt}
	}
	return e
}

func (e recoveryEntry) pending() *pendingWrite {
	p := &pendingWrite{prev: &grantRecord{Conn: e.Conn, Version: e.PrevVersion, Refresh: Secret(e.PrevRefresh)},
		intent: e.Intent, reauth: e.Reauth}
	if n := e.Next; n != nil {
		p.anyIntent = true
		p.next = &grantRecord{Conn: e.Conn, Access: Secret(n.Access), Refresh: Secret(n.Refresh),
			PrevRefresh: Secret(n.PrevRefresh), TokenType: n.TokenType, Meta: n.Meta, Scopes: n.Scopes,
			Version: n.Version, Expiry: n.Expiry, LastRefreshAt: n.LastRefreshAt, RotatedAt: n.RotatedAt}
	}
	return p
}

func (s *Store) recoveryPath() string {
	return filepath.Join(s.recoveryDir, recoveryPrefix+s.me.nonce+recoverySuffix)
}

func recoveryOf(pending map[string]*pendingWrite) *recoveryFile {
	var f recoveryFile
	for _, conn := range slices.Sorted(maps.Keys(pending)) {
		f.Entries = append(f.Entries, entryOf(conn, pending[conn]))
	}
	return &f
}

// syncRecovery keeps this Store's recovery file equal to its pending writes from the moment
// one is pending, so a pair the database did not take survives even a SIGKILL (when the
// state directory can take it); the file goes once nothing is pending.
func (s *Store) syncRecovery() {
	if s.recoveryDir == "" {
		return
	}
	s.recoveryMu.Lock()
	defer s.recoveryMu.Unlock()
	s.mu.Lock()
	left := maps.Clone(s.pending)
	s.mu.Unlock()
	var err error
	if len(left) == 0 {
		if err = os.Remove(s.recoveryPath()); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		err = s.writeRecovery(s.recoveryPath(), recoveryOf(left))
	}
	if err != nil {
		s.log.Warn("could not update the token recovery file (retried at shutdown)", slog.String("error", err.Error()))
	}
}

// saveRecovery seals the writes still pending into this Store's recovery file.
func (s *Store) saveRecovery() error {
	s.recoveryMu.Lock()
	defer s.recoveryMu.Unlock()
	s.mu.Lock()
	left := maps.Clone(s.pending)
	clear(s.pending)
	s.mu.Unlock()
	if len(left) == 0 {
		return nil
	}
	f := recoveryOf(left)
	path := s.recoveryPath()
	err := errors.New("no recovery directory is set (store.Options.RecoveryDir)")
	if s.recoveryDir != "" {
		err = s.writeRecovery(path, f)
	}
	for _, e := range f.Entries {
		if e.Next == nil {
			continue
		}
		if err != nil {
			s.log.Error("LOST a rotated refresh token: it could not be written to the token store nor to a recovery "+
				"file; the next refresh gets invalid_grant and the connection will need `leadsync auth login`",
				slog.String("connection", e.Conn), slog.String("error", err.Error()))
		} else {
			s.log.Warn("the rotated token pair could not be written to the token store before shutdown; sealed it "+
				"in a recovery file, which the next start applies", slog.String("connection", e.Conn), slog.String("file", path))
		}
	}
	if err != nil {
		return fmt.Errorf("store: pending token writes not saved: %w", err)
	}
	return nil
}

// writeRecovery writes the file durably and atomically, mode 0600.
func (s *Store) writeRecovery(path string, f *recoveryFile) error {
	plain, err := json.Marshal(f)
	if err != nil {
		return err
	}
	ct, err := s.seal.Load().seal(string(plain), recoveryAD)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+recoveryPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(ct)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// applyRecovery applies and removes every recovery file in RecoveryDir. It fails when one
// cannot be applied (the store is not writable): the file stays for the next try.
func (s *Store) applyRecovery(ctx context.Context) error {
	if s.recoveryDir == "" {
		return nil
	}
	paths, err := filepath.Glob(filepath.Join(s.recoveryDir, recoveryPrefix+"*"+recoverySuffix))
	if err != nil {
		return fmt.Errorf("store: recovery files: %w", err)
	}
	for _, path := range paths {
		if err := s.applyRecoveryFile(ctx, path); err != nil {
			return fmt.Errorf("store: apply recovery file %s: %w", path, err)
		}
	}
	return nil
}

func (s *Store) applyRecoveryFile(ctx context.Context, path string) error {
	ct, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // applied by another process meanwhile
	}
	if err != nil {
		return err
	}
	plain, err := s.seal.Load().open(ct, recoveryAD)
	if err != nil {
		return err
	}
	var f recoveryFile
	if err := json.Unmarshal([]byte(plain), &f); err != nil {
		return fmt.Errorf("malformed: %w", err)
	}
	tx, release, err := s.db.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	for _, e := range f.Entries {
		row, err := s.loadGrant(ctx, tx, e.Conn, true)
		if errors.Is(err, ErrNoGrant) {
			s.log.Warn("discarded a recovered token write: the grant was forgotten", slog.String("connection", e.Conn))
			continue
		}
		if err != nil {
			return err
		}
		if e.Next != nil && row.Version == e.Next.Version && row.Refresh.Reveal() == e.Next.Refresh {
			continue // it landed after all
		}
		err = s.writeGrantTx(ctx, tx, row, e.pending())
		switch {
		case err == nil:
			s.log.Info("applied a recovered token write", slog.String("connection", e.Conn), slog.String("write", e.pending().what()))
		case errors.Is(err, errSuperseded):
			s.log.Warn("discarded a recovered token write: the grant changed since (a new login?)",
				slog.String("connection", e.Conn), slog.String("write", e.pending().what()))
		default:
			return err
		}
	}
	if err := s.db.commit(tx); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
