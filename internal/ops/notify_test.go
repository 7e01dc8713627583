package ops

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// notifySocket stands in for systemd: a unixgram socket set as NOTIFY_SOCKET. Tests using
// it change the environment, so they cannot run in parallel.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
}

func setupNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &notifySocket{t: t, conn: conn}
}

// next waits (with a deadline, never a sleep) for the next datagram.
func (s *notifySocket) next() string {
	s.t.Helper()
	if err := s.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		s.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("no notification from the service: %v", err)
	}
	return string(buf[:n])
}

func TestNotifications(t *testing.T) {
	sock := setupNotify(t)
	steps := []struct {
		send func() error
		want string
	}{
		{Ready, "READY=1"},
		{func() error { return Status("syncing 3 accounts\nREADY=1") }, "STATUS=syncing 3 accounts READY=1"},
		{Stopping, "STOPPING=1"},
		{func() error { return ExtendTimeout(90 * time.Second) }, "EXTEND_TIMEOUT_USEC=90000000"},
	}
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatalf("%s: %v", s.want, err)
		}
		if got := sock.next(); got != s.want {
			t.Errorf("systemd got %q, want %q", got, s.want)
		}
	}
}

func TestWatchdogPingsSystemd(t *testing.T) {
	sock := setupNotify(t)
	t.Setenv("WATCHDOG_USEC", "20000") // 20 ms: pings every 10 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx, func() bool { return true }) }()
	for range 3 {
		if got := sock.next(); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watchdog: %v", err)
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	for _, f := range []func() error{Ready, Stopping, Reloading, func() error { return Status("x") },
		func() error { return ExtendTimeout(time.Minute) }} {
		if err := f(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v", err)
		}
	}
	Extending(time.Millisecond)() // no ticker left behind, nothing sent
	// Returns at once: the watchdog is not enabled.
	if err := Watchdog(t.Context(), func() bool { t.Error("alive() called without a watchdog"); return true }); err != nil {
		t.Errorf("Watchdog: %v", err)
	}
	// Another process's watchdog (WATCHDOG_PID) is not ours either.
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if err := Watchdog(t.Context(), func() bool { t.Error("alive() called for another pid's watchdog"); return true }); err != nil {
		t.Errorf("Watchdog: %v", err)
	}
}

// A wedged scheduler (alive() false) must stop the pings, and they resume when it recovers.
// The test answers each alive() call itself, so every step is deterministic.
func TestWatchdogStopsPingingWhenNotAlive(t *testing.T) {
	t.Parallel()
	answers := make(chan bool)
	pings := make(chan struct{}, 10)
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- watchdog(ctx, ticks, func() bool { return <-answers }, func() error { pings <- struct{}{}; return nil })
	}()
	waitPing := func(step string) {
		t.Helper()
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no ping", step)
		}
	}

	answers <- true // the first ping goes out at once
	waitPing("start")
	ticks <- time.Now()
	answers <- true
	waitPing("alive")
	for range 3 { // wedged
		ticks <- time.Now()
		answers <- false
	}
	ticks <- time.Now() // received: the wedged iterations are complete
	if len(pings) != 0 {
		t.Fatal("pinged while not alive")
	}
	answers <- true // recovered
	waitPing("recovered")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A reload is announced with the monotonic time it began, in one datagram, as
// sd_notify(3) asks; a second one carries a later time.
func TestNotifyReloading(t *testing.T) {
	sock := setupNotify(t)
	var last int64
	for range 2 {
		if err := Reloading(); err != nil {
			t.Fatal(err)
		}
		got := sock.next()
		usec, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
		n, err := strconv.ParseInt(usec, 10, 64)
		if !ok || err != nil || n <= 0 || n < last {
			t.Fatalf("got %q, want RELOADING=1 and a MONOTONIC_USEC= not before %d", got, last)
		}
		last = n
	}
}

// While migrations run, systemd hears EXTEND_TIMEOUT_USEC at once, then again before the
// extension runs out; nothing after stop.
func TestExtendingKeepsTheStartTimeoutAhead(t *testing.T) {
	sock := setupNotify(t)
	stop := Extending(3 * time.Hour)
	if got := sock.next(); got != "EXTEND_TIMEOUT_USEC=10800000000" {
		t.Errorf("got %q, want EXTEND_TIMEOUT_USEC=10800000000", got)
	}
	stop()
	stop() // idempotent

	calls := make(chan struct{}, 10)
	ticks := make(chan time.Time)
	stopped := false
	stop = extending(ticks, func() { stopped = true }, func() error { calls <- struct{}{}; return nil })
	if len(calls) != 1 {
		t.Fatalf("%d extensions before the first tick, want 1 at once", len(calls))
	}
	<-calls
	for range 2 {
		ticks <- time.Now()
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatal("no extension after a tick")
		}
	}
	stop()
	if !stopped {
		t.Error("the ticker was not stopped")
	}
	select {
	case ticks <- time.Now():
		t.Error("still extending after stop")
	default:
	}
	if len(calls) != 0 {
		t.Errorf("%d extensions after stop", len(calls))
	}
}
