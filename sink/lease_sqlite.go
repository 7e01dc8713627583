package sink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
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

// writerLock is an exclusive flock on <db>.lock. Readers (status, analysts) never take it.
type writerLock struct {
	mu sync.Mutex
	f  *os.File
}

// LockWriter implements WriterLocker with an exclusive flock on <db>.lock, which the kernel
// frees when the process dies, so a crash never leaves a stale lock behind.
func (s *SQLite) LockWriter() error {
	if s.path == ":memory:" {
		return nil
	}
	return s.writer.lock(s.path + ".lock")
}

func (l *writerLock) lock(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sink: writer lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid := string(bytes.TrimSpace(holder)); pid != "" {
				who = "process " + pid
			}
			return fmt.Errorf("sink: %s holds %s: %w", who, path, ErrSingleWriter)
		}
		return fmt.Errorf("sink: writer lock %s: %w", path, err)
	}
	// The holder's pid, for the message above; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	l.f = f
	return nil
}

func (l *writerLock) unlock() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close() // closing the descriptor releases the flock
		l.f = nil
	}
}
