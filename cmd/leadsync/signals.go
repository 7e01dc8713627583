package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// stopContexts turns SIGINT/SIGTERM into a two-step stop: the first signal cancels soft
// (finish the page in flight, commit, stop); a second signal, or timeout after the first,
// cancels hard (abort now; nothing half-committed, transactions roll back).
func stopContexts(parent context.Context, timeout time.Duration, msgs io.Writer) (soft, hard context.Context, stop func()) {
	hard, cancelHard := context.WithCancel(parent)
	soft, cancelSoft := context.WithCancel(hard)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(msgs, "\nleadsync: %v: finishing the pages in flight (up to %v); send it again to stop at once\n", s, timeout)
			cancelSoft()
		case <-done:
			return
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case s := <-sigs:
			fmt.Fprintf(msgs, "leadsync: %v again: stopping now\n", s)
		case <-t.C:
			fmt.Fprintf(msgs, "leadsync: shutdown took longer than %v: stopping now\n", timeout)
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
