package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// stopContexts turns SIGINT/SIGTERM into a two-step stop: the first signal cancels soft
// (finish the page in flight, commit, stop); a second signal, or timeout after the first,
// cancels hard (abort now; nothing half-committed, transactions roll back). What it does is
// said on msgs in plain sentences.
func stopContexts(parent context.Context, timeout time.Duration, msgs io.Writer) (soft, hard context.Context, stop func()) {
	return stopContextsLogged(parent, timeout, msgs, nil)
}

// stopContextsLogged is stopContexts saying what it does as records of log, unless msgs is
// a terminal, where a person pressed Ctrl-C and reads sentences: journald and log shippers
// get nothing but log lines (JSON ones stay all JSON).
func stopContextsLogged(parent context.Context, timeout time.Duration, msgs io.Writer, log *slog.Logger) (soft, hard context.Context, stop func()) {
	say := stopNotices{w: msgs}
	if log != nil && !isTerminal(msgs) {
		say.log = log
	}
	hard, cancelHard := context.WithCancel(parent)
	soft, cancelSoft := context.WithCancel(hard)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			say.first(s, timeout)
			cancelSoft()
		case <-done:
			return
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case s := <-sigs:
			say.again(s)
		case <-t.C:
			say.overdue(timeout)
		case <-done:
		}
		cancelHard()
	}()
	return soft, hard, func() {
		signal.Stop(sigs)
		close(done)
		cancelSoft()
		cancelHard()
	}
}

// stopNotices says how a stop goes: to the logger when it has one, else in sentences on w.
type stopNotices struct {
	w   io.Writer
	log *slog.Logger
}

func (n stopNotices) first(s os.Signal, timeout time.Duration) {
	if n.log == nil {
		fmt.Fprintf(n.w, "\nleadsync: %v: finishing the pages in flight (up to %v); send it again to stop at once\n", s, timeout)
		return
	}
	n.log.Info("signal: finishing the pages in flight, then stopping; send it again to stop at once",
		slog.String("signal", s.String()), slog.Duration("timeout", timeout))
}

func (n stopNotices) again(s os.Signal) {
	if n.log == nil {
		fmt.Fprintf(n.w, "leadsync: %v again: stopping now\n", s)
		return
	}
	n.log.Warn("signal again: stopping now", slog.String("signal", s.String()))
}

func (n stopNotices) overdue(timeout time.Duration) {
	if n.log == nil {
		fmt.Fprintf(n.w, "leadsync: shutdown took longer than %v: stopping now\n", timeout)
		return
	}
	n.log.Warn("the soft stop took longer than shutdown_timeout: stopping now", slog.Duration("timeout", timeout))
}

// hangups delivers SIGHUP (a reload) on the channel it returns: from then on, until stop,
// the signal no longer ends the process.
func hangups() (_ <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 1) // a SIGHUP during a reload is kept; more are the same reload
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}
