package worker_test

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// streamsSource has one account per id and three streams: "items" (incremental leads, 403
// for the account "locked"), "snapshot" (full-refresh leads: whatever snapshot holds now) and
// "counts" (incremental daily counts). It records how each stream was asked to read.
type streamsSource struct {
	mu       sync.Mutex
	snapshot []string
	reads    []streamRead
}

type streamRead struct {
	account, stream string
	cur             sources.Cursor
	full            bool
}

func (s *streamsSource) Name() string { return "multi" }

func (s *streamsSource) Accounts(context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		for _, id := range []string{"open", "locked"} {
			if !yield(sources.Account{Source: "multi", ID: id, Active: true}, nil) {
				return
			}
		}
	}
}

func (s *streamsSource) Streams() []sources.Stream {
	return []sources.Stream{
		{Name: "items", Mode: sources.Incremental, Table: sources.TableLeads},
		{Name: "snapshot", Mode: sources.FullRefresh, Table: sources.TableLeads},
		{Name: "counts", Mode: sources.Incremental, Table: sources.TableDailyCounts},
	}
}

func (s *streamsSource) Read(_ context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	s.mu.Lock()
	s.reads = append(s.reads, streamRead{a.ID, stream, cur, o.Full})
	snapshot := append([]string(nil), s.snapshot...)
	s.mu.Unlock()
	lead := func(id string) sources.Lead {
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		return sources.Lead{Source: "multi", AccountID: a.ID, ID: id, Kind: sources.KindForm, CreatedAt: at, UpdatedAt: at}
	}
	return func(yield func(sources.Page, error) bool) {
		switch stream {
		case "items":
			if a.ID == "locked" {
				yield(sources.Page{}, &sources.RestrictedError{Vendor: "multi", AccountID: a.ID, Stream: stream,
					Message: "no access to items", Fields: sources.PIIFields})
				return
			}
			n := len(cur) // one more lead per run, resumed from the cursor
			yield(sources.Page{Leads: []sources.Lead{lead(fmt.Sprintf("item-%d", n))}, Next: cur + "x"}, nil)
		case "snapshot":
			for _, id := range snapshot {
				if !yield(sources.Page{Leads: []sources.Lead{lead("snap-" + id)}, Next: sources.Cursor(id)}, nil) {
					return
				}
			}
		case "counts":
			day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			yield(sources.Page{Counts: []sources.DailyCount{{Day: day, Kind: sources.KindForm, Count: len(cur) + 1}}, Next: cur + "c"}, nil)
		}
	}
}

// The worker reads each stream of an account from its own cursor, a full-refresh stream
// whole on every run (its missing leads soft-deleted), a 403 restricting only the refused
// stream; and each stream's outcome is in the ledger.
func TestStreamsOfAnAccount(t *testing.T) {
	t.Parallel()
	s, path := openToySinkAt(t)
	src := &streamsSource{snapshot: []string{"a", "b", "c"}}
	w := &worker.Worker{Sink: s, Connections: []worker.Connection{{Name: "multi", Source: src}}}
	run := func() worker.Result {
		t.Helper()
		res, err := w.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() || res.Stats.AccountsOK != 1 || res.Stats.AccountsRestricted != 1 {
			t.Fatalf("run %s: %+v %v", res.Status, res.Stats, res.Failures)
		}
		return res
	}
	first := run()
	if first.Stats.LeadsWritten != 1+3+3 { // open: an item and the snapshot; locked: the snapshot
		t.Fatalf("first run wrote %d leads", first.Stats.LeadsWritten)
	}
	src.mu.Lock()
	src.snapshot, src.reads = []string{"a", "c"}, nil
	src.mu.Unlock()
	second := run()

	for _, r := range src.reads {
		switch r.stream {
		case "snapshot":
			if r.cur != "" || !r.full {
				t.Errorf("%s/snapshot read from %q (full %v): a full-refresh stream is read whole", r.account, r.cur, r.full)
			}
		case "items", "counts":
			if r.account == "open" && (r.cur == "" || r.full) {
				t.Errorf("%s/%s read from %q (full %v): an incremental stream resumes from its cursor", r.account, r.stream, r.cur, r.full)
			}
		}
	}
	if second.Stats.LeadsWritten != 1 {
		t.Errorf("second run wrote %d leads, want 1 (the next item)", second.Stats.LeadsWritten)
	}

	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) (n int) {
		t.Helper()
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	for _, acct := range []string{"open", "locked"} {
		if n := count(`SELECT count(*) FROM leads WHERE account_id = ? AND stream = 'snapshot' AND deleted_at IS NOT NULL`, acct); n != 1 {
			t.Errorf("%s: %d snapshot leads deleted, want 1 (snap-b)", acct, n)
		}
		if n := count(`SELECT count(*) FROM leads WHERE account_id = ? AND stream = 'items' AND deleted_at IS NOT NULL`, acct); n != 0 {
			t.Errorf("%s: the snapshot's full refresh deleted %d items", acct, n)
		}
		if n := count(`SELECT count FROM lead_daily_counts WHERE account_id = ?`, acct); n != 2 {
			t.Errorf("%s: daily count %d, want 2 (read twice from its cursor)", acct, n)
		}
	}
	outcomes := map[string]string{}
	rows, err := db.Query(`SELECT account_id, stream, outcome FROM sync_run_streams WHERE run_id = ?`, second.Run)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var a, st, o string
		if err := rows.Scan(&a, &st, &o); err != nil {
			t.Fatal(err)
		}
		outcomes[a+"/"+st] = o
	}
	want := map[string]string{"open/items": "ok", "open/snapshot": "ok", "open/counts": "ok",
		"locked/items": "restricted", "locked/snapshot": "ok", "locked/counts": "ok"}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("ledger of the second run: %v, want %v", outcomes, want)
	}
	if n := count(`SELECT count(*) FROM accounts WHERE account_id = 'locked' AND access = 'forbidden'`); n != 1 {
		t.Error("the account whose items stream answers 403 is not marked restricted")
	}
}

// A connection's streams option syncs only the streams it names, in the source's order.
func TestConnectionStreamSelection(t *testing.T) {
	t.Parallel()
	s, _ := openToySinkAt(t)
	src := &streamsSource{snapshot: []string{"a"}}
	w := &worker.Worker{Sink: s, Connections: []worker.Connection{{Name: "multi", Source: src, Streams: []string{"counts", "items"}}}}
	if _, err := w.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range src.reads {
		if r.account == "open" {
			got = append(got, r.stream)
		}
	}
	if fmt.Sprint(got) != "[items counts]" {
		t.Errorf("streams read: %v, want [items counts]", got)
	}
	if n := len(src.Streams()); n != 3 {
		t.Errorf("the selection changed the source's own streams: %d", n)
	}
}

// scopeSource is streamsSource whose counts stream the grant lacks the scope for.
type scopeSource struct{ *streamsSource }

func (s scopeSource) Read(ctx context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	if stream == "counts" {
		return func(yield func(sources.Page, error) bool) {
			yield(sources.Page{}, &sources.MissingScopeError{Vendor: "multi", AccountID: a.ID, Stream: stream,
				Scope: "counts.readonly", Message: "The token is not authorized for this scope."})
		}
	}
	return s.streamsSource.Read(ctx, a, stream, cur, o)
}

// A stream the grant lacks the scope for ends missing_scope with the fix named; the
// account's other streams carry on, and the account is ok.
func TestMissingScopeStream(t *testing.T) {
	t.Parallel()
	s, path := openToySinkAt(t)
	src := scopeSource{&streamsSource{snapshot: []string{"a"}}}
	w := &worker.Worker{Sink: s, Connections: []worker.Connection{{Name: "multi", Source: src, Streams: []string{"snapshot", "counts"}}}}
	res, err := w.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Stats.AccountsOK != 2 {
		t.Fatalf("run %s: %+v %v", res.Status, res.Stats, res.Failures)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var outcome, msg string
	if err := db.QueryRow(`SELECT last_outcome, last_error FROM sync_state WHERE account_id = 'open' AND stream = 'counts'`).Scan(&outcome, &msg); err != nil {
		t.Fatal(err)
	}
	if outcome != worker.OutcomeMissingScope || !strings.Contains(msg, "leadsync auth login") || !strings.Contains(msg, "counts.readonly") {
		t.Errorf("counts stream: %s, %q", outcome, msg)
	}
	var synced int
	if err := db.QueryRow(`SELECT count(*) FROM accounts WHERE last_synced_at IS NOT NULL`).Scan(&synced); err != nil || synced != 2 {
		t.Errorf("accounts stamped synced: %d (%v), want 2", synced, err)
	}
}
