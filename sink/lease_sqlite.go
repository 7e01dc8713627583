package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// ErrSingleWriter means another process is already syncing into this SQLite warehouse.
var ErrSingleWriter = errors.New("SQLite is single-writer: one leadsync worker per warehouse file; use PostgreSQL to run several workers")

// WriterLocker is a warehouse that admits one syncing process (SQLite).
type WriterLocker interface {
	// LockWriter makes this process the warehouse's only syncing process until Close, or
	// fails with ErrSingleWriter. Calling it again is a no-op.
	LockWriter() error
}

var _ WriterLocker = (*SQLite)(nil)

// writerLock is an exclusive flock on the database file itself, so it holds however a path
// reaches the file (a symlink, a hard link, a bind mount): the lock is the inode's. Readers
// (status, analysts) never take it. SQLite locks the file with fcntl, which flock does not
// touch on a local file system (and WAL needs one).
type writerLock struct {
	mu   sync.Mutex
	f    *os.File // the database file, open until the sink's connections are closed
	held bool
}

// openDBFile creates the database file, owner-only since it holds PII, before SQLite does
// (SQLite gives its -wal and -shm files the database's mode). An existing file keeps the
// mode its operator chose; readable by everyone, it is worth a warning.
func openDBFile(path string, log *slog.Logger) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o004 != 0 {
		log.Warn("sink: the warehouse holds PII and every user may read it",
			slog.String("path", path), slog.String("mode", st.Mode().Perm().String()))
	}
	return f, nil
}

// LockWriter implements WriterLocker. The kernel frees the flock when the process dies, so
// a crash never leaves a stale lock behind. The holder's pid goes to <db>.lock (next to
// the file the path resolves to), for the message of the processes it refuses.
func (s *SQLite) LockWriter() error {
	if s.writer.f == nil { // :memory:
		return nil
	}
	return s.writer.lock(s.path)
}

func (l *writerLock) lock(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		return nil
	}
	pidFile := path + ".lock"
	if real, err := filepath.EvalSymlinks(path); err == nil {
		pidFile = real + ".lock"
	}
	if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, _ := os.ReadFile(pidFile); len(bytes.TrimSpace(pid)) > 0 {
				who = "process " + string(bytes.TrimSpace(pid))
			}
			return fmt.Errorf("sink: %s (see %s) is syncing into %s: %w", who, pidFile, path, ErrSingleWriter)
		}
		return fmt.Errorf("sink: writer lock on %s: %w", path, err)
	}
	l.held = true
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600) // the lock is what counts
	return nil
}

// close releases the lock. It must come after SQLite's connections are closed: closing
// any descriptor of the file drops the fcntl locks this process holds on it.
func (l *writerLock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f, l.held = nil, false
	}
}

// CloseAbandonedRuns implements Sink: with the writer lock held, no other process can be
// running a run, so every running run is abandoned.
func (s *SQLite) CloseAbandonedRuns(ctx context.Context) (int64, error) {
	if err := s.LockWriter(); err != nil {
		return 0, err
	}
	return s.closeRuns(ctx, "true")
}
