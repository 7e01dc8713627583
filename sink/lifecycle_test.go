package sink

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

func testDeal(id, stage string) sources.Deal {
	return sources.Deal{
		ID: id, ContactID: "c-" + id, Name: "Ada Lovelace - Roof", PipelineID: "p1", StageID: stage,
		Status: "open", StatusCategory: sources.StatusOpen, Value: 1500.5, AssignedTo: "u1", LeadSource: "facebook",
		CreatedAt: t0, UpdatedAt: t0.Add(time.Hour),
		CustomValues: map[string]json.RawMessage{"f-budget": json.RawMessage(`"5000"`), "f-rooms": json.RawMessage(`3`)},
		Raw:          json.RawMessage(`{"id":"` + id + `","contact":{"email":"ada@example.com"}}`),
	}
}

func (b *bundle) dealPage(t *testing.T, run RunID, full bool, deals ...sources.Deal) WriteResult {
	t.Helper()
	return b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "opportunities",
		Deals: deals, FullPass: full})
}

// stageInterval is a row of deal_stage_intervals.
type stageInterval struct {
	Stage   string   `db:"stage_id"`
	Entered nullTime `db:"entered_at"`
	Left    nullTime `db:"left_at"`
}

// A deal moved through three stages between syncs has three history rows, and the
// intervals view gives the time spent in each: on both dialects.
func TestDealStageHistory(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		start := b.clock.Stored()
		for i, stage := range []string{"s1", "s2", "s3"} {
			run := b.run(t)
			d := testDeal("d1", stage)
			d.UpdatedAt = t0.Add(time.Duration(i+1) * time.Hour)
			res := b.dealPage(t, run, false, d, testDeal("d2", "s1"))
			wantRows := 1
			if i == 0 {
				wantRows = 2
			}
			if res.Rows != wantRows || res.RowsUnchanged != 2-wantRows {
				t.Fatalf("sync %d: %+v, want %d rows written", i, res, wantRows)
			}
			// The same page again changes nothing, and adds no history.
			if res := b.dealPage(t, run, false, d, testDeal("d2", "s1")); res.Rows != 0 || res.RowsUnchanged != 2 {
				t.Fatalf("sync %d repeated: %+v", i, res)
			}
			b.clock.Advance(time.Duration(i+2) * time.Hour) // 2 h in s1, 3 h in s2
		}
		var rows []stageInterval
		if err := b.c.r.SelectContext(b.ctx, &rows, `SELECT stage_id, entered_at, left_at FROM deal_stage_intervals
WHERE deal_id = 'd1' ORDER BY entered_at`); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Fatalf("history of d1: %d rows, want 3: %+v", len(rows), rows)
		}
		want := []struct {
			stage   string
			entered time.Duration
			in      time.Duration // 0: still there
		}{{"s1", 0, 2 * time.Hour}, {"s2", 2 * time.Hour, 3 * time.Hour}, {"s3", 5 * time.Hour, 0}}
		for i, w := range want {
			r := rows[i]
			if r.Stage != w.stage || !r.Entered.Equal(start.Add(w.entered)) {
				t.Errorf("row %d: %s entered %v, want %s at %v", i, r.Stage, r.Entered.Time, w.stage, start.Add(w.entered))
			}
			switch {
			case w.in == 0 && r.Left.Valid():
				t.Errorf("row %d: the current stage has left_at %v", i, r.Left.Time)
			case w.in != 0 && r.Left.Sub(r.Entered.Time) != w.in:
				t.Errorf("row %d: %v in %s, want %v", i, r.Left.Sub(r.Entered.Time), r.Stage, w.in)
			}
		}
		// The time-in-stage query of docs/analysts.md, in hours.
		var hours float64
		q := `SELECT sum((julianday(left_at) - julianday(entered_at)) * 24) FROM deal_stage_intervals WHERE stage_id = 's2'`
		if b.c.dialect == DialectPostgres {
			q = `SELECT sum(extract(epoch FROM left_at - entered_at) / 3600) FROM deal_stage_intervals WHERE stage_id = 's2'`
		}
		if err := b.c.r.GetContext(b.ctx, &hours, q); err != nil {
			t.Fatal(err)
		}
		if math.Abs(hours-3) > 1e-6 {
			t.Errorf("hours in s2 = %v, want 3", hours)
		}
		var n int
		if err := b.c.r.GetContext(b.ctx, &n, `SELECT count(*) FROM opportunity_stage_history WHERE deal_id = 'd2'`); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("d2 never changed stage: %d history rows, want 1", n)
		}
	})
}

// A complete full pass soft-deletes the deals and dictionary entries it did not see, of its
// own stream only; the shareable view withholds the PII columns; custom values decode by
// field name.
func TestLifecycleFullPassAndViews(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		b.dealPage(t, run, false, testDeal("d1", "s1"), testDeal("d2", "s1"), testDeal("d3", "s2"))
		b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "custom_fields",
			Dictionary: []sources.DictEntry{
				{Kind: sources.DictCustomField, ID: "f-budget", Name: "Budget", DataType: "MONETORY", Category: "opportunity"},
				{Kind: sources.DictCustomField, ID: "f-rooms", Name: "Rooms", DataType: "NUMERICAL", Category: "opportunity"},
			}})
		b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "pipelines",
			Dictionary: []sources.DictEntry{
				{Kind: sources.DictPipeline, ID: "p1", Name: "Sales"},
				{Kind: sources.DictStage, ID: "s1", ParentID: "p1", Name: "New", Position: 0},
				{Kind: sources.DictStage, ID: "s2", ParentID: "p1", Name: "Won", Position: 1},
			}})
		if err := b.s.FinishRun(b.ctx, run, RunOK, RunStats{}, nil); err != nil {
			t.Fatal(err)
		}

		var values []struct {
			Name  string `db:"field_name"`
			Value string `db:"value"`
		}
		if err := b.c.r.SelectContext(b.ctx, &values, `SELECT field_name, value FROM custom_field_values
WHERE record_id = 'd1' ORDER BY field_name`); err != nil {
			t.Fatal(err)
		}
		if len(values) != 2 || values[0].Name != "Budget" || values[0].Value != "5000" || values[1].Value != "3" {
			t.Errorf("custom values of d1: %+v", values)
		}
		var stages int
		if err := b.c.r.GetContext(b.ctx, &stages, `SELECT count(*) FROM pipeline_stages WHERE pipeline_name = 'Sales'`); err != nil {
			t.Fatal(err)
		}
		if stages != 2 {
			t.Errorf("pipeline_stages of Sales: %d, want 2", stages)
		}

		b.clock.Advance(time.Hour)
		full := b.run(t)
		b.dealPage(t, full, true, testDeal("d1", "s1"), testDeal("d3", "s2"))
		n, err := b.s.FinishFullPass(b.ctx, full, sources.LeadConnector, "L1", "opportunities")
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("full pass of opportunities deleted %d, want 1 (d2)", n)
		}
		var live []string
		if err := b.c.r.SelectContext(b.ctx, &live, `SELECT deal_id FROM deals_shareable ORDER BY deal_id`); err != nil {
			t.Fatal(err)
		}
		if len(live) != 2 || live[0] != "d1" || live[1] != "d3" {
			t.Errorf("live deals after the pass: %v", live)
		}
		var dict int
		if err := b.c.r.GetContext(b.ctx, &dict, `SELECT count(*) FROM crm_dictionary WHERE deleted_at IS NULL`); err != nil {
			t.Fatal(err)
		}
		if dict != 5 {
			t.Errorf("another stream's pass deleted dictionary entries: %d live, want 5", dict)
		}
		// A pass of the pipelines stream that no longer sees stage s2.
		b.write(t, PageWrite{Run: full, Source: sources.LeadConnector, Account: "L1", Stream: "pipelines", FullPass: true,
			Dictionary: []sources.DictEntry{
				{Kind: sources.DictPipeline, ID: "p1", Name: "Sales"},
				{Kind: sources.DictStage, ID: "s1", ParentID: "p1", Name: "New", Position: 0},
			}})
		if n, err := b.s.FinishFullPass(b.ctx, full, sources.LeadConnector, "L1", "pipelines"); err != nil || n != 1 {
			t.Errorf("full pass of pipelines deleted %d (%v), want 1 (stage s2)", n, err)
		}
	})
}

// Campaign cycles are overwritten with the vendor's latest, and a repeated key in a page is
// written once.
func TestCampaignCyclesOverwrite(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		day := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		c := sources.CampaignCycle{CampaignID: "C1", CycleID: "Y1", CampaignName: "Spring search", Start: day,
			Spend: 120.25, Budget: 500, Clicks: 40, Leads: 7}
		later := c
		later.Spend, later.Leads = 180.5, 9
		res := b.write(t, PageWrite{Run: run, Source: sources.LocaliQ, Account: "A1", Stream: "campaign_cycles",
			Cycles: []sources.CampaignCycle{c, later}})
		if res.Rows != 1 {
			t.Errorf("rows = %d, want 1", res.Rows)
		}
		var got struct {
			Spend float64  `db:"spend"`
			Leads int64    `db:"leads"`
			Start nullTime `db:"start_day"`
			End   nullTime `db:"end_day"`
		}
		if err := b.c.r.GetContext(b.ctx, &got, `SELECT spend, leads, start_day, end_day FROM campaign_cycles`); err != nil {
			t.Fatal(err)
		}
		if got.Spend != 180.5 || got.Leads != 9 || !got.Start.Equal(day) || got.End.Valid() {
			t.Errorf("stored cycle: %+v", got)
		}
	})
}

// Rows without an id and submissions of an unknown kind are quarantined, never stored.
func TestLifecycleQuarantine(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		res := b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "form_submissions",
			Submissions: []sources.Submission{
				{ID: "s1", Kind: sources.SubmissionForm, Email: "ada@example.com", Attribution: sources.Attribution{UTMSource: "google"}},
				{ID: "", Kind: sources.SubmissionForm},
				{ID: "s3", Kind: "poll"},
			}})
		if res.Rows != 1 || res.Rejected != 2 {
			t.Errorf("result %+v, want 1 row and 2 rejected", res)
		}
		// Composite keys need every part.
		res = b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "custom_fields",
			Dictionary: []sources.DictEntry{{Kind: sources.DictCustomField, ID: "f1"}, {Kind: sources.DictCustomField}}})
		if res.Rows != 1 || res.Rejected != 1 {
			t.Errorf("dictionary: %+v, want 1 row and the entry without an id rejected", res)
		}
		res = b.write(t, PageWrite{Run: run, Source: sources.LocaliQ, Account: "A1", Stream: "campaign_cycles",
			Cycles: []sources.CampaignCycle{{CampaignID: "C1", CycleID: "Y1"}, {CampaignID: "C1"}, {CycleID: "Y2"}}})
		if res.Rows != 1 || res.Rejected != 2 {
			t.Errorf("cycles: %+v, want 1 row and 2 rejected", res)
		}
		var utm string
		if err := b.c.r.GetContext(b.ctx, &utm, `SELECT utm_source FROM submissions_shareable WHERE submission_id = 's1'`); err != nil {
			t.Fatal(err)
		}
		if utm != "google" {
			t.Errorf("utm_source = %q", utm)
		}
	})
}

// A deal the database refuses is quarantined alone: the page is written again row by row,
// and the other deals, their history and the cursor commit.
func TestRefusedDealIsQuarantinedAlone(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		deals := []sources.Deal{testDeal("a", "s1"), testDeal("refused", "s1"), testDeal("c", "s1")}
		if b.c.dialect == DialectSQLite {
			shrinkSQLiteLength(t, b, 4000)
			deals[1].Raw = json.RawMessage(`{"note":"` + strings.Repeat("x", 5000) + `"}`)
		} else {
			deals[1].CreatedAt = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		run := b.run(t)
		res := b.write(t, PageWrite{Run: run, Source: sources.LeadConnector, Account: "L1", Stream: "opportunities",
			Deals: deals, Next: "c1", FullPass: true})
		if res.Rows != 2 || res.Rejected != 1 {
			t.Errorf("WritePage = %+v, want 2 rows and 1 rejected", res)
		}
		if n := b.count(t, `SELECT count(*) FROM opportunity_stage_history`); n != 2 {
			t.Errorf("history rows = %d, want 2", n)
		}
		if n := b.count(t, `SELECT count(*) FROM rejected_records WHERE record_id = 'refused'`); n != 1 {
			t.Errorf("quarantined = %d, want 1", n)
		}
		// The refused deal counts as seen: the vendor still has it.
		if n, err := b.s.FinishFullPass(b.ctx, run, sources.LeadConnector, "L1", "opportunities"); err != nil || n != 0 {
			t.Errorf("FinishFullPass = %d, %v; want nothing deleted", n, err)
		}
	})
}

// FullPassMissing lists a deals stream's missing deals, for a source that confirms them.
func TestFullPassMissingDeals(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.dealPage(t, b.run(t), false, testDeal("d1", "s1"), testDeal("d2", "s1"), testDeal("d3", "s1"))
		b.clock.Advance(time.Hour)
		full := b.run(t)
		b.dealPage(t, full, true, testDeal("d2", "s1"))
		missing, err := b.s.FullPassMissing(b.ctx, full, sources.LeadConnector, "L1", "opportunities")
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 2 || missing[0] != "d1" || missing[1] != "d3" {
			t.Errorf("missing = %v, want [d1 d3]", missing)
		}
	})
}

// The guide's median-time-in-stage query, on the seeded warehouse: deal o1 spent 1 h in New
// and 2 h in Quoted (o2 never left New: it does not count).
func TestDocMedianTimeInStage(t *testing.T) {
	t.Parallel()
	queries := docQueries(t)
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		b.clock.t = time.Now().UTC()
		seedWarehouse(t, b)
		var q string
		for _, d := range queries {
			if d.runsOn(b.c.dialect) && strings.Contains(d.sql, "median_hours") {
				q = d.sql
			}
		}
		if q == "" {
			t.Fatal("docs/analysts.md has no median time-in-stage query for this dialect")
		}
		var rows []struct {
			Source   string  `db:"source"`
			Account  string  `db:"account_id"`
			Pipeline *string `db:"pipeline_name"`
			Stage    *string `db:"stage_name"`
			StageID  string  `db:"stage_id"`
			Median   float64 `db:"median_hours"`
			Deals    int     `db:"deals"`
		}
		if err := b.c.r.SelectContext(b.ctx, &rows, q); err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, r := range rows {
			got[*r.Stage] = r.Median
		}
		if len(got) != 2 || got["New"] != 1 || got["Quoted"] != 2 {
			t.Errorf("median hours by stage: %v, want New 1 and Quoted 2", got)
		}
	})
}
