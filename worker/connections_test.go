package worker_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// toySource lists its accounts (or fails to: listErr) and reads two leads from each, but
// fails the account named failing and restricts the one named restricted.
type toySource struct {
	name                string
	accounts            []string
	listErr             error
	failing, restricted string
}

func (s *toySource) Name() string { return s.name }

func (s *toySource) Accounts(context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		if s.listErr != nil {
			yield(sources.Account{}, s.listErr)
			return
		}
		for _, id := range s.accounts {
			if !yield(sources.Account{Source: s.name, ID: id, Active: true}, nil) {
				return
			}
		}
	}
}

func (s *toySource) Streams() []sources.Stream {
	return []sources.Stream{{Name: "leads", Mode: sources.Incremental, Table: sources.TableLeads}}
}

func (s *toySource) Read(_ context.Context, a sources.Account, _ string, _ sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		switch a.ID {
		case s.failing:
			yield(sources.Page{}, errors.New("502 Bad Gateway"))
		case s.restricted:
			yield(sources.Page{}, &sources.RestrictedError{Vendor: s.name, AccountID: a.ID, Message: "forbidden"})
		default:
			leads := []sources.Lead{{ID: a.ID + "-1", Kind: sources.KindForm}, {ID: a.ID + "-2", Kind: sources.KindForm}}
			yield(sources.Page{Leads: leads, Next: "1"}, nil)
		}
	}
}

// runObserver records the runs the worker reports, by connection.
type runObserver struct {
	mu       sync.Mutex
	started  []string // trigger/connection
	finished map[string]observedRun
}

type observedRun struct {
	trigger, status string
	stats           sink.RunStats
}

func (o *runObserver) RunStarted(trigger, connection string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = append(o.started, trigger+"/"+connection)
}

func (o *runObserver) RunFinished(trigger, connection, status string, stats sink.RunStats, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished[connection] = observedRun{trigger, status, stats}
}

func (o *runObserver) AccountsListed(string, string, []string)                            {}
func (o *runObserver) RecordsRejected(string, string, int)                                {}
func (o *runObserver) AccountSynced(string, string, string, string, int64, time.Duration) {}

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// One run over three connections: one whose listing fails, one with a failing account, one
// that syncs (with a restricted account). Each connection's part is recorded, reported to
// the observer and logged on its own, so a connection failing every run stands out while
// another succeeds; at info an account is logged only when it failed or is restricted.
func TestRunReportsEachConnection(t *testing.T) {
	t.Parallel()
	s, path := openToySinkAt(t)
	obs := &runObserver{finished: map[string]observedRun{}}
	var logs lockedBuffer
	w := &worker.Worker{Sink: s, Observer: obs, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Connections: []worker.Connection{
		{Name: "good", Source: &toySource{name: "toy", accounts: []string{"A", "B", "R"}, restricted: "R"}},
		{Name: "revoked", Source: &toySource{name: "bad", listErr: fmt.Errorf("list: %w", sources.ErrNeedsReauth)}},
		{Name: "flaky", Source: &toySource{name: "flake", accounts: []string{"C", "D"}, failing: "D"}},
	}}
	res, err := w.Run(t.Context(), worker.RunOptions{Trigger: sink.TriggerCron})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != sink.RunFailed || res.Stats.AccountsOK != 3 || res.Stats.AccountsFailed != 2 ||
		res.Stats.AccountsRestricted != 1 || res.Stats.LeadsWritten != 6 {
		t.Errorf("run = %s %+v; want failed, 3 ok, 2 failed (a listing and an account), 1 restricted, 6 leads", res.Status, res.Stats)
	}

	want := map[string]observedRun{
		"good":    {sink.TriggerCron, sink.RunOK, sink.RunStats{AccountsOK: 2, AccountsRestricted: 1, LeadsWritten: 4}},
		"revoked": {sink.TriggerCron, sink.RunFailed, sink.RunStats{AccountsFailed: 1}},
		"flaky":   {sink.TriggerCron, sink.RunFailed, sink.RunStats{AccountsOK: 1, AccountsFailed: 1, LeadsWritten: 2}},
	}
	slices.Sort(obs.started)
	if got := []string{"cron/flaky", "cron/good", "cron/revoked"}; !slices.Equal(obs.started, got) {
		t.Errorf("runs started %v, want %v", obs.started, got)
	}
	for conn, w := range want {
		if got := obs.finished[conn]; got != w {
			t.Errorf("observer: %s finished %+v, want %+v", conn, got, w)
		}
	}
	if len(res.Connections) != 3 || res.Connections[1].Connection != "revoked" ||
		!errors.Is(res.Connections[1].Err, sources.ErrNeedsReauth) || res.Connections[0].Err != nil {
		t.Errorf("result's connections = %+v; want the revoked listing's error on revoked only", res.Connections)
	}

	runs, err := s.ConnectionRuns(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Fatalf("sync_run_connections: %+v, want a row per connection", runs)
	}
	for _, r := range runs {
		w := want[r.Connection]
		if r.Run != res.Run || r.Status != w.status || r.Trigger != sink.TriggerCron || r.Mode != sink.ModeIncremental ||
			r.Stats != w.stats {
			t.Errorf("%s recorded as %+v, want run %d %+v", r.Connection, r, res.Run, w)
		}
		if failed := r.Status == sink.RunFailed; failed != (r.Error != "") {
			t.Errorf("%s: status %s with error %q", r.Connection, r.Status, r.Error)
		}
	}
	// By name: flaky, good, revoked.
	if r := runs[2]; r.Connection != "revoked" || !strings.Contains(r.Error, "needs re-authorization") || !r.LastOKAt.IsZero() {
		t.Errorf("revoked = %+v; want its listing's error, never ok", r)
	}

	// Logs: a "run finished" line per connection and one for the run; account lines only
	// for the failed and the restricted account.
	finished, accounts := map[string]bool{}, []string{}
	for _, l := range logs.lines() {
		switch {
		case strings.Contains(l, `msg="run finished"`) && strings.Contains(l, "connection="):
			for conn, w := range want {
				if strings.Contains(l, "connection="+conn+" ") {
					finished[conn] = strings.Contains(l, "status="+w.status) && strings.Contains(l, "level=INFO") &&
						strings.Contains(l, fmt.Sprintf("accounts_ok=%d ", w.stats.AccountsOK))
				}
			}
		case strings.Contains(l, `msg="run finished"`):
			if !strings.Contains(l, "connections=3") || !strings.Contains(l, "status=failed") {
				t.Errorf("the run's line: %s", l)
			}
			finished[""] = true
		case strings.Contains(l, `msg="account synced"`):
			accounts = append(accounts, l)
		case strings.Contains(l, "accounts listed"):
			t.Errorf("accounts listed at info: %s", l)
		}
	}
	if len(finished) != 4 || !finished["good"] || !finished["revoked"] || !finished["flaky"] {
		t.Errorf("run finished lines: %v, want one per connection (with its status and counts) and the run's\n%s",
			finished, strings.Join(logs.lines(), "\n"))
	}
	if len(accounts) != 2 || !strings.Contains(strings.Join(accounts, "\n"), "account=D") ||
		!strings.Contains(strings.Join(accounts, "\n"), "account=R") {
		t.Errorf("account lines at info: %q, want D (failed) and R (restricted) only", accounts)
	}

	// A run of one connection names it in sync_runs; one covering several does not.
	one, err := w.Run(t.Context(), worker.RunOptions{Trigger: sink.TriggerOnce, Connections: []string{"good"}, Full: true})
	if err != nil || one.Status != sink.RunOK {
		t.Fatalf("run of good: %s %v", one.Status, err)
	}
	runs, err = s.ConnectionRuns(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := runs[1]; r.Connection != "good" || r.Run != one.Run || r.Mode != sink.ModeFull || r.Trigger != sink.TriggerOnce || r.LastOKAt.IsZero() {
		t.Errorf("good after its full pass = %+v", r)
	}
	if r := runs[2]; r.Run != res.Run {
		t.Errorf("revoked's last run is %d, want %d (it was not in the second run)", r.Run, res.Run)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for run, want := range map[sink.RunID][2]string{res.Run: {"", sink.ModeIncremental}, one.Run: {"good", sink.ModeFull}} {
		var conn sql.NullString
		var mode string
		if err := db.QueryRow(`SELECT connection, mode FROM sync_runs WHERE id = ?`, run).Scan(&conn, &mode); err != nil {
			t.Fatal(err)
		}
		if conn.String != want[0] || conn.Valid != (want[0] != "") || mode != want[1] {
			t.Errorf("sync_runs %d: connection %v, mode %s; want %q (NULL for several), %s", run, conn, mode, want[0], want[1])
		}
	}
}
