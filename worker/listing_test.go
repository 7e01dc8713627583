package worker_test

import (
	"context"
	"database/sql"
	"iter"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// listingSource lists accounts from lists, one listing per run; a listing with more=true
// never ends by itself (a vendor that keeps saying "more"): it yields one account, then
// blocks until ctx is done.
type listingSource struct {
	mu      sync.Mutex
	lists   [][]string
	more    bool
	yielded chan struct{}
}

func (s *listingSource) Name() string { return "toy" }

func (s *listingSource) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		s.mu.Lock()
		ids := s.lists[0]
		if len(s.lists) > 1 {
			s.lists = s.lists[1:]
		}
		s.mu.Unlock()
		for _, id := range ids {
			if !yield(sources.Account{Source: "toy", ID: id, Active: true}, nil) {
				return
			}
		}
		if s.more {
			close(s.yielded)
			<-ctx.Done()
			yield(sources.Account{}, ctx.Err())
		}
	}
}

func (s *listingSource) Streams() []sources.Stream {
	return []sources.Stream{{Name: "leads", Mode: sources.Incremental, Table: sources.TableLeads}}
}

func (s *listingSource) Read(context.Context, sources.Account, string, sources.Cursor, sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(func(sources.Page, error) bool) {}
}

type listedObserver struct {
	mu     sync.Mutex
	listed [][]string
}

func (o *listedObserver) RunStarted(string, string)                                          {}
func (o *listedObserver) AccountSynced(string, string, string, string, int64, time.Duration) {}
func (o *listedObserver) RunFinished(string, string, string, sink.RunStats, time.Duration)   {}
func (o *listedObserver) RecordsRejected(string, string, int)                                {}
func (o *listedObserver) AccountsListed(connection, source string, accounts []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.listed = append(o.listed, slices.Clone(accounts))
}

func openToySink(t *testing.T) sink.Sink {
	s, _ := openToySinkAt(t)
	return s
}

func openToySinkAt(t *testing.T) (sink.Sink, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leads.db")
	s, err := sink.Open(context.Background(), path, sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// A soft stop (SIGTERM) must end a listing at once: it commits nothing, so there is no page
// in flight to finish, and waiting on it would spend the whole shutdown timeout.
func TestSoftStopInterruptsAccountListing(t *testing.T) {
	t.Parallel()
	src := &listingSource{lists: [][]string{{"A"}}, more: true, yielded: make(chan struct{})}
	w := &worker.Worker{Sink: openToySink(t), Connections: []worker.Connection{{Name: "toy", Source: src}}}
	soft, stop := context.WithCancel(context.Background())
	done := make(chan worker.Result, 1)
	go func() {
		res, err := w.Run(soft, worker.RunOptions{Trigger: sink.TriggerOnce})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-src.yielded
	stop()
	select {
	case res := <-done:
		if res.Status != sink.RunCancelled {
			t.Errorf("a run stopped during its listing is %q, want %q", res.Status, sink.RunCancelled)
		}
	case <-time.After(time.Minute):
		t.Fatal("the soft stop did not interrupt the account listing")
	}
}

// An account missing from a complete listing (an uninstalled location) is reported, so its
// metrics are dropped rather than raising lag alerts forever.
func TestCompleteListingIsReported(t *testing.T) {
	t.Parallel()
	src := &listingSource{lists: [][]string{{"A", "B"}, {"A"}}}
	obs := &listedObserver{}
	w := &worker.Worker{Sink: openToySink(t), Observer: obs, Connections: []worker.Connection{{Name: "toy", Source: src}}}
	for range 2 {
		if res, err := w.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce}); err != nil || !res.OK() {
			t.Fatalf("run: %v %v", res.Status, err)
		}
	}
	if want := [][]string{{"A", "B"}, {"A"}}; !slices.EqualFunc(obs.listed, want, slices.Equal) {
		t.Errorf("listings reported %v, want %v", obs.listed, want)
	}
}

// A run that a crash or a database outage left "running" is closed as abandoned by the next
// process's first run, so the ledger never shows a run in progress that is not.
func TestFirstRunClosesAbandonedRuns(t *testing.T) {
	t.Parallel()
	s, path := openToySinkAt(t)
	ctx := context.Background()
	stale, err := s.BeginRun(ctx, sink.TriggerCron, "", sink.ModeIncremental) // its process died before FinishRun
	if err != nil {
		t.Fatal(err)
	}
	w := &worker.Worker{Sink: s, Connections: []worker.Connection{{Name: "toy", Source: &listingSource{lists: [][]string{{"A"}}}}}}
	res, err := w.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce})
	if err != nil || !res.OK() {
		t.Fatalf("run: %v %v", res.Status, err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, status FROM sync_runs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[sink.RunID]string{}
	for rows.Next() {
		var id sink.RunID
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		got[id] = status
	}
	if got[stale] != sink.RunAbandoned || got[res.Run] != sink.RunOK {
		t.Errorf("runs after restart: %v, want run %d %s and run %d %s", got, stale, sink.RunAbandoned, res.Run, sink.RunOK)
	}
}
