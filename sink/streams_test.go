package sink

import (
	"database/sql"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// lacrmLeads are leads of an LACRM stream: contacts, or pipeline items.
func lacrmLeads(kind string, ids ...string) []sources.Lead {
	leads := testLeads("L1", ids...)
	for i := range leads {
		leads[i].Source, leads[i].Kind = sources.LACRM, kind
	}
	return leads
}

func (b *bundle) lacrmPage(t *testing.T, run RunID, stream string, leads []sources.Lead, next sources.Cursor, full bool) WriteResult {
	t.Helper()
	return b.write(t, PageWrite{Run: run, Source: sources.LACRM, Account: "L1", Stream: stream, Leads: leads, Next: next, FullPass: full})
}

func (b *bundle) lacrmCursor(t *testing.T, stream string) sources.Cursor {
	t.Helper()
	cur, err := b.s.Cursor(b.ctx, sources.LACRM, "L1", stream)
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

// leadStreams maps each lead id of the LACRM account to its stream, and to "deleted" once
// soft-deleted.
func (b *bundle) leadStreams(t *testing.T) map[string]string {
	t.Helper()
	var rows []struct {
		ID      string   `db:"lead_id"`
		Stream  string   `db:"stream"`
		Deleted nullTime `db:"deleted_at"`
	}
	if err := b.c.r.SelectContext(b.ctx, &rows, `SELECT lead_id, stream, deleted_at FROM leads WHERE source = 'lacrm'`); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, r := range rows {
		out[r.ID] = r.Stream
		if r.Deleted.Valid() {
			out[r.ID] = "deleted"
		}
	}
	return out
}

func TestStreamCursorsAreIndependent(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		b.lacrmPage(t, run, "contacts", lacrmLeads(sources.KindContact, "c1"), "contacts-1", false)
		b.lacrmPage(t, run, "pipeline_items", lacrmLeads(sources.KindPipelineItem, "p1"), "pipelines-1", false)
		b.lacrmPage(t, run, "contacts", lacrmLeads(sources.KindContact, "c2"), "contacts-2", false)
		if got := b.lacrmCursor(t, "contacts"); got != "contacts-2" {
			t.Errorf("contacts cursor = %q, want contacts-2", got)
		}
		if got := b.lacrmCursor(t, "pipeline_items"); got != "pipelines-1" {
			t.Errorf("pipeline_items cursor = %q, want pipelines-1: another stream's page moved it", got)
		}
		if got := b.lacrmCursor(t, "notes"); got != "" {
			t.Errorf("cursor of a stream never synced = %q, want empty", got)
		}
		if got, want := b.leadStreams(t), map[string]string{"c1": "contacts", "c2": "contacts", "p1": "pipeline_items"}; !maps.Equal(got, want) {
			t.Errorf("lead streams = %v, want %v", got, want)
		}

		// A page must name its stream: nothing of it is written.
		_, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LACRM, Account: "L1",
			Leads: lacrmLeads(sources.KindContact, "c3"), Next: "lost"})
		if err == nil {
			t.Fatal("a page without a stream was written")
		}
		if _, ok := b.leadStreams(t)["c3"]; ok || b.lacrmCursor(t, "") != "" {
			t.Error("a page without a stream left rows behind")
		}
	})
}

// A completed full pass of one stream deletes only that stream's leads it did not see.
func TestFullPassDeletesOnlyItsStream(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.lacrmPage(t, b.run(t), "contacts", lacrmLeads(sources.KindContact, "c1", "c2"), "c", false)
		b.lacrmPage(t, b.run(t), "pipeline_items", lacrmLeads(sources.KindPipelineItem, "p1", "p2"), "p", false)
		b.clock.Advance(time.Hour)

		pass := b.run(t)
		b.lacrmPage(t, pass, "contacts", lacrmLeads(sources.KindContact, "c1"), "full-1", true)
		// The pipeline pass has seen p1 only so far: it is not complete, and must not count.
		b.lacrmPage(t, pass, "pipeline_items", lacrmLeads(sources.KindPipelineItem, "p1"), "full-1", true)
		if missing, err := b.s.FullPassMissing(b.ctx, pass, sources.LACRM, "L1", "contacts"); err != nil || !slices.Equal(missing, []string{"c2"}) {
			t.Fatalf("FullPassMissing(contacts) = %q, %v; want only c2", missing, err)
		}
		if n, err := b.s.FinishFullPass(b.ctx, pass, sources.LACRM, "L1", "contacts"); err != nil || n != 1 {
			t.Fatalf("FinishFullPass(contacts) = %d, %v; want 1 deleted", n, err)
		}
		want := map[string]string{"c1": "contacts", "c2": "deleted", "p1": "pipeline_items", "p2": "pipeline_items"}
		if got := b.leadStreams(t); !maps.Equal(got, want) {
			t.Fatalf("after the contacts pass: %v, want %v", got, want)
		}
		// The contacts pass's seen ids are gone, the pipeline pass's are not.
		if n := b.count(t, `SELECT count(*) FROM full_pass_seen WHERE stream = 'pipeline_items'`); n != 1 {
			t.Errorf("%d pipeline_items seen rows, want 1", n)
		}

		// A pass of a stream that saw nothing deletes nothing, whatever the other streams hold.
		if n, err := b.s.FinishFullPass(b.ctx, pass, sources.LACRM, "L1", "notes"); err != nil || n != 0 {
			t.Errorf("FinishFullPass(notes) = %d, %v; want 0", n, err)
		}
		b.lacrmPage(t, pass, "pipeline_items", lacrmLeads(sources.KindPipelineItem, "p2"), "full-2", true)
		if n, err := b.s.FinishFullPass(b.ctx, pass, sources.LACRM, "L1", "pipeline_items"); err != nil || n != 0 {
			t.Errorf("FinishFullPass(pipeline_items) = %d, %v; want 0: it saw both", n, err)
		}
		if got := b.leadStreams(t); !maps.Equal(got, want) {
			t.Errorf("after the pipeline pass: %v, want %v", got, want)
		}
	})
}

// A page's counts commit with its cursor, or neither does.
func TestCountsCommitWithTheCursor(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const stream = "daily_counts"
		day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		counts := func(n int) []sources.DailyCount {
			return []sources.DailyCount{{Day: day, Kind: sources.KindCall, Count: n}, {Day: day.AddDate(0, 0, 1), Kind: sources.KindCall, Count: n}}
		}
		b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Stream: stream, Counts: counts(1), Next: "d1"})

		run := b.run(t)
		boom := errors.New("injected")
		calls := 0
		b.c.afterChunk = func(int) error { calls++; return boom } // after the counts are written
		defer func() { b.c.afterChunk = nil }()
		_, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Account: "USA_1", Stream: stream,
			Counts: counts(5), Next: "d2"})
		if !errors.Is(err, boom) || calls != 1 {
			t.Fatalf("err = %v after %d hook calls, want the injected error after the counts", err, calls)
		}
		if n := b.count(t, `SELECT sum(count) FROM lead_daily_counts`); n != 2 {
			t.Errorf("counts sum to %d after a failed page, want the first page's 2", n)
		}
		if got := b.streamCursor(t, "USA_1", stream); got != "d1" {
			t.Errorf("cursor = %q after a failed page, want d1", got)
		}

		b.c.afterChunk = nil
		if res := b.write(t, PageWrite{Run: run, Account: "USA_1", Stream: stream, Counts: counts(5), Next: "d2"}); res.Counts != 2 {
			t.Errorf("WritePage = %+v, want 2 counts", res)
		}
		if n := b.count(t, `SELECT sum(count) FROM lead_daily_counts`); n != 10 || b.streamCursor(t, "USA_1", stream) != "d2" {
			t.Errorf("counts sum to %d, cursor %q; want 10 and d2", n, b.streamCursor(t, "USA_1", stream))
		}
		// The counts stream has its own cursor: the leads stream's is untouched.
		if got := b.cursor(t, "USA_1"); got != "" {
			t.Errorf("interactions cursor = %q, want empty", got)
		}
	})
}

// storedStreamRun is a sync_run_streams row.
type storedStreamRun struct {
	Outcome  string         `db:"outcome"`
	Written  int64          `db:"rows_written"`
	Error    sql.NullString `db:"error"`
	Started  nullTime       `db:"started_at"`
	Finished nullTime       `db:"finished_at"`
}

func (b *bundle) streamRuns(t *testing.T, run RunID, stream string) []storedStreamRun {
	t.Helper()
	var rows []storedStreamRun
	if err := b.c.r.SelectContext(b.ctx, &rows, b.c.q(`SELECT outcome, rows_written, error, started_at, finished_at
FROM sync_run_streams WHERE run_id = ? AND source = 'lacrm' AND account_id = 'L1' AND stream = ?`), run, stream); err != nil {
		t.Fatal(err)
	}
	return rows
}

func (b *bundle) streamStatus(t *testing.T, source, account string) []StreamStatus {
	t.Helper()
	for _, st := range b.statusAll(t) {
		if st.Source == source && st.AccountID == account {
			return st.Streams
		}
	}
	t.Fatalf("Status has no account %s/%s", source, account)
	return nil
}

func (b *bundle) statusAll(t *testing.T) []AccountStatus {
	t.Helper()
	all, err := b.s.Status(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestStreamSyncedLedgerAndStatus(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		started := b.clock.Now()
		b.lacrmPage(t, run, "pipeline_items", lacrmLeads(sources.KindPipelineItem, "p1"), "p-1", false)
		b.clock.Advance(time.Minute)
		okAt := b.clock.Stored()
		result := func(stream, outcome string, err error) StreamResult {
			return StreamResult{Source: sources.LACRM, Account: "L1", Stream: stream, Outcome: outcome, Written: 1, Err: err, Started: started}
		}
		if err := b.s.StreamSynced(b.ctx, run, result("pipeline_items", OutcomeOK, nil)); err != nil {
			t.Fatal(err)
		}
		// contacts was refused: it has no cursor, and gets a sync_state row all the same.
		refused := &sources.RestrictedError{Vendor: sources.LACRM, AccountID: "L1", Stream: "contacts", Message: "no contacts for you"}
		if err := b.s.StreamSynced(b.ctx, run, result("contacts", OutcomeFailed, refused)); err != nil {
			t.Fatal(err)
		}

		rows := b.streamRuns(t, run, "pipeline_items")
		if len(rows) != 1 || rows[0].Outcome != OutcomeOK || rows[0].Written != 1 || rows[0].Error.Valid ||
			!rows[0].Started.Equal(storedTime(started)) || !rows[0].Finished.Equal(okAt) {
			t.Errorf("ledger of pipeline_items = %+v", rows)
		}
		if rows := b.streamRuns(t, run, "contacts"); len(rows) != 1 || rows[0].Outcome != OutcomeRestricted || rows[0].Error.String != refused.Message {
			t.Errorf("ledger of contacts = %+v, want restricted with the vendor's message", rows)
		}
		want := []StreamStatus{
			{Name: "contacts", LastOutcome: OutcomeRestricted, LastError: refused.Message},
			{Name: "pipeline_items", Cursor: "p-1", LastOutcome: OutcomeOK, LastSyncedAt: okAt},
		}
		if got := b.streamStatus(t, sources.LACRM, "L1"); !slices.Equal(got, want) {
			t.Errorf("Status streams = %+v\nwant %+v", got, want)
		}

		// A later failure keeps the last ok time and the cursor; a second result of the same
		// stream in one run replaces the first.
		run2 := b.run(t)
		b.clock.Advance(time.Hour)
		if err := b.s.StreamSynced(b.ctx, run2, result("pipeline_items", OutcomeFailed, errors.New("lacrm: 502"))); err != nil {
			t.Fatal(err)
		}
		if err := b.s.StreamSynced(b.ctx, run2, result("pipeline_items", OutcomeCancelled, errors.New("context canceled"))); err != nil {
			t.Fatal(err)
		}
		if rows := b.streamRuns(t, run2, "pipeline_items"); len(rows) != 1 || rows[0].Outcome != OutcomeCancelled {
			t.Errorf("ledger of run 2 = %+v, want one cancelled row", rows)
		}
		want[1].LastOutcome, want[1].LastError = OutcomeCancelled, "context canceled"
		if got := b.streamStatus(t, sources.LACRM, "L1"); !slices.Equal(got, want) {
			t.Errorf("Status streams after a failure = %+v\nwant %+v", got, want)
		}
		if n := b.count(t, `SELECT count(*) FROM sync_run_streams`); n != 3 {
			t.Errorf("%d ledger rows, want 3", n)
		}

		if err := b.s.StreamSynced(b.ctx, run2, StreamResult{Source: sources.LACRM, Account: "L1", Stream: "contacts"}); err == nil {
			t.Error("a result without an outcome was recorded")
		}
		if err := b.s.StreamSynced(b.ctx, run2, StreamResult{Source: sources.LACRM, Account: "L1", Outcome: OutcomeOK}); err == nil {
			t.Error("a result without a stream was recorded")
		}
	})
}
