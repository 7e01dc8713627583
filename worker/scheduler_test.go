package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// yearly never fires during a test: runs come from run_on_start alone.
const yearly = "0 0 1 1 *"

// gatedSource has one account whose read blocks until release is closed (or ctx ends),
// telling reading when it begins.
type gatedSource struct {
	reading chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *gatedSource) Name() string { return "toy" }

func (s *gatedSource) Accounts(context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		yield(sources.Account{Source: "toy", ID: "A", Active: true}, nil)
	}
}

func (s *gatedSource) Streams() []sources.Stream {
	return []sources.Stream{{Name: "leads", Mode: sources.Incremental, Table: sources.TableLeads}}
}

func (s *gatedSource) Read(ctx context.Context, _ sources.Account, _ string, _ sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		s.once.Do(func() { close(s.reading) })
		select {
		case <-s.release:
		case <-ctx.Done():
		}
	}
}

// schedBundle is a scheduler over toy connections, logging JSON, with each run reported on runs.
type schedBundle struct {
	sched *worker.Scheduler
	runs  chan schedRun
	mu    sync.Mutex
	logs  bytes.Buffer
}

type schedRun struct {
	conn   string
	status string
}

func (b *schedBundle) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.Write(p)
}

// records are the log lines with msg.
func (b *schedBundle) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func schedSetup(t *testing.T, conns ...worker.Connection) *schedBundle {
	t.Helper()
	b := &schedBundle{runs: make(chan schedRun, 16)}
	w := &worker.Worker{Sink: openToySink(t), Connections: conns}
	w.Logger = slog.New(slog.DiscardHandler)
	b.sched = &worker.Scheduler{Worker: w, Schedule: yearly, FullSchedule: "off",
		Logger: slog.New(slog.NewJSONHandler(b, nil)),
		OnRun:  func(conn string, res worker.Result, err error) { b.runs <- schedRun{conn, res.Status} }}
	return b
}

func (b *schedBundle) run(t *testing.T) schedRun {
	t.Helper()
	select {
	case r := <-b.runs:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no run")
		return schedRun{}
	}
}

// run_on_start runs a connection at once, incremental, though its schedule is a year off;
// the next run of each schedule is logged at start and after the run.
func TestSchedulerRunOnStartAndNextRuns(t *testing.T) {
	t.Parallel()
	src := &listingSource{lists: [][]string{{"A"}}}
	b := schedSetup(t, worker.Connection{Name: "now", Source: src},
		worker.Connection{Name: "later", Source: src, FullSchedule: "@every 1h"})
	b.sched.RunOnStart = []string{"now"}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.sched.Run(ctx, t.Context()) }()
	if r := b.run(t); r.conn != "now" || r.status != "ok" {
		t.Errorf("run on start: %+v, want connection now, ok", r)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-b.runs:
		t.Errorf("connection %s ran without run_on_start or a tick", r.conn)
	default:
	}

	next := b.records(t, "next run")
	type line struct{ conn, mode, schedule string }
	var got []line
	for _, rec := range next {
		got = append(got, line{rec["connection"].(string), rec["mode"].(string), rec["schedule"].(string)})
		at, err := time.Parse(time.RFC3339, rec["at"].(string))
		if err != nil {
			t.Fatalf("next run at: %v", err)
		}
		switch rec["schedule"] {
		case yearly:
			if at.Month() != time.January || at.Day() != 1 || at.Hour() != 0 || !at.After(time.Now()) {
				t.Errorf("next yearly run at %s", at)
			}
		case "@every 1h":
			if at.Minute() != 0 || at.Second() != 0 || time.Until(at) > time.Hour {
				t.Errorf("next hourly full pass at %s, want the next full hour", at)
			}
		}
		if _, ok := rec["in"].(float64); !ok {
			t.Errorf("next run without the wait: %v", rec)
		}
	}
	want := []line{{"now", "incremental", yearly}, {"later", "incremental", yearly}, {"later", "full", "@every 1h"},
		{"now", "incremental", yearly}} // the last one after the run
	if len(got) != len(want) {
		t.Fatalf("next-run lines %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("next-run line %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// A reload (until closed) lets the run in flight finish whole, not cancelled, before
// RunUntil returns; RunUntil then runs again with another connection.
func TestSchedulerReloadWaitsForTheRunInFlight(t *testing.T) {
	t.Parallel()
	src := &gatedSource{reading: make(chan struct{}), release: make(chan struct{})}
	b := schedSetup(t, worker.Connection{Name: "slow", Source: src})
	b.sched.RunOnStart = []string{"slow"}
	until := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- b.sched.RunUntil(t.Context(), t.Context(), until) }()
	<-src.reading
	close(until)
	// The scheduler says whom it waits for; it cannot return before the read ends.
	deadline := time.Now().Add(30 * time.Second)
	for len(b.records(t, "reloading: waiting for the runs in flight to finish")) == 0 {
		select {
		case err := <-done:
			t.Fatalf("RunUntil returned (%v) with a run in flight", err)
		case <-time.After(10 * time.Millisecond): // polling the log for a condition
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduler never said it waits for the run in flight")
		}
	}
	if rec := b.records(t, "reloading: waiting for the runs in flight to finish")[0]; rec["connections"].([]any)[0] != "slow" {
		t.Errorf("waiting for %v, want [slow]", rec["connections"])
	}
	select {
	case err := <-done:
		t.Fatalf("RunUntil returned (%v) with a run in flight", err)
	default:
	}
	if !b.sched.Alive() {
		t.Error("not alive while waiting for the run in flight")
	}
	close(src.release)
	if r := b.run(t); r.status != "ok" {
		t.Errorf("the run in flight at the reload ended %s, want ok (finished, not cancelled)", r.status)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	b.sched.Worker.Connections = []worker.Connection{{Name: "added", Source: &listingSource{lists: [][]string{{"B"}}}}}
	b.sched.RunOnStart = []string{"added"}
	ctx, stop := context.WithCancel(t.Context())
	go func() { done <- b.sched.RunUntil(ctx, t.Context(), nil) }()
	if r := b.run(t); r.conn != "added" || r.status != "ok" {
		t.Errorf("after the reload: %+v, want connection added, ok", r)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A schedule the scheduler cannot parse schedules nothing and says which connection.
func TestSchedulerRefusesABadSchedule(t *testing.T) {
	t.Parallel()
	b := schedSetup(t, worker.Connection{Name: "ok", Source: &listingSource{lists: [][]string{{"A"}}}},
		worker.Connection{Name: "bad", Source: &listingSource{lists: [][]string{{"A"}}}, Schedule: "every day"})
	b.sched.RunOnStart = []string{"ok"}
	err := b.sched.Run(t.Context(), t.Context())
	if err == nil || !strings.Contains(err.Error(), `schedule "every day" for connection bad`) {
		t.Fatalf("Run: %v", err)
	}
	select {
	case r := <-b.runs:
		t.Errorf("%s ran although the schedules were refused", r.conn)
	default:
	}
}
