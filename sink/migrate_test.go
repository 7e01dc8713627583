package sink

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

func TestMigrations(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		ctx, url := t.Context(), newURL(t)

		st, err := MigrationStatus(ctx, url)
		if err != nil || len(st) == 0 || st[0].Applied || st[0].Name != "00001_init.sql" {
			t.Fatalf("status of an empty database = %+v, %v; want 00001_init.sql pending", st, err)
		}
		if _, err := Open(ctx, url, Options{NoMigrate: true, Logger: quiet}); !errors.Is(err, ErrSchemaOutdated) {
			t.Fatalf("Open(NoMigrate) of an empty database: %v, want ErrSchemaOutdated", err)
		}

		// Up from empty, then again as a no-op.
		for range 2 {
			if err := Migrate(ctx, url); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
		}
		st, err = MigrationStatus(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st {
			if !m.Applied || m.AppliedAt.IsZero() {
				t.Errorf("after Migrate, %+v is not applied", m)
			}
		}
		s, err := Open(ctx, url, Options{NoMigrate: true, Logger: quiet})
		if err != nil {
			t.Fatalf("Open(NoMigrate) of a migrated database: %v", err)
		}
		if _, err := s.Status(ctx); err != nil {
			t.Errorf("Status on a migrated database: %v", err)
		}
		s.Close()

		// A newer leadsync migrated the database further: this one refuses it.
		w, err := open(ctx, url, Options{Logger: quiet}, modeNone)
		if err != nil {
			t.Fatal(err)
		}
		c := w.base()
		if _, err := c.w.ExecContext(ctx, c.q(`INSERT INTO sink_migrations (version_id, is_applied) VALUES (?, ?)`), 99999, true); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if _, err := Open(ctx, url, Options{Logger: quiet}); !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
		}
		if err := Migrate(ctx, url); !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("Migrate of a newer schema: %v, want ErrSchemaTooNew", err)
		}
		st, err = MigrationStatus(ctx, url)
		if err != nil || st[len(st)-1].Version != 99999 || st[len(st)-1].Name != "(unknown)" {
			t.Errorf("status of a newer schema = %+v, %v; want the unknown version listed", st, err)
		}
	})
}

// ParseURL is the grammar of internal/dburl (tested there), as cmd/leadsync's grant-analyst
// reads it.
func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, dialect, dsn string
	}{
		{"sqlite:///var/lib/leadsync/leads.db", DialectSQLite, "/var/lib/leadsync/leads.db"},
		{"sqlite://data/leads.db", DialectSQLite, "data/leads.db"},
		{"sqlite:///var/lib/leadsync/leads.db?_cache_size=-20000", DialectSQLite, "/var/lib/leadsync/leads.db"},
		{"/var/lib/leadsync/leads.db", DialectSQLite, "/var/lib/leadsync/leads.db"},
		{"postgres://u@db/leads", DialectPostgres, "postgres://u@db/leads"},
		{"postgresql://u@db/leads?sslmode=require", DialectPostgres, "postgresql://u@db/leads?sslmode=require"},
	} {
		got, err := ParseURL(tc.url)
		if err != nil || got.Dialect != tc.dialect || got.DSN != tc.dsn {
			t.Errorf("ParseURL(%q) = %+v, %v; want %s %s", tc.url, got, err, tc.dialect, tc.dsn)
		}
	}
	for _, bad := range []string{"", "mysql://u@db/leads", "sqlite:", "sqlite:leads.db", "leads.db"} {
		if _, err := ParseURL(bad); err == nil || !strings.HasPrefix(err.Error(), "sink: ") {
			t.Errorf("ParseURL(%q) = %v, want a sink: error", bad, err)
		}
	}
}

// A warehouse file whose name has characters a URI would read otherwise opens where the
// URL says, and the URL's driver parameters reach the driver.
func TestSQLiteURLPath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leads #1 100%.db")
	s, err := Open(t.Context(), "sqlite://"+path+"?_cache_size=-4321", Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cache int
	if err := s.(warehouse).base().w.GetContext(t.Context(), &cache, `SELECT cache_size FROM pragma_cache_size`); err != nil || cache != -4321 {
		t.Errorf("cache_size %d, %v; want the URL's -4321", cache, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Errorf("the warehouse is not at %s: %v", path, err)
	}
	if _, err := Open(t.Context(), "sqlite://"+path+"?_txlock=deferred", Options{Logger: quiet}); err == nil ||
		!strings.Contains(err.Error(), "leadsync sets _txlock itself") {
		t.Errorf("a URL overriding _txlock: %v, want it refused", err)
	}
}

func TestSQLiteConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, dialectCases[0].newURL)
	var mode string
	var fk, busy int
	if err := b.c.w.QueryRowContext(b.ctx, `SELECT (SELECT journal_mode FROM pragma_journal_mode),
    (SELECT foreign_keys FROM pragma_foreign_keys), (SELECT timeout FROM pragma_busy_timeout)`).Scan(&mode, &fk, &busy); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || fk != 1 || busy != int(defaultBusyTimeout.Milliseconds()) {
		t.Errorf("journal_mode=%s foreign_keys=%d busy_timeout=%d; want wal, 1, %d", mode, fk, busy, defaultBusyTimeout.Milliseconds())
	}
	if _, err := b.c.r.ExecContext(b.ctx, `DELETE FROM leads`); err == nil {
		t.Error("the read pool can write")
	}
}

// Migration 3 rebuilds SQLite's sync_runs: the runs already there survive, and new run ids
// carry on after them.
func TestMigrationKeepsRuns(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		ctx, url := t.Context(), newURL(t)
		w, err := open(ctx, url, Options{Logger: quiet}, modeNone)
		if err != nil {
			t.Fatal(err)
		}
		c := w.base()
		if _, err := c.migrations.Goose.UpTo(ctx, 2); err != nil {
			t.Fatal(err)
		}
		for _, status := range []string{RunOK, RunRunning} {
			if _, err := c.w.ExecContext(ctx, c.q(`INSERT INTO sync_runs (trigger, started_at, status, leads_written)
VALUES ('cron', ?, ?, 7)`), c.ts(time.Now()), status); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		s, err := Open(ctx, url, Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c = s.(warehouse).base()
		var n int
		if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM sync_runs WHERE leads_written = 7 AND records_rejected = 0`); err != nil || n != 2 {
			t.Fatalf("%d runs kept, %v; want 2", n, err)
		}
		if run, err := s.BeginRun(ctx, TriggerOnce, "", ModeIncremental); err != nil || run != 3 {
			t.Errorf("the next run is %d, %v; want 3", run, err)
		}
	})
}

// Migration 4 carries a warehouse written by the 00003 schema over to streams: each cursor
// lands on the stream that read it (LACRM's on both of its streams), each lead gets its
// stream, and the views show it. Down restores the 00003 shape with one cursor per account.
func TestMigrationToStreamsKeepsData(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		ctx, url := t.Context(), newURL(t)
		w, err := open(ctx, url, Options{Logger: quiet}, modeNone)
		if err != nil {
			t.Fatal(err)
		}
		c := w.base()
		if _, err := c.migrations.Goose.UpTo(ctx, 3); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
		const lacrmCursor = `{"v":1,"streams":{"contacts":{"page":4},"pipeline:77":{"page":2}}}`
		exec := func(query string, args ...any) {
			t.Helper()
			if _, err := c.w.ExecContext(ctx, c.q(query), args...); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		}
		for _, r := range [][3]string{
			{"leadconnector", "LOC1", `{"after":"lc"}`},
			{"localiq", "USA_1", `{"since":"liq"}`},
			{"lacrm", "L1", lacrmCursor},
			{"acme", "A1", "acme-cursor"},
		} {
			exec(`INSERT INTO sync_state (source, account_id, cursor, updated_at, sync_run_id) VALUES (?, ?, ?, ?, 1)`,
				r[0], r[1], r[2], c.ts(now))
		}
		for _, l := range [][4]string{
			{"leadconnector", "LOC1", "lc-1", "contact"},
			{"localiq", "USA_1", "liq-1", "call"},
			{"lacrm", "L1", "contact-1", "contact"},
			{"lacrm", "L1", "item-1", "pipeline_item"},
		} {
			exec(`INSERT INTO leads (source, account_id, lead_id, kind, email, first_seen_at, last_synced_at, sync_run_id)
VALUES (?, ?, ?, ?, 'a@example.com', ?, ?, 1)`, l[0], l[1], l[2], l[3], c.ts(now), c.ts(now))
		}
		exec(`INSERT INTO full_pass_seen (source, account_id, run_id, lead_id) VALUES ('lacrm', 'L1', 1, 'item-1')`)
		w.Close()

		s, err := Open(ctx, url, Options{Logger: quiet})
		if err != nil {
			t.Fatalf("migrate a 00003 warehouse with data: %v", err)
		}
		defer s.Close()
		c = s.(warehouse).base()
		for _, tc := range []struct{ source, account, stream, want string }{
			{"leadconnector", "LOC1", "contacts", `{"after":"lc"}`},
			{"localiq", "USA_1", "interactions", `{"since":"liq"}`},
			{"localiq", "USA_1", "daily_counts", ""},
			{"lacrm", "L1", "contacts", lacrmCursor},
			{"lacrm", "L1", "pipeline_items", ""}, // 00007: its items are deals now, read again
			{"acme", "A1", "leads", "acme-cursor"},
		} {
			if got, err := s.Cursor(ctx, tc.source, tc.account, tc.stream); err != nil || string(got) != tc.want {
				t.Errorf("cursor of %s/%s/%s = %q, %v; want %q", tc.source, tc.account, tc.stream, got, err, tc.want)
			}
		}
		streamsOf := func(view string) map[string]string {
			t.Helper()
			var rows []struct {
				ID     string `db:"lead_id"`
				Stream string `db:"stream"`
			}
			if err := c.r.SelectContext(ctx, &rows, `SELECT lead_id, stream FROM `+view); err != nil {
				t.Fatalf("read %s: %v", view, err)
			}
			out := make(map[string]string)
			for _, r := range rows {
				out[r.ID] = r.Stream
			}
			return out
		}
		// 00007 moved the LACRM pipeline item to deals.
		want := map[string]string{"lc-1": "contacts", "liq-1": "interactions", "contact-1": "contacts"}
		for _, view := range []string{"leads", "leads_current", "leads_deidentified"} {
			if got := streamsOf(view); !maps.Equal(got, want) {
				t.Errorf("%s streams = %v, want %v", view, got, want)
			}
		}
		var n int
		if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM full_pass_seen`); err != nil || n != 0 {
			t.Errorf("%d seen rows carried over, %v; want the bookkeeping recreated empty", n, err)
		}

		// The first run after the upgrade is incremental, and a full pass of one stream
		// spares the other's migrated leads.
		run, err := s.BeginRun(ctx, TriggerOnce, "", ModeIncremental)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.WritePage(ctx, PageWrite{Run: run, Source: "lacrm", Account: "L1", Stream: "contacts", FullPass: true,
			Leads: []sources.Lead{{ID: "contact-2", Kind: "contact"}}, Next: `{"v":1}`})
		if err != nil || res.Inserted != 1 {
			t.Fatalf("page after the upgrade = %+v, %v", res, err)
		}
		if n, err := s.FinishFullPass(ctx, run, "lacrm", "L1", "contacts"); err != nil || n != 1 {
			t.Errorf("FinishFullPass(contacts) = %d, %v; want contact-1 deleted, item-1 spared", n, err)
		}
		if err := s.FinishRun(ctx, run, RunOK, RunStats{}, nil); err != nil {
			t.Fatal(err)
		}
		var item string
		if err := c.r.GetContext(ctx, &item, `SELECT stream FROM deals WHERE deal_id = 'item-1' AND deleted_at IS NULL`); err != nil || item != "pipeline_items" {
			t.Errorf("the pipeline item in deals: stream %q, %v; want it live, of pipeline_items", item, err)
		}

		// Down to 3: one cursor per account again, leads without a stream.
		if _, err := c.migrations.Goose.DownTo(ctx, 3); err != nil {
			t.Fatalf("migrate down to 3: %v", err)
		}
		var cursors []struct {
			Source string `db:"source"`
			Cursor string `db:"cursor"`
		}
		if err := c.r.SelectContext(ctx, &cursors, `SELECT source, cursor FROM sync_state ORDER BY source`); err != nil {
			t.Fatal(err)
		}
		if len(cursors) != 4 || cursors[1].Source != "lacrm" || cursors[1].Cursor != `{"v":1}` {
			t.Errorf("sync_state after down = %+v, want 4 accounts, lacrm's contacts cursor", cursors)
		}
		if _, err := c.r.ExecContext(ctx, `SELECT stream FROM leads`); err == nil {
			t.Error("leads.stream survived the down migration")
		}
		if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM leads_deidentified`); err != nil || n != 4 {
			t.Errorf("leads_deidentified after down: %d rows, %v; want 4", n, err)
		}
		if _, err := c.migrations.Goose.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
	})
}

// Migration 8 adds read_at, archived_at and call_seconds to a warehouse that has leads: the
// rows stay as they were, with NULL times and 0 seconds, in leads and in every view over
// them, until a sync rewrites them. Down keeps the rows and the views, without the columns.
func TestMigrationToLeadTimesKeepsLeads(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		ctx, url := t.Context(), newURL(t)
		w, err := open(ctx, url, Options{Logger: quiet}, modeNone)
		if err != nil {
			t.Fatal(err)
		}
		c := w.base()
		if _, err := c.migrations.Goose.UpTo(ctx, 7); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
		// Their raw JSON has a read_at: the migration leaves vendor JSON to the decoders.
		for _, l := range [][3]string{{"USA_1", "call-1", "call"}, {"USA_1", "form-1", "form"}, {"USA_2", "call-2", "call"}} {
			if _, err := c.w.ExecContext(ctx, c.q(`INSERT INTO leads (source, account_id, lead_id, stream, kind, email, raw,
    created_at, first_seen_at, last_synced_at, sync_run_id)
VALUES ('localiq', ?, ?, 'interactions', ?, 'a@example.com', '{"read_at":"2026-01-04T10:00:00-08:00"}', ?, ?, ?, 1)`),
				l[0], l[1], l[2], c.ts(now.Add(-time.Hour)), c.ts(now), c.ts(now)); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()

		s, err := Open(ctx, url, Options{Logger: quiet, Now: func() time.Time { return now.Add(time.Hour) }})
		if err != nil {
			t.Fatalf("migrate a 00007 warehouse with leads: %v", err)
		}
		defer s.Close()
		c = s.(warehouse).base()
		counts := func(view string) (rows, emails, times, seconds int) {
			t.Helper()
			if err := c.r.QueryRowContext(ctx, `SELECT count(*), count(email), count(read_at) + count(archived_at), sum(call_seconds)
FROM `+view).Scan(&rows, &emails, &times, &seconds); err != nil {
				t.Fatalf("read %s: %v", view, err)
			}
			return
		}
		for _, view := range []string{"leads", "leads_current", "leads_shareable", "leads_pii", "leads_deidentified"} {
			rows, emails, times, seconds := counts(view)
			wantEmails := 3
			if view == "leads_shareable" || view == "leads_deidentified" {
				wantEmails = 0
			}
			if rows != 3 || emails != wantEmails || times != 0 || seconds != 0 {
				t.Errorf("%s after the upgrade: %d rows, %d emails, %d times, %d seconds; want 3, %d, 0, 0",
					view, rows, emails, times, seconds, wantEmails)
			}
		}
		var weekly int
		if err := c.r.GetContext(ctx, &weekly, `SELECT sum(leads) FROM lead_counts_by_week`); err != nil || weekly != 3 {
			t.Errorf("lead_counts_by_week after the upgrade: %d leads, %v; want 3", weekly, err)
		}

		// The next sync of a lead fills them in, as a change.
		run, err := s.BeginRun(ctx, TriggerOnce, "", ModeIncremental)
		if err != nil {
			t.Fatal(err)
		}
		read := time.Date(2026, 1, 4, 18, 0, 0, 0, time.UTC)
		res, err := s.WritePage(ctx, PageWrite{Run: run, Source: sources.LocaliQ, Account: "USA_1", Stream: "interactions",
			Leads: []sources.Lead{{ID: "call-1", Kind: "call", ReadAt: read, DurationSeconds: 65}}, Next: "c1"})
		if err != nil || res.Updated != 1 {
			t.Fatalf("sync after the upgrade = %+v, %v; want call-1 updated", res, err)
		}
		var got struct {
			ReadAt  nullTime `db:"read_at"`
			Seconds int64    `db:"call_seconds"`
		}
		if err := c.r.GetContext(ctx, &got, `SELECT read_at, call_seconds FROM leads_shareable WHERE lead_id = 'call-1'`); err != nil ||
			!got.ReadAt.Equal(read) || got.Seconds != 65 {
			t.Errorf("call-1 after its sync: %+v, %v; want read %v, 65 seconds", got, err, read)
		}

		// Down to 7: the rows and views stay, the columns go.
		if _, err := c.migrations.Goose.DownTo(ctx, 7); err != nil {
			t.Fatalf("migrate down to 7: %v", err)
		}
		for _, view := range []string{"leads", "leads_current", "leads_shareable", "leads_pii", "leads_deidentified", "lead_counts_by_day"} {
			var n int
			if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM `+view); err != nil || n == 0 {
				t.Errorf("%s after down: %d rows, %v", view, n, err)
			}
			if _, err := c.r.ExecContext(ctx, `SELECT read_at FROM `+view); err == nil && view != "lead_counts_by_day" {
				t.Errorf("%s.read_at survived the down migration", view)
			}
		}
		if _, err := c.migrations.Goose.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
	})
}
