package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/sources"
)

// The conformance suite: every test runs on SQLite (a file in t.TempDir()) and on
// PostgreSQL (a fresh schema from pgtest).

type dialectCase struct {
	name   string
	newURL func(t testing.TB) string
}

var dialectCases = []dialectCase{
	{DialectSQLite, func(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "warehouse.db") }},
	{DialectPostgres, func(t testing.TB) string { dsn, _ := pgtest.Schema(t); return dsn }},
}

// forEachDialect runs test once per dialect, in parallel.
func forEachDialect(t *testing.T, test func(t *testing.T, newURL func(testing.TB) string)) {
	t.Helper()
	for _, dc := range dialectCases {
		t.Run(dc.name, func(t *testing.T) {
			t.Parallel()
			test(t, dc.newURL)
		})
	}
}

// manualClock is the sink's clock in tests: time moves only when a test says so.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Stored is Now as the warehouse stores it.
func (c *manualClock) Stored() time.Time { return storedTime(c.Now()) }

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type bundle struct {
	s     warehouse
	c     *core
	url   string
	clock *manualClock
	ctx   context.Context
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func setup(t *testing.T, newURL func(testing.TB) string) *bundle {
	t.Helper()
	b := &bundle{
		url:   newURL(t),
		clock: &manualClock{t: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)},
		ctx:   t.Context(),
	}
	w, err := open(b.ctx, b.url, Options{Now: b.clock.Now, Logger: quiet}, modeMigrate)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	b.s, b.c = w, w.base()
	return b
}

var t0 = time.Date(2026, 2, 27, 9, 30, 0, 0, time.UTC)

func testLead(account, id string) sources.Lead {
	return sources.Lead{
		Source: sources.LocaliQ, AccountID: account, ID: id, Kind: sources.KindCall, Status: "new",
		FirstName: "Ada", LastName: "Lovelace", Email: id + "@example.com", Phone: "+15550100",
		Company: "Acme", Channel: "paid_search", Campaign: "spring", Tags: []string{"vip", "new"},
		CreatedAt: t0, UpdatedAt: t0.Add(time.Hour), Raw: json.RawMessage(`{"id":"` + id + `"}`),
	}
}

func testLeads(account string, ids ...string) []sources.Lead {
	out := make([]sources.Lead, len(ids))
	for i, id := range ids {
		out[i] = testLead(account, id)
	}
	return out
}

func (b *bundle) run(t *testing.T) RunID {
	t.Helper()
	run, err := b.s.BeginRun(b.ctx, TriggerOnce, "", ModeIncremental)
	if err != nil {
		t.Fatalf("BeginRun: %v", err)
	}
	return run
}

// testStream is the stream of the tests' pages unless they say otherwise.
const testStream = "interactions"

func (b *bundle) write(t *testing.T, w PageWrite) WriteResult {
	t.Helper()
	if w.Source == "" {
		w.Source = sources.LocaliQ
	}
	if w.Stream == "" {
		w.Stream = testStream
	}
	res, err := b.s.WritePage(b.ctx, w)
	if err != nil {
		t.Fatalf("WritePage: %v", err)
	}
	return res
}

func (b *bundle) cursor(t *testing.T, account string) sources.Cursor {
	t.Helper()
	return b.streamCursor(t, account, testStream)
}

func (b *bundle) streamCursor(t *testing.T, account, stream string) sources.Cursor {
	t.Helper()
	cur, err := b.s.Cursor(b.ctx, sources.LocaliQ, account, stream)
	if err != nil {
		t.Fatalf("Cursor: %v", err)
	}
	return cur
}

// storedLead is a leads row as analysts see it.
type storedLead struct {
	ID           string         `db:"lead_id"`
	Kind         string         `db:"kind"`
	Status       sql.NullString `db:"status"`
	Email        sql.NullString `db:"email"`
	Channel      sql.NullString `db:"channel"`
	Tags         string         `db:"tags"`
	Raw          sql.NullString `db:"raw"`
	CreatedAt    nullTime       `db:"created_at"`
	HIPAA        bool           `db:"hipaa"`
	FirstSeenAt  nullTime       `db:"first_seen_at"`
	LastSyncedAt nullTime       `db:"last_synced_at"`
	SyncRunID    sql.NullInt64  `db:"sync_run_id"`
	Revision     int            `db:"revision"`
	DeletedAt    nullTime       `db:"deleted_at"`
}

func (b *bundle) leads(t *testing.T, account string) map[string]storedLead {
	t.Helper()
	var rows []storedLead
	err := b.c.r.SelectContext(b.ctx, &rows, b.c.q(`SELECT lead_id, kind, status, email, channel,
    CAST(tags AS TEXT) AS tags, CAST(raw AS TEXT) AS raw, created_at, hipaa,
    first_seen_at, last_synced_at, sync_run_id, revision, deleted_at
FROM leads WHERE source = ? AND account_id = ?`), sources.LocaliQ, account)
	if err != nil {
		t.Fatalf("read leads: %v", err)
	}
	out := make(map[string]storedLead, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

func (b *bundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := b.c.r.GetContext(b.ctx, &n, b.c.q(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestWritePageIdempotent(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run1 := b.run(t)
		page := PageWrite{Run: run1, Account: "USA_1", Leads: testLeads("USA_1", "a", "b", "c"), Next: "c1"}
		if got := b.write(t, page); got != (WriteResult{Inserted: 3}) {
			t.Fatalf("first write = %+v, want 3 inserted", got)
		}
		before := b.leads(t, "USA_1")

		// The same page again, in a later run: nothing is rewritten.
		b.clock.Advance(time.Hour)
		page.Run = b.run(t)
		if got := b.write(t, page); got != (WriteResult{Unchanged: 3}) {
			t.Fatalf("same page again = %+v, want 3 unchanged", got)
		}
		after := b.leads(t, "USA_1")
		if len(after) != 3 {
			t.Fatalf("%d rows after a rewrite, want 3", len(after))
		}
		for id, r := range after {
			if r.LastSyncedAt != before[id].LastSyncedAt || r.SyncRunID != before[id].SyncRunID || r.Revision != 1 {
				t.Errorf("unchanged lead %s was touched: %+v, before %+v", id, r, before[id])
			}
		}

		// One lead changes (and a page repeats a lead: the last copy wins).
		b.clock.Advance(time.Hour)
		run3 := b.run(t)
		changed := testLeads("USA_1", "a", "b", "c", "b")
		changed[3].Email = "new@example.com"
		if got := b.write(t, PageWrite{Run: run3, Account: "USA_1", Leads: changed, Next: "c2"}); got != (WriteResult{Updated: 1, Unchanged: 2}) {
			t.Fatalf("write with one change = %+v, want 1 updated, 2 unchanged", got)
		}
		rows := b.leads(t, "USA_1")
		bRow := rows["b"]
		if bRow.Email.String != "new@example.com" || bRow.SyncRunID.Int64 != int64(run3) || bRow.Revision != 2 ||
			!bRow.LastSyncedAt.Equal(b.clock.Stored()) || bRow.FirstSeenAt != before["b"].FirstSeenAt {
			t.Errorf("updated lead = %+v", bRow)
		}
		if rows["a"].SyncRunID.Int64 != int64(run1) {
			t.Errorf("unchanged lead a now has run %d, want %d", rows["a"].SyncRunID.Int64, run1)
		}
		if got := b.cursor(t, "USA_1"); got != "c2" {
			t.Errorf("cursor = %q, want c2", got)
		}
	})
}

func TestWritePageStoresFields(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		full := testLead("USA_1", "full")
		full.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("EST", -5*3600))
		full.HIPAA = true
		sparse := sources.Lead{ID: "sparse", Kind: sources.KindForm} // source/account from the page
		b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Leads: []sources.Lead{full, sparse}})

		rows := b.leads(t, "USA_1")
		f := rows["full"]
		if want := storedTime(full.CreatedAt); !f.CreatedAt.Equal(want) || f.CreatedAt.Location() != time.UTC {
			t.Errorf("created_at = %v, want %v in UTC", f.CreatedAt.Time, want)
		}
		var tags []string
		if err := json.Unmarshal([]byte(f.Tags), &tags); err != nil || !slices.Equal(tags, full.Tags) {
			t.Errorf("tags = %s (%v), want %v", f.Tags, err, full.Tags)
		}
		var raw map[string]string
		if err := json.Unmarshal([]byte(f.Raw.String), &raw); err != nil || raw["id"] != "full" {
			t.Errorf("raw = %q (%v)", f.Raw.String, err)
		}
		if !f.HIPAA || f.Email.String != "full@example.com" {
			t.Errorf("full lead = %+v", f)
		}
		s := rows["sparse"]
		if s.Status.Valid || s.Email.Valid || s.Raw.Valid || s.CreatedAt.Valid() || s.Tags != "[]" {
			t.Errorf("sparse lead should store NULLs and []: %+v", s)
		}
	})
}

// leadTimes are a lead's read_at, archived_at and call_seconds as a view shows them.
type leadTimes struct {
	ID         string   `db:"lead_id"`
	ReadAt     nullTime `db:"read_at"`
	ArchivedAt nullTime `db:"archived_at"`
	Seconds    int64    `db:"call_seconds"`
	Revision   int      `db:"revision"`
}

func (b *bundle) leadTimes(t *testing.T, view string) map[string]leadTimes {
	t.Helper()
	var rows []leadTimes
	if err := b.c.r.SelectContext(b.ctx, &rows, `SELECT lead_id, read_at, archived_at, call_seconds, revision FROM `+view); err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	out := make(map[string]leadTimes, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// A lead's read_at, archived_at and call_seconds are stored as given (times in UTC, NULL and
// 0 when unknown), by the page's statement and by the one-row statement of the lead-by-lead
// fallback, show in the lead views, and a change to any of them rewrites the row.
func TestLeadTimesRoundTrip(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		timed, plain := testLead("USA_1", "timed"), testLead("USA_1", "plain")
		timed.ReadAt = time.Date(2026, 2, 27, 7, 45, 1, 123456789, time.FixedZone("PST", -8*3600))
		timed.ArchivedAt = t0.Add(72 * time.Hour)
		timed.DurationSeconds = 4441
		page := PageWrite{Run: b.run(t), Account: "USA_1", Leads: []sources.Lead{timed, plain}, Next: "c1"}
		if got := b.write(t, page); got != (WriteResult{Inserted: 2}) {
			t.Fatalf("first write = %+v, want 2 inserted", got)
		}
		// The one-row statement, as the fallback writes a lead.
		single := timed
		single.ID, single.DurationSeconds = "single", 55
		if err := b.c.tx(b.ctx, func(tx *sqlx.Tx) error {
			var rev int64
			return b.c.upsertOne(b.ctx, tx, PageWrite{Run: page.Run, Source: sources.LocaliQ, Account: "USA_1", Stream: testStream},
				&single, b.clock.Now(), &rev)
		}); err != nil {
			t.Fatalf("one-row upsert: %v", err)
		}
		want := map[string]leadTimes{
			"timed":  {ID: "timed", ReadAt: nullTime{storedTime(timed.ReadAt)}, ArchivedAt: nullTime{storedTime(timed.ArchivedAt)}, Seconds: 4441, Revision: 1},
			"plain":  {ID: "plain", Revision: 1},
			"single": {ID: "single", ReadAt: nullTime{storedTime(timed.ReadAt)}, ArchivedAt: nullTime{storedTime(timed.ArchivedAt)}, Seconds: 55, Revision: 1},
		}
		check := func(t *testing.T, want map[string]leadTimes) {
			t.Helper()
			for _, view := range []string{"leads", "leads_current", "leads_shareable", "leads_pii", "leads_deidentified"} {
				got := b.leadTimes(t, view)
				if len(got) != len(want) {
					t.Errorf("%s: %d leads, want %d", view, len(got), len(want))
				}
				for id, w := range want {
					g := got[id]
					if g.ID != w.ID || !g.ReadAt.Equal(w.ReadAt.Time) || !g.ArchivedAt.Equal(w.ArchivedAt.Time) || g.Seconds != w.Seconds || g.Revision != w.Revision {
						t.Errorf("%s %s: read %v, archived %v, %d s, revision %d; want %v, %v, %d s, revision %d", view, id,
							g.ReadAt, g.ArchivedAt, g.Seconds, g.Revision, w.ReadAt, w.ArchivedAt, w.Seconds, w.Revision)
					}
					if g.ReadAt.Valid() && g.ReadAt.Location() != time.UTC {
						t.Errorf("%s %s: read_at %v is not UTC", view, id, g.ReadAt)
					}
				}
			}
		}
		check(t, want)

		// The same page again rewrites nothing.
		b.clock.Advance(time.Hour)
		page.Run = b.run(t)
		if got := b.write(t, page); got != (WriteResult{Unchanged: 2}) {
			t.Fatalf("same page again = %+v, want 2 unchanged", got)
		}

		// A change to any of the three rewrites the lead; archived_at cleared is NULL again.
		for i, change := range []func(l *sources.Lead){
			func(l *sources.Lead) { l.ReadAt = l.ReadAt.Add(time.Second) },
			func(l *sources.Lead) { l.ArchivedAt = time.Time{} },
			func(l *sources.Lead) { l.DurationSeconds = 4442 },
			func(l *sources.Lead) { l.ReadAt = time.Time{} },
		} {
			b.clock.Advance(time.Hour)
			change(&page.Leads[0])
			page.Run = b.run(t)
			if got := b.write(t, page); got != (WriteResult{Updated: 1, Unchanged: 1}) {
				t.Fatalf("change %d = %+v, want timed updated, plain unchanged", i, got)
			}
		}
		want["timed"] = leadTimes{ID: "timed", Seconds: 4442, Revision: 5}
		check(t, want)
	})
}

// Valid says whether a scanned time was non-NULL.
func (n nullTime) Valid() bool { return !n.IsZero() }

func TestWritePageRejectsForeignLead(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		_, err := b.s.WritePage(b.ctx, PageWrite{Run: b.run(t), Source: sources.LocaliQ, Stream: testStream, Account: "USA_1",
			Leads: testLeads("USA_2", "x"), Next: "c1"})
		if err == nil {
			t.Fatal("a lead of another account was accepted")
		}
		if got := b.cursor(t, "USA_1"); got != "" {
			t.Errorf("cursor moved to %q", got)
		}
	})
}

func TestWritePageEmptyAdvancesCursor(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		if got := b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Next: "end"}); got != (WriteResult{}) {
			t.Errorf("empty page wrote %+v", got)
		}
		if got := b.cursor(t, "USA_1"); got != "end" {
			t.Errorf("cursor = %q, want end", got)
		}
		if st := b.status(t, "USA_1"); st.Leads != 0 || len(st.Streams) != 1 || st.Streams[0].Cursor != "end" {
			t.Errorf("status after an empty page = %+v", st)
		}
	})
}

// TestWritePageAtomic proves invariant 1: a page that fails half-way leaves neither rows nor
// a cursor behind.
func TestWritePageAtomic(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Leads: testLeads("USA_1", "old"), Next: "c1"})
		run := b.run(t)
		unchangedState := func(t *testing.T) {
			t.Helper()
			if got := b.cursor(t, "USA_1"); got != "c1" {
				t.Errorf("cursor = %q after a failed page, want c1", got)
			}
			if n := b.count(t, `SELECT count(*) FROM leads`); n != 1 {
				t.Errorf("%d leads after a failed page, want 1", n)
			}
		}
		many := func() []sources.Lead {
			ids := make([]string, 2*leadsTable.sqliteChunk+50)
			for i := range ids {
				ids[i] = fmt.Sprintf("l%04d", i)
			}
			return testLeads("USA_1", ids...)
		}

		t.Run("constraint violation in a later batch", func(t *testing.T) {
			leads := many()
			leads[len(leads)-10].ID = "" // violates CHECK (lead_id <> '')
			if _, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: leads, Next: "c2"}); err == nil {
				t.Fatal("a lead without an id was accepted")
			}
			unchangedState(t)
		})
		t.Run("context cancelled mid-transaction", func(t *testing.T) {
			ctx, cancel := context.WithCancel(b.ctx)
			defer cancel()
			b.c.afterChunk = func(chunk int) error {
				cancel() // the process is told to stop while the page is in flight
				return nil
			}
			defer func() { b.c.afterChunk = nil }()
			if _, err := b.s.WritePage(ctx, PageWrite{Run: run, Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: many(), Next: "c2"}); err == nil {
				t.Fatal("a page whose context was cancelled mid-transaction committed")
			}
			unchangedState(t)
		})
		t.Run("error after the rows are written", func(t *testing.T) {
			boom := errors.New("injected")
			b.c.afterChunk = func(chunk int) error { return boom }
			defer func() { b.c.afterChunk = nil }()
			_, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: many(), Next: "c2"})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want the injected error", err)
			}
			unchangedState(t)
		})
	})
}

func TestFullPassSoftDelete(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_1"
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: testLeads(acct, "a", "b", "c"), Next: "c1"})

		// A full pass that dies after one page (no FinishFullPass, no FinishRun): nothing is
		// deleted, and its seen ids ("b") must not protect b in the next pass.
		crashed := b.run(t)
		b.write(t, PageWrite{Run: crashed, Account: acct, Leads: testLeads(acct, "b"), Next: "f1", FullPass: true})
		for id, r := range b.leads(t, acct) {
			if r.DeletedAt.Valid() {
				t.Fatalf("lead %s deleted by a partial pass", id)
			}
		}

		// A pass that saw nothing deletes nothing.
		empty := b.run(t)
		if n, err := b.s.FinishFullPass(b.ctx, empty, sources.LocaliQ, acct, testStream); err != nil || n != 0 {
			t.Fatalf("FinishFullPass of an empty pass = %d, %v; want 0, nil", n, err)
		}

		// A complete pass in two pages that no longer sees b.
		b.clock.Advance(time.Hour)
		run := b.run(t)
		b.write(t, PageWrite{Run: run, Account: acct, Leads: testLeads(acct, "a"), Next: "f1", FullPass: true})
		b.write(t, PageWrite{Run: run, Account: acct, Leads: testLeads(acct, "c"), Next: "f2", FullPass: true})
		n, err := b.s.FinishFullPass(b.ctx, run, sources.LocaliQ, acct, testStream)
		if err != nil || n != 1 {
			t.Fatalf("FinishFullPass = %d, %v; want 1 deleted", n, err)
		}
		rows := b.leads(t, acct)
		if !rows["b"].DeletedAt.Equal(b.clock.Stored()) || rows["a"].DeletedAt.Valid() || rows["c"].DeletedAt.Valid() {
			t.Errorf("after the pass: a=%v b=%v c=%v; want only b deleted", rows["a"].DeletedAt, rows["b"].DeletedAt, rows["c"].DeletedAt)
		}
		if n := b.count(t, `SELECT count(*) FROM leads_current WHERE account_id = ?`, acct); n != 2 {
			t.Errorf("leads_current has %d leads, want 2", n)
		}
		if n := b.count(t, `SELECT count(*) FROM full_pass_seen WHERE run_id = ?`, run); n != 0 {
			t.Errorf("%d seen rows left after the pass, want 0", n)
		}

		// A finished run cannot delete.
		if err := b.s.FinishRun(b.ctx, run, RunOK, RunStats{}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := b.s.FinishFullPass(b.ctx, run, sources.LocaliQ, acct, testStream); err == nil {
			t.Error("FinishFullPass of a finished run succeeded")
		}

		// b comes back: it is undeleted and counted as updated.
		if got := b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: testLeads(acct, "b"), Next: "c2"}); got != (WriteResult{Updated: 1}) {
			t.Errorf("re-seen deleted lead = %+v, want 1 updated", got)
		}
		if rows := b.leads(t, acct); rows["b"].DeletedAt.Valid() {
			t.Error("re-seen lead is still deleted")
		}
	})
}

func TestRestrictedFlow(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		const acct = "USA_9"
		if err := b.s.UpsertAccount(b.ctx, sources.Account{Source: sources.LocaliQ, ID: acct, Name: "Clinic", HIPAAProtected: true, Active: true}); err != nil {
			t.Fatal(err)
		}
		b.write(t, PageWrite{Run: b.run(t), Account: acct, Leads: testLeads(acct, "a"), Next: "c1"})
		run := b.run(t)
		restricted := &sources.RestrictedError{Vendor: sources.LocaliQ, AccountID: acct, HIPAA: true,
			Message: "You are not permitted to perform this action."}
		if err := b.s.MarkRestricted(b.ctx, run, restricted); err != nil {
			t.Fatal(err)
		}
		since := b.clock.Stored()
		b.clock.Advance(time.Hour)
		if err := b.s.AccountSynced(b.ctx, run, sources.LocaliQ, acct, restricted); err != nil { // a second 403
			t.Fatal(err)
		}
		st := b.status(t, acct)
		if st.Access != sources.AccessHIPAARestricted || st.AccessReason != restricted.Message || st.LastError != "" || st.Streams[0].Cursor != "c1" || st.Name != "Clinic" {
			t.Errorf("restricted account status = %+v", st)
		}
		var fields []struct {
			Field string   `db:"field"`
			Since nullTime `db:"since"`
		}
		if err := b.c.r.SelectContext(b.ctx, &fields, b.c.q(`SELECT field, since FROM restricted_fields WHERE account_id = ? ORDER BY field`), acct); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range fields {
			names = append(names, f.Field)
			if !f.Since.Equal(since) {
				t.Errorf("field %s since %v, want the first 403 at %v", f.Field, f.Since.Time, since)
			}
		}
		if want := slices.Sorted(slices.Values(sources.PIIFields)); !slices.Equal(names, want) {
			t.Errorf("restricted fields = %v, want %v", names, want)
		}

		// A failed sync records the error only.
		if err := b.s.AccountSynced(b.ctx, run, sources.LocaliQ, acct, errors.New("localiq: list leads: 502")); err != nil {
			t.Fatal(err)
		}
		if st := b.status(t, acct); st.Access != sources.AccessHIPAARestricted || st.LastError != "localiq: list leads: 502" || !st.LastSyncedAt.IsZero() {
			t.Errorf("after a failure: %+v", st)
		}

		// Access granted: the next successful sync clears it all.
		b.clock.Advance(time.Hour)
		if err := b.s.AccountSynced(b.ctx, run, sources.LocaliQ, acct, nil); err != nil {
			t.Fatal(err)
		}
		if st := b.status(t, acct); st.Access != sources.AccessOK || st.AccessReason != "" || st.LastError != "" || !st.LastSyncedAt.Equal(b.clock.Stored()) || st.Leads != 1 {
			t.Errorf("after a successful sync: %+v", st)
		}
		if n := b.count(t, `SELECT count(*) FROM restricted_fields`); n != 0 {
			t.Errorf("%d restricted_fields rows after access was granted", n)
		}

		// A 403 on an account not known to be HIPAA-protected is "forbidden", with its fields.
		other := &sources.RestrictedError{Vendor: sources.LocaliQ, AccountID: "USA_10", Message: "no access", Fields: []string{"email"}}
		if err := b.s.MarkRestricted(b.ctx, run, other); err != nil {
			t.Fatal(err)
		}
		if st := b.status(t, "USA_10"); st.Access != sources.AccessForbidden {
			t.Errorf("forbidden account access = %q", st.Access)
		}
		if n := b.count(t, `SELECT count(*) FROM restricted_fields WHERE account_id = 'USA_10' AND field = 'email'`); n != 1 {
			t.Errorf("forbidden account has %d email tags, want 1", n)
		}
	})
}

func (b *bundle) status(t *testing.T, account string) AccountStatus {
	t.Helper()
	all, err := b.s.Status(b.ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, st := range all {
		if st.AccountID == account {
			return st
		}
	}
	t.Fatalf("Status has no account %s: %+v", account, all)
	return AccountStatus{}
}

// TestViews: leads_pii keeps the PII of leads that are not HIPAA-protected (what
// leads_shareable withholds is TestLeadViewsWithhold's).
func TestViews(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		leads := testLeads("USA_1", "open", "secret", "gone")
		leads[1].HIPAA = true
		leads[2].CreatedAt = t0.AddDate(0, 0, 1)
		b.write(t, PageWrite{Run: b.run(t), Account: "USA_1", Leads: leads, Next: "c1"})
		b.clock.Advance(time.Hour)
		run := b.run(t)
		b.write(t, PageWrite{Run: run, Account: "USA_1", Leads: leads[:2], Next: "f1", FullPass: true})
		if _, err := b.s.FinishFullPass(b.ctx, run, sources.LocaliQ, "USA_1", testStream); err != nil {
			t.Fatal(err)
		}

		var pii []struct {
			ID    string         `db:"lead_id"`
			Email sql.NullString `db:"email"`
			First sql.NullString `db:"first_name"`
			Raw   sql.NullString `db:"raw"`
			Chan  sql.NullString `db:"channel"`
		}
		if err := b.c.r.SelectContext(b.ctx, &pii, `SELECT lead_id, email, first_name, CAST(raw AS TEXT) AS raw, channel
FROM leads_pii ORDER BY lead_id`); err != nil {
			t.Fatal(err)
		}
		if len(pii) != 2 || pii[0].ID != "open" || pii[1].ID != "secret" {
			t.Fatalf("leads_pii rows = %+v, want open and secret (gone is deleted)", pii)
		}
		if !pii[0].Email.Valid || !pii[0].First.Valid || !pii[0].Raw.Valid {
			t.Errorf("non-HIPAA row lost its fields: %+v", pii[0])
		}
		if pii[1].Email.Valid || pii[1].First.Valid || pii[1].Raw.Valid || pii[1].Chan.String != "paid_search" {
			t.Errorf("HIPAA row: PII must be NULL, the rest kept: %+v", pii[1])
		}

		var counts []struct {
			Day   nullTime `db:"day"`
			Kind  string   `db:"kind"`
			Leads int      `db:"leads"`
		}
		if err := b.c.r.SelectContext(b.ctx, &counts, `SELECT day, kind, leads FROM lead_counts_by_day`); err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].Leads != 2 || counts[0].Kind != sources.KindCall ||
			counts[0].Day.Format(time.DateOnly) != t0.Format(time.DateOnly) {
			t.Errorf("lead_counts_by_day = %+v, want one row of 2 calls on %s", counts, t0.Format(time.DateOnly))
		}
	})
}

func TestRunLedger(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		b.clock.Advance(time.Minute)
		stats := RunStats{AccountsOK: 3, AccountsFailed: 1, AccountsRestricted: 2, LeadsWritten: 1234, Requests: 99, Throttled: 7}
		if err := b.s.FinishRun(b.ctx, run, RunFailed, stats, errors.New("leadconnector/LOC1: 500")); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Trigger    string   `db:"trigger"`
			Status     string   `db:"status"`
			StartedAt  nullTime `db:"started_at"`
			FinishedAt nullTime `db:"finished_at"`
			OK         int      `db:"accounts_ok"`
			Failed     int      `db:"accounts_failed"`
			Restricted int      `db:"accounts_restricted"`
			Written    int64    `db:"leads_written"`
			Requests   int64    `db:"requests"`
			Throttled  int64    `db:"throttled"`
			Error      string   `db:"error"`
		}
		if err := b.c.r.GetContext(b.ctx, &got, b.c.q(`SELECT trigger, status, started_at, finished_at, accounts_ok,
    accounts_failed, accounts_restricted, leads_written, requests, throttled, error FROM sync_runs WHERE id = ?`), run); err != nil {
			t.Fatal(err)
		}
		if got.Trigger != TriggerOnce || got.Status != RunFailed || got.FinishedAt.Sub(got.StartedAt.Time) != time.Minute ||
			got.OK != 3 || got.Failed != 1 || got.Restricted != 2 || got.Written != 1234 || got.Requests != 99 ||
			got.Throttled != 7 || got.Error != "leadconnector/LOC1: 500" {
			t.Errorf("sync_runs row = %+v", got)
		}
		if err := b.s.FinishRun(b.ctx, run+1000, RunOK, RunStats{}, nil); !errors.Is(err, ErrUnknownRun) {
			t.Errorf("FinishRun of an unknown run: %v, want ErrUnknownRun", err)
		}
	})
}

func TestDailyCounts(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		write := func(calls int, next sources.Cursor) {
			t.Helper()
			res := b.write(t, PageWrite{Run: b.run(t), Account: "USA_9", Stream: "daily_counts", Next: next,
				Counts: []sources.DailyCount{
					{Day: day, Kind: sources.KindCall, Count: 1}, // repeated in the page: the last copy wins
					{Day: day, Kind: sources.KindCall, Count: calls},
					{Day: day, Kind: sources.KindForm, Count: 2},
				}})
			if res != (WriteResult{Counts: 2}) {
				t.Errorf("WritePage = %+v, want 2 counts", res)
			}
		}
		write(5, "d1")
		b.clock.Advance(time.Hour)
		write(7, "d2") // the vendor revised its count
		if n := b.count(t, `SELECT sum(count) FROM lead_daily_counts WHERE account_id = 'USA_9'`); n != 9 {
			t.Errorf("daily counts sum to %d, want 9", n)
		}
		var synced nullTime
		if err := b.c.r.GetContext(b.ctx, &synced, `SELECT max(synced_at) FROM lead_daily_counts`); err != nil || !synced.Equal(b.clock.Stored()) {
			t.Errorf("synced_at = %v, %v; want the last write's %v", synced.Time, err, b.clock.Stored())
		}
		if got := b.streamCursor(t, "USA_9", "daily_counts"); got != "d2" {
			t.Errorf("daily_counts cursor = %q, want d2", got)
		}
		if st := b.status(t, "USA_9"); st.Access != sources.AccessOK {
			t.Errorf("account of daily counts not listed: %+v", st)
		}
	})
}

// TestConcurrentWriters checks the Sink is safe for the worker's concurrent accounts.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for a := range 4 {
			wg.Go(func() {
				acct := fmt.Sprintf("USA_%d", a)
				for p := range 5 {
					ids := []string{fmt.Sprintf("p%d-1", p), fmt.Sprintf("p%d-2", p)}
					if _, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Stream: testStream, Account: acct,
						Leads: testLeads(acct, ids...), Next: sources.Cursor(fmt.Sprint(p))}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := b.count(t, `SELECT count(*) FROM leads`); n != 40 {
			t.Errorf("%d leads, want 40", n)
		}
		if got := b.cursor(t, "USA_3"); got != "4" {
			t.Errorf("cursor = %q, want 4", got)
		}
	})
}
