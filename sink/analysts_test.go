package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leadsync/leadsync/sources"
)

// docQuery is an SQL block of docs/analysts.md.
type docQuery struct {
	sql string
	// dialect is the block's first line's: "sqlite", "postgres" or "admin" (never run), or
	// "" for a query that runs unchanged on both.
	dialect string
}

// docQueries are the SQL blocks of docs/analysts.md.
func docQueries(t *testing.T) []docQuery {
	t.Helper()
	doc, err := os.ReadFile("../docs/analysts.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 12 {
		t.Fatalf("docs/analysts.md has %d SQL blocks, want at least a dozen", len(blocks))
	}
	var out []docQuery
	for _, m := range blocks {
		q := docQuery{sql: m[1]}
		first, _, _ := strings.Cut(q.sql, "\n")
		for _, d := range []string{"sqlite", "postgres", "admin"} {
			if strings.HasPrefix(first, "-- "+d) {
				q.dialect = d
			}
		}
		out = append(out, q)
	}
	return out
}

// runsOn says whether the query is one for dialect.
func (q docQuery) runsOn(dialect string) bool {
	return q.dialect == "" || q.dialect == dialect
}

// TestAnalystDocQueries runs every SQL block of docs/analysts.md on a seeded warehouse of
// each dialect and requires rows from each: the analysts' guide stays true. A block whose
// first line is "-- sqlite" or "-- postgres" runs on that dialect only; "-- admin" blocks
// are not run.
func TestAnalystDocQueries(t *testing.T) {
	t.Parallel()
	queries := docQueries(t)
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.clock.t = time.Now().UTC()
		seedWarehouse(t, b)
		ran := 0
		for _, q := range queries {
			if !q.runsOn(b.c.dialect) {
				continue
			}
			ran++
			rows, err := b.c.r.QueryContext(b.ctx, q.sql)
			if err != nil {
				t.Errorf("doc query failed: %v\n%s", err, q.sql)
				continue
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("doc query failed: %v\n%s", err, q.sql)
			}
			rows.Close()
			if n == 0 {
				t.Errorf("doc query returned no rows on the seeded warehouse:\n%s", q.sql)
			}
		}
		t.Logf("ran %d doc queries", ran)
		if ran < 12 {
			t.Errorf("ran %d doc queries, want at least 12", ran)
		}
	})
}

// withheld are the leads columns the sharing view withholds: the described PII columns and
// the vendor's free text.
func withheld(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, c := range leadsTable.describe().columns {
		if c.pii {
			out = append(out, c.name)
		}
	}
	if !slices.Equal(out, sources.PIIFields) {
		t.Fatalf("PII columns %v, sources.PIIFields %v", out, sources.PIIFields)
	}
	return append(out, "tags")
}

// viewRows reads every row of a view, by lead, each column's value as the driver gives it
// (text as string).
func viewRows(t *testing.T, b *bundle, view string) (columns []string, rows map[string]map[string]any) {
	t.Helper()
	rs, err := b.c.r.QueryxContext(b.ctx, "SELECT * FROM "+view)
	if err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	defer rs.Close()
	if columns, err = rs.Columns(); err != nil {
		t.Fatal(err)
	}
	rows = make(map[string]map[string]any)
	for rs.Next() {
		m := make(map[string]any)
		if err := rs.MapScan(m); err != nil {
			t.Fatalf("read %s: %v", view, err)
		}
		for k, v := range m {
			if bs, ok := v.([]byte); ok {
				m[k] = string(bs)
			}
		}
		rows[fmt.Sprint(m["source"], "/", m["account_id"], "/", m["lead_id"])] = m
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	return columns, rows
}

// TestLeadViewsWithhold checks that each view of leads withholds what docs/analysts.md says,
// column by column, against leads_current on the seeded warehouse: leads_shareable (and
// the deprecated leads_deidentified) NULL in every PII column and tags on every row, and
// every other column as is; leads_pii NULL in those columns on HIPAA rows only.
func TestLeadViewsWithhold(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		seedWarehouse(t, b)
		secret := withheld(t)
		cols, current := viewRows(t, b, "leads_current")
		hipaa, open := 0, 0
		for _, r := range current {
			for _, c := range secret {
				if r[c] == nil {
					t.Fatalf("the seeded lead %v has no %s: the test would prove nothing", r["lead_id"], c)
				}
			}
			if isTrue(r["hipaa"]) {
				hipaa++
			} else {
				open++
			}
		}
		if hipaa == 0 || open == 0 {
			t.Fatalf("seeded %d HIPAA and %d other current leads, want some of each", hipaa, open)
		}
		for _, view := range []string{"leads_shareable", "leads_deidentified", "leads_pii"} {
			vcols, rows := viewRows(t, b, view)
			if !slices.Equal(vcols, cols) {
				t.Errorf("%s columns %v, want leads_current's %v", view, vcols, cols)
			}
			if len(rows) != len(current) {
				t.Errorf("%s has %d rows, leads_current %d", view, len(rows), len(current))
			}
			for key, want := range current {
				got, ok := rows[key]
				if !ok {
					t.Errorf("%s lacks %s", view, key)
					continue
				}
				hide := view != "leads_pii" || isTrue(want["hipaa"])
				for _, c := range cols {
					switch {
					case hide && slices.Contains(secret, c):
						if got[c] != nil {
							t.Errorf("%s %s: %s = %v, want NULL", view, key, c, got[c])
						}
					case !reflect.DeepEqual(got[c], want[c]):
						t.Errorf("%s %s: %s = %#v, want leads_current's %#v", view, key, c, got[c], want[c])
					}
				}
			}
		}
		// The same, as analysts would check it.
		if n := b.count(t, `SELECT count(*) FROM leads_shareable WHERE first_name IS NOT NULL OR last_name IS NOT NULL
OR email IS NOT NULL OR phone IS NOT NULL OR company IS NOT NULL OR raw IS NOT NULL OR tags IS NOT NULL`); n != 0 {
			t.Errorf("%d rows of leads_shareable hold PII", n)
		}
	})
}

func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case int64:
		return v != 0
	}
	return false
}

// TestLeadCountsByWeekISO checks lead_counts_by_week against Go's time.ISOWeek on both
// dialects, around every new year from 2004 to 2031 (years of 52 and 53 weeks, weeks that
// straddle two years) and at either end of a UTC day.
func TestLeadCountsByWeekISO(t *testing.T) {
	t.Parallel()
	type week struct {
		Year  int    `db:"iso_year"`
		Week  int    `db:"iso_week"`
		Start string `db:"week_start"`
	}
	var times []time.Time
	for y := 2004; y <= 2031; y++ {
		for d := time.Date(y-1, 12, 24, 0, 0, 0, 0, time.UTC); d.Before(time.Date(y, 1, 8, 0, 0, 0, 0, time.UTC)); d = d.AddDate(0, 0, 1) {
			times = append(times, d, d.Add(24*time.Hour-time.Microsecond))
		}
	}
	times = append(times,
		time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC),
		// Sunday evening in New York is Monday in UTC: the next ISO week (2021-W01).
		time.Date(2021, 1, 3, 22, 0, 0, 0, time.FixedZone("EST", -5*3600)),
	)
	want := make(map[week]int)
	for _, tm := range times {
		u := tm.UTC()
		y, w := u.ISOWeek()
		day := time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
		monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
		want[week{y, w, monday.Format(time.DateOnly)}]++
	}
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		var page []sources.Lead
		for i, tm := range times {
			l := testLead("USA_1", fmt.Sprintf("w%04d", i))
			l.CreatedAt = tm
			page = append(page, l)
		}
		b.write(t, PageWrite{Run: run, Account: "USA_1", Leads: page})
		var rows []struct {
			week
			Leads int `db:"leads"`
		}
		if err := b.c.r.SelectContext(b.ctx, &rows, `SELECT iso_year, iso_week, CAST(week_start AS TEXT) AS week_start,
    sum(leads) AS leads
FROM lead_counts_by_week
GROUP BY iso_year, iso_week, week_start`); err != nil {
			t.Fatal(err)
		}
		got := make(map[week]int)
		for _, r := range rows {
			got[r.week] += r.Leads
		}
		for w, n := range want {
			if got[w] != n {
				t.Errorf("week %d-W%02d (from %s): %d leads, want %d", w.Year, w.Week, w.Start, got[w], n)
			}
		}
		for w, n := range got {
			if _, ok := want[w]; !ok {
				t.Errorf("week %d-W%02d (from %s) has %d leads, want none", w.Year, w.Week, w.Start, n)
			}
		}
	})
}

// TestAnalystGrantSQL: what grant-analyst --print shows, with and without --pii.
func TestAnalystGrantSQL(t *testing.T) {
	t.Parallel()
	plain := AnalystGrantSQL("wh", `an"alyst`, GrantOptions{})
	if plain[0] != `GRANT USAGE ON SCHEMA "wh" TO "an""alyst"` {
		t.Errorf("first statement %q", plain[0])
	}
	if want := `GRANT SELECT ON "wh".leads_shareable TO "an""alyst"`; !slices.Contains(plain, want) {
		t.Errorf("%q lacks %q", plain, want)
	}
	pii := AnalystGrantSQL("wh", "a", GrantOptions{PII: true})
	if len(pii) != len(plain)+2 || pii[len(pii)-2] != `GRANT SELECT ON "wh".leads_pii TO "a"` ||
		pii[len(pii)-1] != `GRANT SELECT ON "wh".custom_field_values TO "a"` {
		t.Errorf("--pii grants %q; want the PII-free grants, leads_pii and custom_field_values", pii)
	}
	for _, stmt := range plain {
		for _, never := range []string{".leads ", ".leads_current ", ".rejected_records ", ".leads_pii ", ".deals ",
			".submissions ", ".custom_field_values "} {
			if strings.Contains(stmt, never) {
				t.Errorf("grant without PII: %q", stmt)
			}
		}
	}
}

// seedWarehouse fills a warehouse with a little of everything the doc's queries look at.
func seedWarehouse(t *testing.T, b *bundle) {
	t.Helper()
	ctx := b.ctx
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []sources.Account{
		{Source: sources.LocaliQ, ID: "USA_1", Name: "Dental Co", HIPAAProtected: true, Active: true},
		{Source: sources.LocaliQ, ID: "USA_2", Name: "Plumbing Inc", Active: true},
		{Source: sources.LocaliQ, ID: "USA_3", Name: "Clinic", HIPAAProtected: true, Active: true},
		{Source: sources.LeadConnector, ID: "LOC1", Name: "Roofing"},
		{Source: sources.LACRM, ID: "L1", Name: "Never synced"},
	} {
		must(b.s.UpsertAccount(ctx, a))
	}
	run := b.run(t)
	created := b.clock.Now().Add(-50 * time.Hour)
	lead := func(src, acct, id string) sources.Lead {
		l := benchLead(acct, id)
		l.Source, l.CreatedAt = src, created
		return l
	}
	a, bb, old := lead(sources.LocaliQ, "USA_1", "a"), lead(sources.LocaliQ, "USA_1", "b"), lead(sources.LocaliQ, "USA_2", "old")
	a.HIPAA = true
	c := lead(sources.LocaliQ, "USA_2", "c")
	c.Email = strings.ToUpper(a.Email) // the same person in another account
	// First looked at after an hour and a half; a call of 55 seconds, as its raw "00:55" says.
	c.ReadAt, c.DurationSeconds = created.Add(90*time.Minute), 55
	d := lead(sources.LeadConnector, "LOC1", "d")
	d.Kind, d.Tags = sources.KindContact, nil
	write := func(run RunID, src, acct string, full bool, leads ...sources.Lead) {
		t.Helper()
		_, err := b.s.WritePage(ctx, PageWrite{Run: run, Source: src, Stream: testStream, Account: acct, Leads: leads, Next: `{"page":2}`, FullPass: full})
		must(err)
	}
	write(run, sources.LocaliQ, "USA_1", false, a, bb)
	write(run, sources.LocaliQ, "USA_2", false, c, old)
	write(run, sources.LeadConnector, "LOC1", false, d)
	_, err := b.s.WritePage(ctx, PageWrite{Run: run, Source: sources.LeadConnector, Stream: testStream, Account: "LOC1", Next: `{"page":3}`,
		Rejected: []sources.Rejected{{Reason: "no id", Raw: []byte(`{"id":null,"email":"x@example.com"}`)}}})
	must(err)
	b.clock.Advance(time.Minute)
	bb.Status = "qualified"
	write(run, sources.LocaliQ, "USA_1", false, bb)
	pass := b.run(t) // a full pass deletes only what was stored before it began
	write(pass, sources.LocaliQ, "USA_2", true, c)
	_, err = b.s.FinishFullPass(ctx, pass, sources.LocaliQ, "USA_2", testStream)
	must(err)
	must(b.s.FinishConnection(ctx, pass, ConnectionRun{Connection: "liq", Source: sources.LocaliQ, Mode: ModeFull, Status: RunOK,
		Stats: RunStats{AccountsOK: 1}}))
	must(b.s.FinishRun(ctx, pass, RunOK, RunStats{AccountsOK: 1, Requests: 2}, nil))
	_, err = b.s.WritePage(ctx, PageWrite{Run: run, Source: sources.LocaliQ, Account: "USA_1", Stream: "daily_counts",
		Counts: []sources.DailyCount{{Day: created.Truncate(24 * time.Hour), Kind: sources.KindCall, Count: 3}}})
	must(err)
	must(b.s.MarkRestricted(ctx, run, &sources.RestrictedError{Vendor: sources.LocaliQ, AccountID: "USA_3", HIPAA: true, Message: "You are not permitted to perform this action."}))
	for _, acct := range [][2]string{{sources.LocaliQ, "USA_1"}, {sources.LocaliQ, "USA_2"}, {sources.LeadConnector, "LOC1"}} {
		must(b.s.AccountSynced(ctx, run, acct[0], acct[1], nil))
	}
	seedLifecycle(t, b, run, created)
	b.clock.Advance(time.Minute)
	must(b.s.FinishConnection(ctx, run, ConnectionRun{Connection: "liq", Source: sources.LocaliQ, Status: RunOK,
		Stats: RunStats{AccountsOK: 2, AccountsRestricted: 1, LeadsWritten: 5}}))
	must(b.s.FinishConnection(ctx, run, ConnectionRun{Connection: "agency", Source: sources.LeadConnector, Status: RunOK,
		Stats: RunStats{AccountsOK: 1, LeadsWritten: 1}}))
	must(b.s.FinishRun(ctx, run, RunOK, RunStats{AccountsOK: 3, AccountsRestricted: 1, LeadsWritten: 6, Requests: 12, RecordsRejected: 1}, nil))
}

// seedLifecycle adds to seedWarehouse's run what the guide's lifecycle queries read: LOC1's
// pipeline, custom field and two deals of its lead d (one moved through three stages to won,
// one lost), a form submission of d, and USA_2's campaign "spring" with its spend.
func seedLifecycle(t *testing.T, b *bundle, run RunID, created time.Time) {
	t.Helper()
	write := func(w PageWrite) {
		t.Helper()
		w.Run, w.Source, w.Account = run, sources.LeadConnector, "LOC1"
		if _, err := b.s.WritePage(b.ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	write(PageWrite{Stream: "pipelines", Dictionary: []sources.DictEntry{
		{Kind: sources.DictPipeline, ID: "p1", Name: "Sales"},
		{Kind: sources.DictStage, ID: "s1", ParentID: "p1", Name: "New", Position: 0},
		{Kind: sources.DictStage, ID: "s2", ParentID: "p1", Name: "Quoted", Position: 1},
		{Kind: sources.DictStage, ID: "s3", ParentID: "p1", Name: "Won", Position: 2},
	}})
	write(PageWrite{Stream: "custom_fields", Dictionary: []sources.DictEntry{
		{Kind: sources.DictCustomField, ID: "f-budget", Name: "Budget", DataType: "MONETORY", Category: "opportunity"},
	}})
	deal := func(id, stage, status string, value float64) sources.Deal {
		return sources.Deal{ID: id, ContactID: "d", Name: "Roof", PipelineID: "p1", StageID: stage, Status: status,
			StatusCategory: status, Value: value, CreatedAt: created, UpdatedAt: b.clock.Now(),
			CustomValues: map[string]json.RawMessage{"f-budget": json.RawMessage(`"5000"`)}}
	}
	write(PageWrite{Stream: "opportunities", Deals: []sources.Deal{deal("o1", "s1", "open", 1000), deal("o2", "s1", "open", 400)}})
	b.clock.Advance(time.Hour)
	write(PageWrite{Stream: "opportunities", Deals: []sources.Deal{deal("o1", "s2", "open", 1000), deal("o2", "s1", "lost", 400)}})
	b.clock.Advance(2 * time.Hour)
	write(PageWrite{Stream: "opportunities", Deals: []sources.Deal{deal("o1", "s3", "won", 1200)}})
	write(PageWrite{Stream: "form_submissions", Submissions: []sources.Submission{{ID: "sub1", Kind: sources.SubmissionForm,
		FormID: "form1", FormName: "Quote request", ContactID: "d", Email: "ada@example.com", SubmittedAt: created,
		Attribution: sources.Attribution{Source: "Google Ads", Medium: "cpc", UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring", GCLID: "Cj0K"},
		Answers:     json.RawMessage(`{"roof_age":"15 years"}`)}}})
	if _, err := b.s.WritePage(b.ctx, PageWrite{Run: run, Source: sources.LocaliQ, Account: "USA_2", Stream: "campaign_cycles",
		Cycles: []sources.CampaignCycle{{CampaignID: "C1", CycleID: "Y1", CampaignName: "spring", CampaignType: "search",
			Channel: "Search", Status: "running", Currency: "USD", Start: created.Truncate(24 * time.Hour), Spend: 300, Budget: 500,
			Clicks: 120, Leads: 3}}}); err != nil {
		t.Fatal(err)
	}
}

// newRole creates a role on the server of url, dropped when t ends.
func newRole(t *testing.T, url string) string {
	t.Helper()
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	role := "t_analyst_" + hex.EncodeToString(rnd)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE ROLE "+role+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = conn.Exec(ctx, "DROP ROLE "+role)
	})
	return role
}

// connAs is a connection to url acting as role, closed when t ends.
func connAs(t *testing.T, url, role string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), "SET ROLE "+role); err != nil {
		t.Fatal(err)
	}
	return conn
}

// analystRole creates a role with GrantAnalyst's grants (dropped when t ends) and returns a
// connection acting as it.
func analystRole(t *testing.T, b *bundle, p *Postgres, opts GrantOptions) *pgx.Conn {
	t.Helper()
	role := newRole(t, b.url)
	if err := p.GrantAnalyst(b.ctx, role, opts); err != nil {
		t.Fatal(err)
	}
	return connAs(t, b.url, role)
}

func isPermissionDenied(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == "42501"
}

// TestPostgresAnalystRole proves a role made by grant-analyst reads every PII-free table and
// view, runs the guide's queries that use only those, and gets permission denied on
// everything holding lead PII; with --pii it also reads leads_pii, still without the PII of
// HIPAA leads.
func TestPostgresAnalystRole(t *testing.T) {
	t.Parallel()
	b, p := setupPostgres(t)
	b.clock.t = time.Now().UTC()
	seedWarehouse(t, b)
	conn := analystRole(t, b, p, GrantOptions{})

	var schemaRelations []string
	if err := b.c.r.SelectContext(b.ctx, &schemaRelations, `SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() ORDER BY table_name`); err != nil {
		t.Fatal(err)
	}
	for _, rel := range schemaRelations {
		_, err := conn.Exec(b.ctx, "SELECT * FROM "+rel+" LIMIT 1")
		switch {
		case slices.Contains(AnalystRelations, rel):
			if err != nil {
				t.Errorf("analyst reading %s: %v", rel, err)
			}
		case !isPermissionDenied(err):
			t.Errorf("analyst reading %s: %v, want permission denied (42501)", rel, err)
		}
	}
	for _, rel := range []string{"leads", "leads_current", "rejected_records", "leads_pii"} {
		if slices.Contains(AnalystRelations, rel) || !slices.Contains(schemaRelations, rel) {
			t.Errorf("%s: granted or not in the schema", rel)
		}
	}
	var email *string
	if err := conn.QueryRow(b.ctx, `SELECT email FROM leads LIMIT 1`).Scan(&email); !isPermissionDenied(err) {
		t.Errorf("analyst reading leads.email: %v, want permission denied (42501)", err)
	}
	var n, withPII int
	if err := conn.QueryRow(b.ctx, `SELECT count(*), count(email) + count(raw) + count(tags) FROM leads_shareable`).Scan(&n, &withPII); err != nil || n == 0 || withPII != 0 {
		t.Errorf("analyst reading leads_shareable: %d rows, %d PII values, %v; want rows without PII", n, withPII, err)
	}

	// The guide's queries: those on PII-free relations run for the analyst, the others are
	// refused.
	from := regexp.MustCompile(`(?i)\b(?:from|join)\s+([a-z_]+)`)
	safe := 0
	for _, q := range docQueries(t) {
		if !q.runsOn(DialectPostgres) {
			continue
		}
		var pii []string
		for _, m := range from.FindAllStringSubmatch(q.sql, -1) {
			if rel := m[1]; slices.Contains(schemaRelations, rel) && !slices.Contains(AnalystRelations, rel) {
				pii = append(pii, rel)
			}
		}
		rows, err := conn.Query(b.ctx, q.sql)
		n := 0
		if err == nil {
			for rows.Next() {
				n++
			}
			rows.Close()
			err = rows.Err()
		}
		switch {
		case len(pii) > 0:
			if !isPermissionDenied(err) {
				t.Errorf("analyst running a query on %v: %v, want permission denied\n%s", pii, err, q.sql)
			}
		case err != nil || n == 0:
			t.Errorf("analyst running a PII-free doc query: %d rows, %v\n%s", n, err, q.sql)
		default:
			safe++
		}
	}
	t.Logf("the analyst ran %d doc queries", safe)
	if safe < 10 {
		t.Errorf("the analyst ran %d doc queries, want at least 10", safe)
	}

	// --pii: leads_pii too, with no PII of HIPAA leads; the tables stay refused.
	pconn := analystRole(t, b, p, GrantOptions{PII: true})
	rows, err := pconn.Query(b.ctx, `SELECT lead_id, hipaa, email, phone, raw FROM leads_pii ORDER BY lead_id`)
	if err != nil {
		t.Fatalf("PII analyst reading leads_pii: %v", err)
	}
	type row struct {
		ID    string  `db:"lead_id"`
		HIPAA bool    `db:"hipaa"`
		Email *string `db:"email"`
		Phone *string `db:"phone"`
		Raw   *string `db:"raw"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		t.Fatal(err)
	}
	hipaa, open := 0, 0
	for _, r := range got {
		switch {
		case r.HIPAA && (r.Email != nil || r.Phone != nil || r.Raw != nil):
			t.Errorf("PII analyst sees the PII of HIPAA lead %s", r.ID)
		case r.HIPAA:
			hipaa++
		case r.Email == nil || r.Phone == nil || r.Raw == nil:
			t.Errorf("PII analyst does not see the PII of lead %s: %+v", r.ID, r)
		default:
			open++
		}
	}
	if hipaa == 0 || open == 0 {
		t.Errorf("PII analyst sees %d HIPAA and %d other leads, want some of each", hipaa, open)
	}
	for _, rel := range []string{"leads", "leads_current", "rejected_records"} {
		if _, err := pconn.Exec(b.ctx, "SELECT 1 FROM "+rel); !isPermissionDenied(err) {
			t.Errorf("PII analyst reading %s: %v, want permission denied", rel, err)
		}
	}
}

// TestMigrationToAnalystViews: a warehouse at version 4 upgrades with its leads and its
// analysts' grants on leads_deidentified, which then withholds PII on every row; down to 4,
// it is the view it was.
func TestMigrationToAnalystViews(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		ctx, url := t.Context(), newURL(t)
		w, err := open(ctx, url, Options{Logger: quiet}, modeNone)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		c := w.base()
		if _, err := c.migrations.Goose.UpTo(ctx, 4); err != nil {
			t.Fatal(err)
		}
		now := c.ts(time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC))
		for _, l := range []struct {
			id    string
			hipaa bool
		}{{"open", false}, {"secret", true}} {
			if _, err := c.w.ExecContext(ctx, c.q(`INSERT INTO leads (source, account_id, lead_id, kind, email, tags, hipaa, created_at,
    first_seen_at, last_synced_at, stream)
VALUES ('localiq', 'USA_1', ?, 'call', 'a@example.com', '["vip"]', ?, ?, ?, ?, 'interactions')`), l.id, l.hipaa, now, now, now); err != nil {
				t.Fatal(err)
			}
		}
		var role string
		if c.dialect == DialectPostgres {
			role = newRole(t, url)
			for _, stmt := range []string{"GRANT USAGE ON SCHEMA " + pgx.Identifier{searchPathOf(t, c)}.Sanitize() + " TO " + role,
				"GRANT SELECT ON leads_deidentified TO " + role} {
				if _, err := c.w.ExecContext(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
		}
		// withPII counts the rows of leads_deidentified with an email, as the warehouse's
		// owner and as the analyst granted it before the upgrade.
		withPII := func(want int) {
			t.Helper()
			const q = `SELECT count(*) FROM leads_deidentified WHERE email IS NOT NULL`
			var n int
			if err := c.r.GetContext(ctx, &n, q); err != nil || n != want {
				t.Errorf("leads_deidentified: %d rows with PII, %v; want %d", n, err, want)
			}
			if role == "" {
				return
			}
			if err := connAs(t, url, role).QueryRow(ctx, q).Scan(&n); err != nil || n != want {
				t.Errorf("analyst reading leads_deidentified: %d rows with PII, %v; want %d", n, err, want)
			}
		}
		withPII(1) // 00004's view: only the HIPAA lead withheld

		if _, err := c.migrations.Goose.UpTo(ctx, 5); err != nil {
			t.Fatalf("migrate up to 5: %v", err)
		}
		withPII(0)
		var n int
		if err := c.r.GetContext(ctx, &n, `SELECT count(*) FROM leads_pii WHERE email IS NOT NULL`); err != nil || n != 1 {
			t.Errorf("leads_pii: %d leads with an email, %v; want the one not HIPAA-protected", n, err)
		}

		if _, err := c.migrations.Goose.DownTo(ctx, 4); err != nil {
			t.Fatalf("migrate down to 4: %v", err)
		}
		withPII(1)
		for _, gone := range []string{"leads_shareable", "leads_pii", "lead_counts_by_week"} {
			if _, err := c.r.ExecContext(ctx, "SELECT 1 FROM "+gone); err == nil {
				t.Errorf("%s survived the down migration", gone)
			}
		}
		if _, err := c.migrations.Goose.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
		withPII(0)
	})
}

// searchPathOf is the warehouse's PostgreSQL schema.
func searchPathOf(t *testing.T, c *core) string {
	t.Helper()
	var schema string
	if err := c.r.GetContext(t.Context(), &schema, `SELECT current_schema()`); err != nil {
		t.Fatal(err)
	}
	return schema
}

// TestLeadIndexes: the analysts' usual filters on leads (by creation or update time, an
// account's leads over a period, and on PostgreSQL a tag) are served by an index.
func TestLeadIndexes(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		seedWarehouse(t, b)
		cases := []struct{ where, index string }{
			{`created_at >= '2026-01-01'`, "leads_created_at"},
			{`updated_at >= '2026-01-01'`, "leads_updated_at"},
			{`source = 'localiq' AND account_id = 'USA_1' AND created_at >= '2026-01-01'`, "leads_account_created_at"},
		}
		if b.c.dialect == DialectPostgres {
			cases = append(cases, struct{ where, index string }{`tags @> '["vip"]'`, "leads_tags"})
		}
		for _, tc := range cases {
			plan := b.queryPlan(t, "SELECT lead_id FROM leads WHERE "+tc.where)
			if !strings.Contains(plan, " "+tc.index) {
				t.Errorf("WHERE %s: plan does not use %s:\n%s", tc.where, tc.index, plan)
			}
		}
	})
}

// queryPlan is the database's plan for query. PostgreSQL is told to avoid sequential scans,
// which it prefers on a table as small as a test's whatever the indexes.
func (b *bundle) queryPlan(t *testing.T, query string) string {
	t.Helper()
	tx, err := b.c.r.BeginTxx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var lines []string
	if b.c.dialect == DialectSQLite {
		var rows []struct {
			ID      int    `db:"id"`
			Parent  int    `db:"parent"`
			NotUsed int    `db:"notused"`
			Detail  string `db:"detail"`
		}
		if err = tx.SelectContext(b.ctx, &rows, `EXPLAIN QUERY PLAN `+query); err == nil {
			for _, r := range rows {
				lines = append(lines, r.Detail)
			}
		}
	} else if _, err = tx.ExecContext(b.ctx, `SET LOCAL enable_seqscan = off`); err == nil {
		err = tx.SelectContext(b.ctx, &lines, `EXPLAIN `+query)
	}
	if err != nil {
		t.Fatalf("plan of %s: %v", query, err)
	}
	return strings.Join(lines, "\n")
}

// stream_freshness: per source and stream, restricted accounts left out, failures counted,
// data_as_of the oldest last success, and NULL while an account never succeeded.
func TestStreamFreshness(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		old, recent := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
		for _, r := range []struct {
			account, stream, outcome string
			okAt                     time.Time
		}{
			{"A1", "interactions", "ok", recent},
			{"A2", "interactions", "failed", old}, // failed since its last success
			{"A3", "interactions", "restricted", time.Time{}},
			{"A1", "daily_counts", "ok", recent},
			{"A2", "daily_counts", "failed", time.Time{}}, // never succeeded
		} {
			if _, err := b.c.w.ExecContext(b.ctx, b.c.q(`INSERT INTO sync_state (source, account_id, stream, cursor, updated_at,
    last_outcome, last_ok_at) VALUES ('localiq', ?, ?, '', ?, ?, ?)`), r.account, r.stream, b.c.ts(recent), r.outcome, b.c.ts(r.okAt)); err != nil {
				t.Fatal(err)
			}
		}
		var rows []struct {
			Stream   string   `db:"stream"`
			Accounts int      `db:"accounts"`
			Failing  int      `db:"failing_accounts"`
			AsOf     nullTime `db:"data_as_of"`
			Last     nullTime `db:"last_synced_at"`
		}
		if err := b.c.r.SelectContext(b.ctx, &rows, `SELECT stream, accounts, failing_accounts, data_as_of, last_synced_at
FROM stream_freshness WHERE source = 'localiq' ORDER BY stream`); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows, want 2: %+v", len(rows), rows)
		}
		dc, in := rows[0], rows[1]
		if dc.Stream != "daily_counts" || dc.Accounts != 2 || dc.Failing != 1 || !dc.AsOf.IsZero() || !dc.Last.Equal(recent) {
			t.Errorf("daily_counts: %+v, want 2 accounts, 1 failing, no data_as_of (one never synced), last %v", dc, recent)
		}
		if in.Stream != "interactions" || in.Accounts != 2 || in.Failing != 1 || !in.AsOf.Equal(old) || !in.Last.Equal(recent) {
			t.Errorf("interactions: %+v, want 2 accounts (the restricted one left out), 1 failing, data_as_of %v, last %v", in, old, recent)
		}
	})
}
