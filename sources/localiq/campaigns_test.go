package localiq

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// staticTokens hands out one access token of the fake, which lives longer than a test.
type staticTokens struct{ tok *oauth2.Token }

func (s staticTokens) Token(context.Context) (*oauth2.Token, error)       { return s.tok, nil }
func (staticTokens) Invalidate(*oauth2.Token)                             {}
func (s staticTokens) Grant() sources.Credentials                         { return s }
func (s staticTokens) Account(string, sources.Minter) sources.Credentials { return s }

type cycleBundle struct {
	fake *liqtest.Server
	src  *Source
}

var cycleT0 = time.Date(2026, 3, 10, 15, 4, 5, 0, time.UTC)

// setupCycles starts a fake on a manual clock, without rate limits, and a source on it.
func setupCycles(t *testing.T, opts liqtest.Options) *cycleBundle {
	t.Helper()
	opts.Clock = simkit.NewManualClock(cycleT0)
	opts.RateLimit = -1
	fake := liqtest.NewServer(opts)
	t.Cleanup(fake.Close)
	p := fake.Authorize("")
	src, err := New(Config{BaseURL: fake.URL, User: fake.Options().SandboxUser, RateLimit: 1000},
		staticTokens{&oauth2.Token{AccessToken: p.Access, Expiry: p.Expiry}})
	if err != nil {
		t.Fatal(err)
	}
	return &cycleBundle{fake: fake, src: src}
}

// read runs the stream as the worker runs a full-refresh stream: from an empty cursor.
func (b *cycleBundle) read(t *testing.T, acct sources.Account) ([]sources.Page, error) {
	t.Helper()
	var pages []sources.Page
	for p, err := range b.src.Read(context.Background(), acct, StreamCampaignCycles, "", sources.ReadOptions{Full: true}) {
		if err != nil {
			return pages, err
		}
		pages = append(pages, p)
	}
	return pages, nil
}

func (b *cycleBundle) accounts(t *testing.T) []sources.Account {
	t.Helper()
	var out []sources.Account
	for a, err := range b.src.Accounts(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func date0(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	d, err := time.Parse(dateLayout, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeCycles are the fake's reported cycles of gmaid as the stream must map them.
func (b *cycleBundle) fakeCycles(t *testing.T, gmaid string) map[string]sources.CampaignCycle {
	t.Helper()
	cs, err := b.fake.Campaigns(gmaid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]sources.CampaignCycle{}
	for _, c := range cs {
		if !c.Reported {
			continue
		}
		for _, cy := range c.Cycles {
			out[c.ID+"/"+cy.ID] = sources.CampaignCycle{CampaignID: c.ID, CycleID: cy.ID, CampaignName: c.Name,
				CampaignType: c.Type, Channel: c.Source, Status: c.Status, Currency: c.Currency,
				Start: date0(t, cy.Start), End: date0(t, cy.End), Spend: cy.Spend, Budget: cy.Budget,
				Impressions: cy.Impressions, Clicks: cy.Clicks, Leads: cy.Leads}
		}
	}
	return out
}

func TestCampaignCyclesStream(t *testing.T) {
	t.Parallel()
	src, err := New(Config{User: "u@example.com"}, staticTokens{})
	if err != nil {
		t.Fatal(err)
	}
	st := src.Streams()
	if last := st[len(st)-1]; last != (sources.Stream{Name: "campaign_cycles", Mode: sources.FullRefresh, Table: sources.TableCampaignCycles}) ||
		st[0].Name != StreamInteractions || st[1].Name != StreamDailyCounts {
		t.Fatalf("streams %+v", st)
	}
}

// TestCampaignCyclesEqualTheFakesTruth: one request per advertiser reads every cycle of the
// report, HIPAA-restricted advertisers included, with the report's figures.
func TestCampaignCyclesEqualTheFakesTruth(t *testing.T) {
	t.Parallel()
	b := setupCycles(t, liqtest.Options{Advertisers: 8, RestrictAllHIPAA: true, InteractionsPerAdvertiser: 300})
	truth := map[string][]string{}
	for _, at := range b.fake.GroundTruth() {
		for _, r := range at.Records {
			if r.Table == sources.TableCampaignCycles {
				truth[at.AccountID] = append(truth[at.AccountID], r.ID)
			}
		}
	}
	hipaa, leads := 0, int64(0)
	accts := b.accounts(t)
	for _, acct := range accts {
		pages, err := b.read(t, acct)
		if err != nil || len(pages) != 1 {
			t.Fatalf("%s: %d pages, %v", acct.ID, len(pages), err)
		}
		p := pages[0]
		if len(p.Rejected) != 0 || len(p.Leads) != 0 || len(p.Counts) != 0 || p.Next != `{"report_date":"2026-03-10"}` {
			t.Fatalf("%s: page %d rejected, %d leads, %d counts, next %s", acct.ID, len(p.Rejected), len(p.Leads), len(p.Counts), p.Next)
		}
		want := b.fakeCycles(t, acct.ID)
		var ids []string
		for _, c := range p.Cycles {
			id := c.CampaignID + "/" + c.CycleID
			ids = append(ids, id)
			if c != want[id] {
				t.Errorf("%s cycle %s:\n got %+v\nwant %+v", acct.ID, id, c, want[id])
			}
			if c.Start.Location() != time.UTC || c.Start.Hour() != 0 || c.Calls != 0 {
				t.Errorf("%s cycle %s: start %v, calls %d", acct.ID, id, c.Start, c.Calls)
			}
			leads += c.Leads
		}
		slices.Sort(ids)
		if len(ids) == 0 || !slices.Equal(ids, truth[acct.ID]) {
			t.Errorf("%s: read %v, truth %v", acct.ID, ids, truth[acct.ID])
		}
		if acct.HIPAAProtected {
			hipaa++
			_, err := b.src.interactions(context.Background(), acct, cycleT0.AddDate(0, 0, -1), cycleT0, 1)
			if re := (*sources.RestrictedError)(nil); !errors.As(err, &re) {
				t.Fatalf("HIPAA advertiser %s interactions: %v", acct.ID, err)
			}
		}
	}
	if hipaa == 0 || leads == 0 {
		t.Fatalf("%d HIPAA advertisers, %d leads in all cycles", hipaa, leads)
	}
	if n := b.fake.Counters().Requests("client_reports/campaigns_overview", 0); n != int64(len(accts)) {
		t.Fatalf("%d report requests for %d advertisers", n, len(accts))
	}
}

// TestCampaignCyclesNextRunReadsChanges: a changed spend and an added cycle are in the next
// run's page.
func TestCampaignCyclesNextRunReadsChanges(t *testing.T) {
	t.Parallel()
	b := setupCycles(t, liqtest.Options{})
	acct := b.accounts(t)[0]
	first, err := b.read(t, acct)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := b.fake.Campaigns(acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	run := cs[0]
	changed := run.Cycles[0]
	if err := b.fake.SetCycleSpend(acct.ID, changed.ID, changed.Spend+41.25); err != nil {
		t.Fatal(err)
	}
	added, err := b.fake.AddCycle(acct.ID, run.ID, liqtest.NewCycle{Start: "2026-04-06", Budget: 900, Spend: 3.5, Clicks: 2, Impressions: 80})
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.read(t, acct)
	if err != nil {
		t.Fatal(err)
	}
	find := func(p sources.Page, id string) (sources.CampaignCycle, bool) {
		i := slices.IndexFunc(p.Cycles, func(c sources.CampaignCycle) bool { return c.CampaignID == run.ID && c.CycleID == id })
		if i < 0 {
			return sources.CampaignCycle{}, false
		}
		return p.Cycles[i], true
	}
	before, _ := find(first[0], changed.ID)
	after, _ := find(second[0], changed.ID)
	if before.Spend != changed.Spend || after.Spend != changed.Spend+41.25 {
		t.Fatalf("spend %v, then %v (changed from %v)", before.Spend, after.Spend, changed.Spend)
	}
	got, ok := find(second[0], added)
	if _, was := find(first[0], added); was || !ok || got.Spend != 3.5 || got.Budget != 900 || !got.Start.Equal(date0(t, "2026-04-06")) || !got.End.IsZero() {
		t.Fatalf("added cycle: %+v (found %v)", got, ok)
	}
	if len(second[0].Cycles) != len(first[0].Cycles)+1 {
		t.Fatalf("%d cycles, then %d", len(first[0].Cycles), len(second[0].Cycles))
	}
}

func TestCampaignCyclesForbiddenIsRestricted(t *testing.T) {
	t.Parallel()
	b := setupCycles(t, liqtest.Options{})
	_, err := b.read(t, sources.Account{Source: sources.LocaliQ, ID: "USA_999999999", HIPAAProtected: true})
	var re *sources.RestrictedError
	if !errors.As(err, &re) || re.Stream != StreamCampaignCycles || re.Access() != sources.AccessHIPAARestricted || len(re.Fields) != 0 {
		t.Fatalf("403: %v", err)
	}
}

func TestDecodeOverviewLeniently(t *testing.T) {
	t.Parallel()
	body := `{"report_type":"campaigns_overview","report_date":"2020-11-05","currency":"USD","report_data":{"campaigns":[
		{"name":"Email Campaign (Demo)","global_master_campaign_id":"TEST_7025","type":"email","source":"Targeted Email",
		 "start_date":"2020-10-15","end_date":null,"status":"running","cycles":[
			{"campaign_cycle":"TEST_7034","start_date":"2020-10-15","end_date":"2020-11-03","clicks":731,"leads":631,"spend":500.0,"budget":500.0,"opens":1449},
			{"campaign_cycle":7035,"start_date":"2020-11-04T00:00:00-08:00","end_date":null,"impressions":"3568","clicks":" 56 ","leads":null,"spend":"75.50","budget":"500"},
			{"campaign_cycle":"TEST_7036","start_date":"","impressions":{},"clicks":[1],"leads":"n/a","spend":"lots","budget":true},
			{"start_date":"2020-10-15","spend":12},
			{"campaign_cycle":"","spend":1},
			7,
			{"campaign_cycle":"TEST_7034","start_date":"2020-10-15","end_date":"2020-11-03","clicks":732,"leads":631,"spend":501.5,"budget":500.0}
		]},
		{"name":"Shopping Campaign (Demo)","global_master_campaign_id":"TEST_73432","type":"shopping","source":"Shopping",
		 "currency":"CAD","start_date":"2023-04-13","end_dat":null,"status":"running","cycles":[
			{"campaign_cycle":"TEST_73433","start_date":"2023-04-13","end_date":null,"impressions":0,"clicks":0,"leads":null,"spend":0.0,"budget":0.0}]},
		{"name":"No id","type":"search","cycles":[{"campaign_cycle":"X_1","spend":5}]},
		{"global_master_campaign_id":"TEST_9","cycles":{"campaign_cycle":"X_2"}},
		{"global_master_campaign_id":"TEST_10","cycles":null},
		"junk"
	],"totals":{"calls":1921}},"global_master_advertiser_id":"TEST_1"}`
	rep, err := decodeOverview([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) time.Time { return date0(t, s) }
	email := sources.CampaignCycle{CampaignID: "TEST_7025", CampaignName: "Email Campaign (Demo)", CampaignType: "email",
		Channel: "Targeted Email", Status: "running", Currency: "USD"}
	with := func(c sources.CampaignCycle, f func(*sources.CampaignCycle)) sources.CampaignCycle { f(&c); return c }
	want := []sources.CampaignCycle{
		// The repeated TEST_7034: the last copy, in the first one's place.
		with(email, func(c *sources.CampaignCycle) {
			c.CycleID, c.Start, c.End, c.Clicks, c.Leads, c.Spend, c.Budget = "TEST_7034", d("2020-10-15"), d("2020-11-03"), 732, 631, 501.5, 500
		}),
		with(email, func(c *sources.CampaignCycle) {
			c.CycleID, c.Start, c.Impressions, c.Clicks, c.Spend, c.Budget = "7035", d("2020-11-04"), 3568, 56, 75.5, 500
		}),
		with(email, func(c *sources.CampaignCycle) { c.CycleID = "TEST_7036" }),
		{CampaignID: "TEST_73432", CycleID: "TEST_73433", CampaignName: "Shopping Campaign (Demo)", CampaignType: "shopping",
			Channel: "Shopping", Status: "running", Currency: "CAD", Start: d("2023-04-13")},
	}
	if !slices.Equal(rep.Cycles, want) || rep.ReportDate != "2020-11-05" {
		t.Fatalf("cycles (report date %q):\n%+v\nwant\n%+v", rep.ReportDate, rep.Cycles, want)
	}
	var reasons []string
	for _, r := range rep.Rejected {
		reasons = append(reasons, r.ID+": "+r.Reason)
		if len(r.Raw) == 0 || !json.Valid(r.Raw) {
			t.Errorf("rejected %q without its record", r.Reason)
		}
	}
	if wantR := []string{
		": cycle of campaign TEST_7025 without campaign_cycle",
		": cycle of campaign TEST_7025 without campaign_cycle",
		": cycle of campaign TEST_7025 is not a JSON object",
		": campaign without global_master_campaign_id",
		"TEST_9: campaign cycles are not an array",
		": campaign is not a JSON object",
	}; !slices.Equal(reasons, wantR) {
		t.Fatalf("rejected %q", reasons)
	}
}

func TestDecodeOverviewRefusesOtherShapes(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `[]`, `"x"`, `{"report_data":[]}`, `{"report_data":{"campaigns":{}}}`,
		`{"report_data":{"campaigns":"none"}}`, `{"report_data":{"campaigns":[`} {
		if _, err := decodeOverview([]byte(body)); err == nil {
			t.Errorf("decodeOverview(%q) accepted", body)
		}
	}
	for _, body := range []string{`{}`, `{"report_data":null}`, `{"report_data":{}}`, `{"report_data":{"campaigns":[]}}`} {
		if rep, err := decodeOverview([]byte(body)); err != nil || len(rep.Cycles)+len(rep.Rejected) != 0 {
			t.Errorf("decodeOverview(%q) = %+v, %v", body, rep, err)
		}
	}
}
