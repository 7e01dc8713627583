package sink

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// answerViews are the views of migration 00009, with their columns in order.
var answerViews = map[string][]string{
	"lead_funnel": {"source", "account_id", "channel", "campaign", "leads", "with_deal", "won", "lost", "won_value"},
	"campaign_cost_per_lead": {"source", "account_id", "campaign_name", "spend", "budget", "vendor_leads", "synced_leads",
		"cost_per_lead", "vendor_cost_per_lead", "first_day", "last_day"},
	"lead_first_look": {"source", "account_id", "lead_id", "kind", "channel", "campaign", "created_at", "read_at",
		"hours_to_first_look", "archived_at"},
	"deal_time_in_stage": {"source", "account_id", "pipeline_id", "pipeline_name", "stage_id", "stage_name", "position",
		"deals", "avg_hours", "median_hours", "max_hours"},
}

// answerDays are the answer views' columns that hold days; their other time columns hold times.
var answerDays = []string{"first_day", "last_day"}

// answerRows reads every row of view as lines of its values joined by "|", sorted (the
// dialects order NULLs differently). Each value is written so that a dialect's type shows:
// integers as 3, floats as 3.0 or 0.3333333333333333 (every digit), times in the SQLite
// layout, days as YYYY-MM-DD, NULL as NULL.
func answerRows(t *testing.T, b *bundle, view string) (columns, lines []string) {
	t.Helper()
	rows, err := b.c.r.QueryContext(b.ctx, "SELECT * FROM "+view)
	if err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	defer rows.Close()
	if columns, err = rows.Columns(); err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals := make([]any, len(columns))
		ptrs := make([]any, len(columns))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("read %s: %v", view, err)
		}
		out := make([]string, len(columns))
		for i, v := range vals {
			out[i] = answerValue(t, columns[i], v)
		}
		lines = append(lines, strings.Join(out, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read %s: %v", view, err)
	}
	slices.Sort(lines)
	return columns, lines
}

func answerValue(t *testing.T, column string, v any) string {
	t.Helper()
	if bs, ok := v.([]byte); ok {
		v = string(bs)
	}
	if v == nil {
		return "NULL"
	}
	if strings.HasSuffix(column, "_at") || slices.Contains(answerDays, column) {
		var tm nullTime
		if err := tm.Scan(v); err != nil {
			t.Fatalf("%s: %v", column, err)
		}
		if slices.Contains(answerDays, column) {
			return tm.Format(time.DateOnly)
		}
		return tm.Format(tsLayout)
	}
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	t.Fatalf("%s: unexpected %T %v", column, v, v)
	return ""
}

// seedAnswers adds what the answer views need beyond seedWarehouse's data: leads whose
// deals are all lost, open and abandoned, or both won; a campaign of two ended cycles, and
// one with no leads at all; a lead looked at after 20 minutes (and archived) and one with no
// creation time; and a second pipeline whose stages four and three deals left, after whole
// hours and after hours and a third.
func seedAnswers(t *testing.T, b *bundle) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	run := b.run(t)
	write := func(w PageWrite) {
		t.Helper()
		w.Run = run
		if w.Stream == "" {
			w.Stream = testStream
		}
		_, err := b.s.WritePage(b.ctx, w)
		must(err)
	}
	created := b.clock.Now().Add(-2 * time.Hour)
	lead := func(src, acct, id, campaign string) sources.Lead {
		l := testLead(acct, id)
		l.Source, l.Campaign, l.CreatedAt = src, campaign, created
		return l
	}

	e, f, k := lead(sources.LeadConnector, "LOC1", "e", "autumn"), lead(sources.LeadConnector, "LOC1", "f", "autumn"),
		lead(sources.LeadConnector, "LOC1", "k", "autumn")
	write(PageWrite{Source: sources.LeadConnector, Account: "LOC1", Leads: []sources.Lead{e, f, k}})
	deal := func(id, contact, status string, value float64) sources.Deal {
		return sources.Deal{ID: id, ContactID: contact, PipelineID: "p1", StageID: "s1", Status: status,
			StatusCategory: status, Value: value, CreatedAt: created}
	}
	write(PageWrite{Source: sources.LeadConnector, Account: "LOC1", Stream: "opportunities", Deals: []sources.Deal{
		deal("o3", "e", sources.StatusLost, 250),
		deal("o4", "f", sources.StatusOpen, 0), deal("o5", "f", sources.StatusAbandoned, 90),
		deal("o6", "k", sources.StatusWon, 100.1), deal("o7", "k", sources.StatusWon, 0.2),
	}})

	g, h := lead(sources.LocaliQ, "USA_2", "g", "summer"), lead(sources.LocaliQ, "USA_2", "h", "summer")
	g.ReadAt, g.ArchivedAt = created.Add(20*time.Minute), created.Add(time.Hour)
	h.CreatedAt, h.ReadAt = time.Time{}, created.Add(2*time.Hour)
	write(PageWrite{Source: sources.LocaliQ, Account: "USA_2", Leads: []sources.Lead{g, h}})

	day := func(m time.Month, d int) time.Time { return time.Date(2026, m, d, 0, 0, 0, 0, time.UTC) }
	write(PageWrite{Source: sources.LocaliQ, Account: "USA_1", Stream: "campaign_cycles", Cycles: []sources.CampaignCycle{
		{CampaignID: "C2", CycleID: "Y1", CampaignName: "spring", Start: day(1, 1), End: day(1, 31), Spend: 100.1, Budget: 150, Leads: 2},
		{CampaignID: "C2", CycleID: "Y2", CampaignName: "spring", Start: day(2, 1), End: day(2, 28), Spend: 0.2, Budget: 150, Leads: 1},
		{CampaignID: "C3", CycleID: "Y1", CampaignName: "winter", Start: day(2, 10), Spend: 12.5, Budget: 20},
	}})

	must(b.s.UpsertAccount(b.ctx, sources.Account{Source: sources.LeadConnector, ID: "LOC2", Name: "Gutters"}))
	write(PageWrite{Source: sources.LeadConnector, Account: "LOC2", Stream: "pipelines", Dictionary: []sources.DictEntry{
		{Kind: sources.DictPipeline, ID: "p2", Name: "Service"},
		{Kind: sources.DictStage, ID: "q1", ParentID: "p2", Name: "Lead", Position: 0},
		{Kind: sources.DictStage, ID: "q2", ParentID: "p2", Name: "Demo", Position: 1},
		{Kind: sources.DictStage, ID: "q3", ParentID: "p2", Name: "Closed", Position: 2},
	}})
	moves := func(stage string, ids ...string) {
		t.Helper()
		var deals []sources.Deal
		for _, id := range ids {
			deals = append(deals, sources.Deal{ID: id, PipelineID: "p2", StageID: stage, Status: sources.StatusOpen,
				StatusCategory: sources.StatusOpen, CreatedAt: created})
		}
		write(PageWrite{Source: sources.LeadConnector, Account: "LOC2", Stream: "opportunities", Deals: deals})
	}
	moves("q1", "e1", "e2", "e3", "e4")
	for _, step := range []struct {
		after time.Duration
		deal  string
	}{{time.Hour, "e1"}, {time.Hour, "e2"}, {2 * time.Hour, "e3"}, {3 * time.Hour, "e4"}} {
		b.clock.Advance(step.after)
		moves("q2", step.deal)
	}
	b.clock.Advance(20 * time.Minute)
	moves("q3", "e1", "e2", "e3")
	must(b.s.FinishRun(b.ctx, run, RunOK, RunStats{AccountsOK: 4}, nil))
}

// TestAnswerViews: each view of migration 00009 gives the expected rows on the seeded
// warehouse, with the same columns, values and types on SQLite and PostgreSQL, and holds no
// PII column.
func TestAnswerViews(t *testing.T) {
	t.Parallel()
	// The seed's lead creation time (two days before the setup clock's, to the microsecond)
	// and seedAnswers' (two hours before the clock after seedWarehouse, which moves it by 3h2m).
	seeded := "2026-02-27T10:00:00.123456Z"
	later := "2026-03-01T13:02:00.123456Z"
	want := map[string][]string{
		"lead_funnel": {
			"leadconnector|LOC1|paid_search|autumn|3|3|1|1|100.3", // k won twice (100.1 + 0.2), e lost, f open
			"leadconnector|LOC1|paid_search|spring|1|1|1|0|1200.0",
			"localiq|USA_1|paid_search|spring|2|0|0|0|0.0",
			"localiq|USA_2|paid_search|spring|1|0|0|0|0.0", // old was deleted by the full pass
			"localiq|USA_2|paid_search|summer|2|0|0|0|0.0",
		},
		"campaign_cost_per_lead": {
			"localiq|USA_1|spring|100.3|300.0|3|2|50.15|33.43|2026-01-01|2026-02-28",
			"localiq|USA_1|winter|12.5|20.0|0|0|NULL|NULL|2026-02-10|NULL",
			"localiq|USA_2|spring|300.0|500.0|3|1|300.0|100.0|2026-02-27|NULL",
		},
		"lead_first_look": {
			"localiq|USA_2|c|call|paid_search|spring|" + seeded + "|2026-02-27T11:30:00.123456Z|1.5|NULL",
			"localiq|USA_2|g|call|paid_search|summer|" + later + "|2026-03-01T13:22:00.123456Z|0.3333333333333333|2026-03-01T14:02:00.123456Z",
			"localiq|USA_2|h|call|paid_search|summer|NULL|2026-03-01T15:02:00.123456Z|NULL|NULL",
		},
		"deal_time_in_stage": {
			"leadconnector|LOC1|p1|Sales|s1|New|0|1|1.0|1.0|1.0",
			"leadconnector|LOC1|p1|Sales|s2|Quoted|1|1|2.0|2.0|2.0",
			"leadconnector|LOC2|p2|Service|q1|Lead|0|4|3.5|3.0|7.0",                             // 1, 2, 4, 7 hours
			"leadconnector|LOC2|p2|Service|q2|Demo|1|3|5.0|5.333333333333333|6.333333333333333", // 3⅓, 5⅓, 6⅓ hours
		},
	}
	var (
		mu  sync.Mutex
		got = map[string]map[string][]string{} // dialect, view: lines
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		sqlite, pg := got[DialectSQLite], got[DialectPostgres]
		if sqlite == nil || pg == nil {
			return // a dialect failed, or was not run
		}
		for view := range answerViews {
			if !slices.Equal(sqlite[view], pg[view]) {
				t.Errorf("%s differs by dialect:\nsqlite   %q\npostgres %q", view, sqlite[view], pg[view])
			}
		}
	})
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		seedWarehouse(t, b)
		seedAnswers(t, b)
		lines := map[string][]string{}
		for view, columns := range answerViews {
			cols, rows := answerRows(t, b, view)
			if !slices.Equal(cols, columns) {
				t.Errorf("%s columns %v, want %v", view, cols, columns)
				continue
			}
			for _, c := range cols {
				if slices.Contains(sources.PIIFields, c) || slices.Contains([]string{"tags", "name", "custom_values", "answers"}, c) {
					t.Errorf("%s has the PII column %s", view, c)
				}
			}
			if !slices.Equal(rows, want[view]) {
				t.Errorf("%s rows:\n%s\nwant:\n%s", view, strings.Join(rows, "\n"), strings.Join(want[view], "\n"))
			}
			lines[view] = rows
		}
		if b.c.dialect == DialectPostgres {
			// Sums of bigint and round() are numeric on PostgreSQL: none may leak into a view.
			var numeric []string
			if err := b.c.r.SelectContext(b.ctx, &numeric, `SELECT table_name || '.' || column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name IN ('lead_funnel', 'campaign_cost_per_lead', 'lead_first_look',
    'deal_time_in_stage') AND data_type NOT IN ('text', 'bigint', 'integer', 'double precision', 'date', 'timestamp with time zone')`); err != nil {
				t.Fatal(err)
			}
			if len(numeric) > 0 {
				t.Errorf("columns of another type than text, integers, floats and times: %v", numeric)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		got[b.c.dialect] = lines
	})
}
