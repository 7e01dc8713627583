package sink

import (
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/sources"
)

// A lead whose raw JSON jsonb refuses (a lone surrogate, a number out of numeric's range)
// once blocked its account on PostgreSQL for good. Now it is repaired, on both dialects,
// and the stream goes on.
func TestPoisonedJSONIsRepaired(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		leads := testLeads("USA_1", "before", "surrogate", "huge", "after")
		leads[1].Raw = json.RawMessage(`{"id":"surrogate","note":"a\ud800b"}`)
		leads[2].Raw = json.RawMessage(`{"id":"huge","score":1e999999}`)
		res, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: leads, Next: "c1"})
		if err != nil {
			t.Fatalf("a page with poisoned JSON failed: %v", err)
		}
		if res.Inserted != 4 {
			t.Errorf("WritePage = %+v, want 4 inserted", res)
		}
		if got := b.cursor(t, "USA_1"); got != "c1" {
			t.Fatalf("cursor = %q, want c1", got)
		}
		b.write(t, PageWrite{Run: run, Account: "USA_1", Leads: testLeads("USA_1", "later"), Next: "c2"})
		rows := b.leads(t, "USA_1")
		if len(rows) != 5 || b.cursor(t, "USA_1") != "c2" {
			t.Fatalf("%d leads, cursor %q; want 5 and c2", len(rows), b.cursor(t, "USA_1"))
		}
		var note struct {
			Note  string `json:"note"`
			Score string `json:"score"`
		}
		if err := json.Unmarshal([]byte(rows["surrogate"].Raw.String), &note); err != nil || note.Note != "a\uFFFDb" {
			t.Errorf("surrogate lead raw = %q (%v), want the note a\uFFFDb", rows["surrogate"].Raw.String, err)
		}
		if err := json.Unmarshal([]byte(rows["huge"].Raw.String), &note); err != nil || note.Score != "1e999999" {
			t.Errorf("huge lead raw = %q (%v), want the score kept as the text 1e999999", rows["huge"].Raw.String, err)
		}
	})
}

// Two full passes of one account overlap (e.g. two processes reaching one SQLite file
// through aliased paths): the first to finish must not drop the other's seen leads, or the
// other deletes live leads.
func TestOverlappingFullPassesDeleteNothingLive(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_1"
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: testLeads(acct, "a", "b", "c"), Next: "c1"})
		b.clock.Advance(time.Hour)
		first, second := b.run(t), b.run(t)
		b.write(t, PageWrite{Run: second, Account: acct, Leads: testLeads(acct, "a"), Next: "f1", FullPass: true})
		b.write(t, PageWrite{Run: first, Account: acct, Leads: testLeads(acct, "a", "b", "c"), Next: "f1", FullPass: true})
		if n, err := b.s.FinishFullPass(b.ctx, first, sources.LocaliQ, acct, testStream); err != nil || n != 0 {
			t.Fatalf("first FinishFullPass = %d, %v; want 0 deleted", n, err)
		}
		b.write(t, PageWrite{Run: second, Account: acct, Leads: testLeads(acct, "b", "c"), Next: "f2", FullPass: true})
		if n, err := b.s.FinishFullPass(b.ctx, second, sources.LocaliQ, acct, testStream); err != nil || n != 0 {
			t.Errorf("second FinishFullPass = %d, %v; want 0 deleted: it saw every lead", n, err)
		}
		if n := b.count(t, `SELECT count(*) FROM leads_current WHERE account_id = ?`, acct); n != 3 {
			t.Errorf("%d live leads, want 3", n)
		}
	})
}

// A lead written, or updated at the vendor, after a full pass began may have moved to a
// page the pass had already read: that pass must not delete it.
func TestFullPassSparesLeadsChangedDuringThePass(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_1"
		old := testLeads(acct, "kept", "gone", "synced", "edited")
		for i := range old {
			old[i].UpdatedAt = b.clock.Now().Add(-24 * time.Hour)
		}
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: old, Next: "c1"})
		b.clock.Advance(time.Hour)
		pass := b.run(t)
		b.write(t, PageWrite{Run: pass, Account: acct, Leads: old[:1], Next: "f1", FullPass: true})

		// Meanwhile an incremental run stores a change of "synced", and the vendor's clock
		// (a little behind ours) stamps an edit of "edited", which a webhook brings.
		b.clock.Advance(time.Minute)
		synced := old[2]
		synced.Status = "qualified"
		edited := old[3]
		edited.UpdatedAt = b.clock.Now().Add(-90 * time.Second)
		edited.Status = "won"
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: []sources.Lead{synced}, Next: "c2"})
		b.clock.Advance(-2 * time.Minute) // the webhook's writer stamps its own clock
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: []sources.Lead{edited}, Next: "c2"})
		b.clock.Advance(2 * time.Minute)

		if missing, err := b.s.FullPassMissing(b.ctx, pass, sources.LocaliQ, acct, testStream); err != nil || !slices.Equal(missing, []string{"gone"}) {
			t.Fatalf("FullPassMissing = %q, %v; want only gone", missing, err)
		}
		n, err := b.s.FinishFullPass(b.ctx, pass, sources.LocaliQ, acct, testStream)
		if err != nil || n != 1 {
			t.Fatalf("FinishFullPass = %d, %v; want only gone deleted", n, err)
		}
		rows := b.leads(t, acct)
		for id, wantDeleted := range map[string]bool{"kept": false, "gone": true, "synced": false, "edited": false} {
			if rows[id].DeletedAt.Valid() != wantDeleted {
				t.Errorf("lead %s deleted = %v, want %v", id, rows[id].DeletedAt.Valid(), wantDeleted)
			}
		}
	})
}

// The writer lock is the database file's, however the path reaches it.
func TestSQLiteWriterLockFollowsTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "leads.db")
	if err := os.Mkdir(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(dir, "alias.db")
	if err := os.Symlink(real, alias); err != nil {
		t.Fatal(err)
	}
	viaAlias, err := Open(t.Context(), alias, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer viaAlias.Close()
	viaReal, err := Open(t.Context(), real, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer viaReal.Close()
	if err := viaAlias.(WriterLocker).LockWriter(); err != nil {
		t.Fatal(err)
	}
	if err := viaReal.(WriterLocker).LockWriter(); !errors.Is(err, ErrSingleWriter) {
		t.Fatalf("a second writer through the real path: %v, want ErrSingleWriter", err)
	}
}

// The warehouse holds PII: a new file and its WAL files are the owner's only.
func TestSQLiteFilesArePrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leads.db")
	b := setup(t, func(testing.TB) string { return path })
	b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Leads: testLeads("USA_1", "a"), Next: "c1"})
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), m)
		}
	}
}

// storedRejection is a rejected_records row.
type storedRejection struct {
	RecordID sql.NullString `db:"record_id"`
	Reason   string         `db:"reason"`
	Raw      sql.NullString `db:"raw"`
	Run      int64          `db:"sync_run_id"`
	Stream   sql.NullString `db:"stream"`
}

func (b *bundle) rejections(t *testing.T, account string) []storedRejection {
	t.Helper()
	var rows []storedRejection
	if err := b.c.r.SelectContext(b.ctx, &rows, b.c.q(`SELECT record_id, reason, raw, sync_run_id, stream
FROM rejected_records WHERE account_id = ? ORDER BY id`), account); err != nil {
		t.Fatal(err)
	}
	return rows
}

// A record that cannot be stored is quarantined with its page, counted, and protects its
// stored copy from the full pass; the page and its cursor commit.
func TestRejectedRecordsAreQuarantined(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_1"
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: testLeads(acct, "ok", "broken", "nameless"), Next: "c1"})
		b.clock.Advance(time.Hour)
		run := b.run(t)
		leads := testLeads(acct, "ok", "broken")
		leads[1].Raw = json.RawMessage(`{"id":"broken","email":"ada@example.com",`)
		res := b.write(t, PageWrite{Run: run, Account: acct, Leads: leads, Next: "c2", FullPass: true,
			Rejected: []sources.Rejected{
				{Reason: "no id", Raw: []byte("{\"id\":null,\"n\":\"a\x00\xffb\"}")},
				{ID: "nameless", Reason: "not an object", Raw: []byte(`[1]`)},
			}})
		if res != (WriteResult{Unchanged: 1, Rejected: 3}) {
			t.Errorf("WritePage = %+v, want 1 unchanged, 3 rejected", res)
		}
		if got := b.cursor(t, acct); got != "c2" {
			t.Errorf("cursor = %q, want c2", got)
		}
		got := b.rejections(t, acct)
		if len(got) != 3 {
			t.Fatalf("rejected_records = %+v, want 3 rows", got)
		}
		broken := got[0]
		if broken.RecordID.String != "broken" || !strings.HasPrefix(broken.Reason, "raw: unexpected end of JSON at byte ") ||
			broken.Raw.String != string(leads[1].Raw) || broken.Run != int64(run) || broken.Stream.String != testStream {
			t.Errorf("the lead with broken raw JSON: %+v", broken)
		}
		if strings.Contains(broken.Reason, "ada@") {
			t.Errorf("the reason quotes the record: %q", broken.Reason)
		}
		if noID := got[1]; noID.RecordID.Valid || noID.Reason != "no id" || noID.Raw.String != "{\"id\":null,\"n\":\"a\uFFFD\uFFFDb\"}" {
			t.Errorf("the record without an id: %+v", noID)
		}
		if n, err := b.s.FinishFullPass(b.ctx, run, sources.LocaliQ, acct, testStream); err != nil || n != 0 {
			t.Errorf("FinishFullPass = %d, %v; want nothing deleted: the vendor still has every lead", n, err)
		}
		if err := b.s.FinishRun(b.ctx, run, RunOK, RunStats{RecordsRejected: int64(res.Rejected)}, nil); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, `SELECT records_rejected FROM sync_runs WHERE id = ?`, run); n != 3 {
			t.Errorf("sync_runs.records_rejected = %d, want 3", n)
		}
	})
}

// When the database still refuses a value (here: a time PostgreSQL cannot hold; a string over
// SQLite's length limit), the page is written again lead by lead and only that lead is
// quarantined, its reason naming the field and the code, not the value.
func TestRefusedLeadIsQuarantinedAlone(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_1"
		leads := testLeads(acct, "a", "refused", "c")
		wantReason := "the database refused created_at (SQLSTATE 22008)"
		if b.c.dialect == DialectSQLite {
			shrinkSQLiteLength(t, b, 4000)
			leads[1].Raw = json.RawMessage(`{"note":"` + strings.Repeat("x", 5000) + `"}`)
			wantReason = "the database refused raw (SQLite error 18: string or blob too big); its raw was refused too (SQLite error 18: string or blob too big)"
		} else {
			leads[1].CreatedAt = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		run := b.run(t)
		res := b.write(t, PageWrite{Run: run, Account: acct, Leads: leads, Next: "c1", FullPass: true})
		if res != (WriteResult{Inserted: 2, Rejected: 1}) {
			t.Errorf("WritePage = %+v, want 2 inserted and 1 rejected", res)
		}
		if got := b.cursor(t, acct); got != "c1" {
			t.Errorf("cursor = %q, want c1", got)
		}
		rows := b.leads(t, acct)
		if _, ok := rows["refused"]; ok || len(rows) != 2 {
			t.Errorf("stored leads %v, want a and c", slices.Collect(maps.Keys(rows)))
		}
		got := b.rejections(t, acct)
		wantRaw := string(leads[1].Raw)
		if b.c.dialect == DialectSQLite {
			wantRaw = "" // too long for rejected_records as well
		}
		if len(got) != 1 || got[0].RecordID.String != "refused" || got[0].Reason != wantReason || got[0].Raw.String != wantRaw {
			t.Errorf("rejected_records = %+v, want the refused lead with the reason %q", got, wantReason)
		}
		if n := b.count(t, `SELECT count(*) FROM full_pass_seen WHERE run_id = ?`, run); n != 3 {
			t.Errorf("%d leads seen by the pass, want 3 (the refused one too)", n)
		}
		b.write(t, PageWrite{Run: run, Account: acct, Leads: testLeads(acct, "later"), Next: "c2"})
		if n := len(b.leads(t, acct)); n != 3 {
			t.Errorf("%d leads after the next page, want 3", n)
		}
	})
}

// shrinkSQLiteLength lowers SQLite's string length limit on the writer connection.
func shrinkSQLiteLength(t *testing.T, b *bundle, n int) {
	t.Helper()
	conn, err := b.c.w.Conn(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(c any) error {
		c.(*sqlite3.SQLiteConn).SetLimit(sqlite3.SQLITE_LIMIT_LENGTH, n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// runStatus is a sync_runs row's status.
func (b *bundle) runStatus(t *testing.T, run RunID) string {
	t.Helper()
	var st string
	if err := b.c.r.GetContext(b.ctx, &st, b.c.q(`SELECT status FROM sync_runs WHERE id = ?`), run); err != nil {
		t.Fatal(err)
	}
	return st
}

// A run whose process died (or could not close it) is closed as abandoned at the next
// start, on SQLite once the writer lock is held.
func TestSQLiteClosesAbandonedRuns(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leads.db")
	b := setup(t, func(testing.TB) string { return path })
	crashed := b.run(t)
	b.write(t, PageWrite{Run: crashed, Account: "USA_1", Leads: testLeads("USA_1", "a"), Next: "f1", FullPass: true})
	done := b.run(t)
	if err := b.s.FinishRun(b.ctx, done, RunOK, RunStats{}, nil); err != nil {
		t.Fatal(err)
	}

	other, err := Open(b.ctx, path, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.(WriterLocker).LockWriter(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.s.CloseAbandonedRuns(b.ctx); !errors.Is(err, ErrSingleWriter) || n != 0 {
		t.Fatalf("CloseAbandonedRuns while another process syncs = %d, %v; want ErrSingleWriter", n, err)
	}
	if st := b.runStatus(t, crashed); st != RunRunning {
		t.Fatalf("run closed to %q behind the writer's back", st)
	}
	other.Close()

	if n, err := b.s.CloseAbandonedRuns(b.ctx); err != nil || n != 1 {
		t.Fatalf("CloseAbandonedRuns = %d, %v; want 1", n, err)
	}
	if st := b.runStatus(t, crashed); st != RunAbandoned {
		t.Errorf("crashed run is %q, want abandoned", st)
	}
	if st := b.runStatus(t, done); st != RunOK {
		t.Errorf("finished run is %q, want ok", st)
	}
	if n := b.count(t, `SELECT count(*) FROM full_pass_seen`); n != 0 {
		t.Errorf("%d seen rows of the abandoned pass left", n)
	}
}

// On PostgreSQL, a run is abandoned only when no live process owns it: not while its
// worker lives, whichever worker asks.
func TestPostgresClosesOnlyDeadWorkersRuns(t *testing.T) {
	t.Parallel()
	dsn, _ := pgtest.Schema(t)
	open := func(worker string) Sink {
		t.Helper()
		s, err := Open(t.Context(), dsn, Options{Worker: worker, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	begin := func(s Sink) RunID {
		t.Helper()
		run, err := s.BeginRun(t.Context(), TriggerCron, "", ModeIncremental)
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	live := open("live-1")
	liveRun := begin(live)
	dead := open("dead-1")
	deadRun := begin(dead)
	dead.Close() // the process dies: PostgreSQL frees its liveness lock
	single := open("")
	singleRun := begin(single) // a single writer's run has no owner to ask
	restarted := open("box-2")
	ownOldRun := begin(restarted)
	restarted.Close()

	me := open("box-2") // box-2 again, after a restart
	if n, err := me.CloseAbandonedRuns(t.Context()); err != nil || n != 3 {
		t.Fatalf("CloseAbandonedRuns = %d, %v; want 3", n, err)
	}
	b := &bundle{c: me.(*Postgres).core, ctx: t.Context()}
	for run, want := range map[RunID]string{liveRun: RunRunning, deadRun: RunAbandoned, singleRun: RunAbandoned, ownOldRun: RunAbandoned} {
		if got := b.runStatus(t, run); got != want {
			t.Errorf("run %d is %q, want %q", run, got, want)
		}
	}
	// The live worker's run closes as usual.
	if err := live.FinishRun(t.Context(), liveRun, RunOK, RunStats{}, nil); err != nil {
		t.Fatal(err)
	}
}
