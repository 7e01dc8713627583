package sink

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// TestAnalystDocQueries runs every SQL block of docs/analysts.md on a seeded warehouse of
// each dialect and requires rows from each: the analysts' guide stays true. A block whose
// first line is "-- sqlite" or "-- postgres" runs on that dialect only; "-- admin" blocks
// are not run.
func TestAnalystDocQueries(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/analysts.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 12 {
		t.Fatalf("docs/analysts.md has %d SQL blocks, want at least a dozen", len(blocks))
	}
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.clock.t = time.Now().UTC()
		seedWarehouse(t, b)
		ran := 0
		for _, m := range blocks {
			query := m[1]
			first, _, _ := strings.Cut(query, "\n")
			switch {
			case strings.HasPrefix(first, "-- admin"),
				strings.HasPrefix(first, "-- sqlite") && b.c.dialect != DialectSQLite,
				strings.HasPrefix(first, "-- postgres") && b.c.dialect != DialectPostgres:
				continue
			}
			ran++
			rows, err := b.c.r.QueryContext(b.ctx, query)
			if err != nil {
				t.Errorf("doc query failed: %v\n%s", err, query)
				continue
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("doc query failed: %v\n%s", err, query)
			}
			rows.Close()
			if n == 0 {
				t.Errorf("doc query returned no rows on the seeded warehouse:\n%s", query)
			}
		}
		t.Logf("ran %d doc queries", ran)
		if ran < 12 {
			t.Errorf("ran %d doc queries, want at least 12", ran)
		}
	})
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
	must(b.s.FinishRun(ctx, pass, RunOK, RunStats{AccountsOK: 1, Requests: 2}, nil))
	_, err = b.s.WritePage(ctx, PageWrite{Run: run, Source: sources.LocaliQ, Account: "USA_1", Stream: "daily_counts",
		Counts: []sources.DailyCount{{Day: created.Truncate(24 * time.Hour), Kind: sources.KindCall, Count: 3}}})
	must(err)
	must(b.s.MarkRestricted(ctx, run, &sources.RestrictedError{Vendor: sources.LocaliQ, AccountID: "USA_3", HIPAA: true, Message: "You are not permitted to perform this action."}))
	for _, acct := range [][2]string{{sources.LocaliQ, "USA_1"}, {sources.LocaliQ, "USA_2"}, {sources.LeadConnector, "LOC1"}} {
		must(b.s.AccountSynced(ctx, run, acct[0], acct[1], nil))
	}
	b.clock.Advance(time.Minute)
	must(b.s.FinishRun(ctx, run, RunOK, RunStats{AccountsOK: 3, AccountsRestricted: 1, LeadsWritten: 6, Requests: 12, RecordsRejected: 1}, nil))
}
