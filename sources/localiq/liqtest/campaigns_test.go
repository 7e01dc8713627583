package liqtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// The campaigns_overview report against
// ../shared/vendor-docs/localiq/_campaigns_overview_report.md.erb.

const overviewPath = "/client_reports/campaigns_overview/"

// Documented keys: the envelope, a campaign (the field table plus the example's "end_dat"
// typo), a cycle.
var (
	envelopeKeys = []string{"report_type", "report_date", "start_date", "end_date", "time_zone", "currency",
		"report_data", "global_master_advertiser_id"}
	campaignKeys = []string{"name", "global_master_campaign_id", "type", "source", "currency", "start_date",
		"end_date", "end_dat", "status", "bidding_pricing_model_id", "cycles"}
	cycleKeys = []string{"campaign_cycle", "start_date", "end_date", "impressions", "clicks", "leads", "spend",
		"budget", "opens", "quantity", "views"}
	totalsKeys = []string{"impressions", "clicks", "calls", "emails", "web_events", "qualified_web_events", "chats"}
)

func keysWithin(t *testing.T, what string, m map[string]json.RawMessage, allowed []string, required ...string) {
	t.Helper()
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: undocumented key %q", what, k)
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no %q", what, k)
		}
	}
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	if len(raw) == 0 {
		return ""
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a string or null", raw)
	}
	if s == nil {
		return ""
	}
	return *s
}

func day(t *testing.T, what, s string) time.Time {
	t.Helper()
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		t.Fatalf("%s %q is not a date", what, s)
	}
	return d
}

type rawOverview struct {
	env       map[string]json.RawMessage
	campaigns []map[string]json.RawMessage
	totals    map[string]json.RawMessage
}

func (b *bundle) overview(t *testing.T, tok, gmaid string) rawOverview {
	t.Helper()
	r := b.get(t, overviewPath+gmaid, tok)
	if r.status != 200 {
		t.Fatalf("%s: %d %s", gmaid, r.status, r.body)
	}
	var o rawOverview
	o.env = decode[map[string]json.RawMessage](t, r)
	data := decode[map[string]json.RawMessage](t, resp{body: o.env["report_data"]})
	if err := json.Unmarshal(data["campaigns"], &o.campaigns); err != nil || o.campaigns == nil {
		t.Fatalf("report_data.campaigns: %v", err)
	}
	o.totals = decode[map[string]json.RawMessage](t, resp{body: data["totals"]})
	return o
}

func TestCampaignsOverviewHasTheDocumentedShape(t *testing.T) {
	t.Parallel()
	// No Agency Customer role anywhere: the report is PII-free and answers for every
	// advertiser, HIPAA-protected or inactive, while their interactions answer 403.
	b := setup(t, liqtest.Options{RestrictAllHIPAA: true, Advertisers: 8})
	tok := b.srv.Authorize("").Access
	seen := map[string]bool{}
	for _, a := range b.srv.Advertisers() {
		if a.HIPAAProtected {
			r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&created_after_date=2000-01-01&created_before_date=2100-01-01", tok)
			if r.status != 403 {
				t.Fatalf("HIPAA advertiser %s interactions: %d", a.GMAID, r.status)
			}
			seen["hipaa"] = true
		}
		o := b.overview(t, tok, a.GMAID)
		keysWithin(t, "envelope", o.env, envelopeKeys, envelopeKeys...)
		keysWithin(t, "totals", o.totals, totalsKeys, totalsKeys...)
		localToday := t0.In(time.FixedZone("", offsetOf(t, a.TimeZone))).Format("2006-01-02")
		wantCur := "USD"
		if strings.HasPrefix(a.GMAID, "CAN_") {
			wantCur = "CAD"
		}
		if got := []string{str(t, o.env["report_type"]), str(t, o.env["report_date"]), str(t, o.env["end_date"]),
			str(t, o.env["start_date"]), str(t, o.env["time_zone"]), str(t, o.env["currency"]), str(t, o.env["global_master_advertiser_id"])}; !slices.Equal(got, []string{"campaigns_overview", localToday, localToday,
			day(t, "report_date", localToday).AddDate(-1, 0, 0).Format("2006-01-02"), a.TimeZone, wantCur, a.GMAID}) {
			t.Fatalf("%s envelope %v", a.GMAID, got)
		}
		if len(o.campaigns) == 0 {
			t.Fatalf("%s: no campaigns", a.GMAID)
		}
		for _, c := range o.campaigns {
			what := a.GMAID + " campaign " + str(t, c["global_master_campaign_id"])
			keysWithin(t, what, c, campaignKeys, "name", "global_master_campaign_id", "type", "source", "start_date", "status", "cycles")
			_, end := c["end_date"]
			_, typo := c["end_dat"]
			if end == typo {
				t.Errorf("%s: end_date %v, end_dat %v", what, end, typo)
			}
			if typo {
				seen["end_dat"] = true
			}
			typ, status := str(t, c["type"]), str(t, c["status"])
			if !slices.Contains([]string{"running", "stopped", "ended"}, status) || (status == "ended") != (str(t, c["end_date"]) != "") {
				t.Errorf("%s: status %q, end_date %s", what, status, c["end_date"])
			}
			if _, ok := c["bidding_pricing_model_id"]; ok != (typ == "search") {
				t.Errorf("%s (%s): bidding_pricing_model_id present %v", what, typ, ok)
			}
			if _, ok := c["currency"]; ok {
				seen["campaign currency"] = true
			}
			if strings.HasPrefix(str(t, c["global_master_campaign_id"]), a.GMAID[:strings.Index(a.GMAID, "_")+1]) {
				seen["id prefix"] = true
			}
			start := day(t, what+" start_date", str(t, c["start_date"]))
			var cycles []map[string]json.RawMessage
			if err := json.Unmarshal(c["cycles"], &cycles); err != nil || len(cycles) == 0 {
				t.Fatalf("%s: cycles %v", what, err)
			}
			prevEnd := start.AddDate(0, 0, -1)
			for _, cy := range cycles {
				cw := what + " cycle " + str(t, cy["campaign_cycle"])
				keysWithin(t, cw, cy, cycleKeys, "campaign_cycle", "start_date", "end_date", "clicks", "leads", "spend", "budget")
				if s := day(t, cw+" start_date", str(t, cy["start_date"])); !s.Equal(prevEnd.AddDate(0, 0, 1)) {
					t.Errorf("%s starts %s, the previous cycle ended %s", cw, s.Format("2006-01-02"), prevEnd.Format("2006-01-02"))
				}
				if e := str(t, cy["end_date"]); e != "" {
					prevEnd = day(t, cw+" end_date", e)
				} else {
					seen["open cycle"] = true
				}
				for _, k := range []string{"spend", "budget", "clicks"} {
					var n json.Number
					if err := json.Unmarshal(cy[k], &n); err != nil {
						t.Errorf("%s: %s %s is not a number", cw, k, cy[k])
					}
				}
				if string(cy["budget"]) == "500.0" {
					seen["500.0"] = true
				}
				_, imp := cy["impressions"]
				_, opens := cy["opens"]
				if imp == (typ == "email") || opens != (typ == "email") {
					t.Errorf("%s (%s): impressions %v, opens %v", cw, typ, imp, opens)
				}
				if null := string(cy["leads"]) == "null"; null != (typ == "gannett_display" || typ == "shopping") {
					t.Errorf("%s (%s): leads %s", cw, typ, cy["leads"])
				}
			}
		}
	}
	for _, k := range []string{"hipaa", "end_dat", "campaign currency", "id prefix", "open cycle", "500.0"} {
		if !seen[k] {
			t.Errorf("no advertiser shows %s", k)
		}
	}
}

func TestCampaignsOverviewAuthAndLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{RateLimit: liqtest.DefaultRateLimit})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	if r := b.get(t, overviewPath+a.GMAID, ""); r.status != 401 || string(r.body) != `{"message":"Unauthorized"}` {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	if r := b.get(t, overviewPath+"USA_999999999", tok); r.status != 403 || string(r.body) != notAuthorized {
		t.Fatalf("unlinked advertiser: %d %s", r.status, r.body)
	}
	for range 19 { // the 403 above counts too: 20 in this second
		if r := b.get(t, overviewPath+a.GMAID, tok); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if r := b.get(t, overviewPath+a.GMAID, tok); r.status != 429 {
		t.Fatalf("21st request in a second: %d", r.status)
	}
	if n := b.srv.Counters().Requests("client_reports/campaigns_overview", 200); n != 19 {
		t.Fatalf("counted %d answered reports", n)
	}
}

// TestCampaignsOverviewLeavesOutTheYearBefore: "Campaign are limited to those that have had
// activity within the previous year", and the ground truth is the report's cycles.
func TestCampaignsOverviewLeavesOutTheYearBefore(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	tok := b.srv.Authorize("").Access
	truth := map[string][]string{}
	for _, at := range b.srv.GroundTruth() {
		for _, r := range at.Records {
			if r.Table != "campaign_cycles" {
				t.Fatalf("record of table %s", r.Table)
			}
			truth[at.AccountID] = append(truth[at.AccountID], r.ID)
		}
	}
	left := 0
	for _, a := range b.srv.Advertisers() {
		cs, err := b.srv.Campaigns(a.GMAID)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) < 2 || len(cs) > 5 {
			t.Fatalf("%s: %d campaigns", a.GMAID, len(cs))
		}
		o := b.overview(t, tok, a.GMAID)
		reportStart := day(t, "start_date", str(t, o.env["start_date"]))
		listed := map[string]bool{}
		var ids []string
		for _, c := range o.campaigns {
			listed[str(t, c["global_master_campaign_id"])] = true
			var cycles []struct {
				ID string `json:"campaign_cycle"`
			}
			_ = json.Unmarshal(c["cycles"], &cycles)
			for _, cy := range cycles {
				ids = append(ids, str(t, c["global_master_campaign_id"])+"/"+cy.ID)
			}
		}
		for _, c := range cs {
			if c.Reported != listed[c.ID] {
				t.Errorf("%s campaign %s: reported %v, listed %v", a.GMAID, c.ID, c.Reported, listed[c.ID])
			}
			if c.Reported {
				continue
			}
			left++
			last := day(t, "end_date", c.End)
			for _, cy := range c.Cycles {
				if cy.End == "" || day(t, "cycle end", cy.End).After(last) {
					t.Fatalf("left-out campaign %s has a later cycle %+v", c.ID, cy)
				}
			}
			if c.Status != "ended" || !last.Before(reportStart) {
				t.Errorf("campaign %s (%s, ended %s) left out of a report from %s", c.ID, c.Status, c.End, reportStart.Format("2006-01-02"))
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, truth[a.GMAID]) {
			t.Errorf("%s: report cycles %v, truth %v", a.GMAID, ids, truth[a.GMAID])
		}
	}
	if left == 0 {
		t.Fatal("no campaign left out")
	}
}

// TestCampaignLeadsAreTheCampaignsInteractions: a cycle's leads are the lead interactions
// carrying the campaign's name, created (the advertiser's date) within the cycle.
func TestCampaignLeadsAreTheCampaignsInteractions(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 400, AgencyCustomer: true})
	tok := b.srv.Authorize("").Access
	nonZero := 0
	for _, a := range b.srv.Advertisers() {
		if a.ActiveState == 0 {
			continue // its interactions answer 403
		}
		loc := time.FixedZone("", offsetOf(t, a.TimeZone))
		byName := map[string][]time.Time{}
		for n := 1; ; n++ {
			r := b.get(t, fmt.Sprintf("/crm/contact_interactions?global_master_advertiser_id=%s&created_after_date=2000-01-01&created_before_date=2100-01-01&page=%d", a.GMAID, n), tok)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if string(r.body) == "[]" {
				break
			}
			for _, raw := range decode[page](t, r).Interactions {
				it := decode[struct {
					Campaign string `json:"campaign_name"`
					Created  string `json:"created_at"`
					Contact  struct {
						Email string `json:"email"`
					} `json:"contact"`
				}](t, resp{body: raw})
				if it.Contact.Email == liqtest.NonLeadChatEmail {
					continue
				}
				at, err := time.Parse(time.RFC3339, it.Created)
				if err != nil {
					t.Fatal(err)
				}
				y, m, d := at.In(loc).Date()
				byName[it.Campaign] = append(byName[it.Campaign], time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
			}
		}
		o := b.overview(t, tok, a.GMAID)
		today := day(t, "report_date", str(t, o.env["report_date"]))
		for _, c := range o.campaigns {
			name := str(t, c["name"])
			if !slices.Contains(simkit.Campaigns, name) {
				t.Fatalf("campaign name %q is no interaction's campaign_name", name)
			}
			var cycles []struct {
				Start string `json:"start_date"`
				End   string `json:"end_date"`
				Leads *int   `json:"leads"`
			}
			_ = json.Unmarshal(c["cycles"], &cycles)
			for _, cy := range cycles {
				if cy.Leads == nil {
					continue
				}
				from, to := day(t, "start", cy.Start), today
				if cy.End != "" && day(t, "end", cy.End).Before(today) {
					to = day(t, "end", cy.End)
				}
				want := 0
				for _, d := range byName[name] {
					if !d.Before(from) && !d.After(to) {
						want++
					}
				}
				if *cy.Leads != want {
					t.Errorf("%s %s cycle %s..%s: leads %d, interactions %d", a.GMAID, name, cy.Start, cy.End, *cy.Leads, want)
				}
				if want > 0 {
					nonZero++
				}
			}
		}
	}
	if nonZero == 0 {
		t.Fatal("every cycle has zero leads")
	}
}

func TestCampaignMutationsThroughAdminAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	cs := decode[[]liqtest.Campaign](t, b.get(t, "/_admin/campaigns/"+a.GMAID, ""))
	direct, err := b.srv.Campaigns(a.GMAID)
	if err != nil || !reflect.DeepEqual(cs, direct) {
		t.Fatalf("admin listing differs from Campaigns(): %v", err)
	}
	run := cs[0] // the first campaign always runs
	if run.Status != "running" {
		t.Fatalf("first campaign %+v", run)
	}
	cycleOf := func(campaign, id string) map[string]json.RawMessage {
		for _, c := range b.overview(t, tok, a.GMAID).campaigns {
			if str(t, c["global_master_campaign_id"]) != campaign {
				continue
			}
			var cycles []map[string]json.RawMessage
			_ = json.Unmarshal(c["cycles"], &cycles)
			for _, cy := range cycles {
				if str(t, cy["campaign_cycle"]) == id {
					return cy
				}
			}
		}
		return nil
	}

	// A changed spend is in the next report.
	first := run.Cycles[0]
	if r := b.do(t, http.MethodPut, "/_admin/cycles/"+a.GMAID+"/"+first.ID+"/spend", "", map[string]float64{"spend": 1234.567}); r.status != 204 {
		t.Fatalf("set spend: %d %s", r.status, r.body)
	}
	if got := string(cycleOf(run.ID, first.ID)["spend"]); got != "1234.57" {
		t.Fatalf("spend after the change: %s", got)
	}

	// An added cycle follows the last one, which ends the day before if it was running.
	last := run.Cycles[len(run.Cycles)-1]
	r := b.do(t, http.MethodPost, "/_admin/campaigns/"+a.GMAID+"/"+run.ID+"/cycles", "", liqtest.NewCycle{Budget: 800, Spend: 12.5, Clicks: 3})
	added := decode[map[string]string](t, r)["campaign_cycle"]
	if r.status != 201 || added == "" {
		t.Fatalf("add cycle: %d %s", r.status, r.body)
	}
	cy := cycleOf(run.ID, added)
	wantStart := t0.In(time.FixedZone("", offsetOf(t, a.TimeZone))).Format("2006-01-02")
	if last.End != "" {
		wantStart = day(t, "end", last.End).AddDate(0, 0, 1).Format("2006-01-02")
	}
	if cy == nil || str(t, cy["start_date"]) != wantStart || string(cy["end_date"]) != "null" || string(cy["spend"]) != "12.5" || string(cy["budget"]) != "800.0" {
		t.Fatalf("added cycle %v, want start %s", cy, wantStart)
	}
	if prev := cycleOf(run.ID, last.ID); last.End == "" && str(t, prev["end_date"]) != day(t, "start", wantStart).AddDate(0, 0, -1).Format("2006-01-02") {
		t.Fatalf("the previously running cycle ends %s", prev["end_date"])
	}
	found := false
	for _, at := range b.srv.GroundTruth() {
		found = found || at.AccountID == a.GMAID && slices.ContainsFunc(at.Records, func(r simkit.RecordTruth) bool { return r.ID == run.ID+"/"+added })
	}
	if !found {
		t.Fatal("added cycle not in the ground truth")
	}

	// A cycle added to a campaign left out brings it back into the report.
	var old liqtest.Campaign
	for _, c := range cs {
		if !c.Reported {
			old = c
		}
	}
	if old.ID == "" {
		t.Fatal("no left-out campaign")
	}
	id, err := b.srv.AddCycle(a.GMAID, old.ID, liqtest.NewCycle{Start: "2026-01-01", End: "2026-01-31", Budget: 100, Spend: 99})
	if err != nil || cycleOf(old.ID, id) == nil {
		t.Fatalf("cycle %q of a left-out campaign not reported: %v", id, err)
	}

	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{http.MethodPut, "/_admin/cycles/" + a.GMAID + "/NOPE_1/spend", map[string]float64{"spend": 1}, 404},
		{http.MethodPut, "/_admin/cycles/NOPE_1/" + first.ID + "/spend", map[string]float64{"spend": 1}, 404},
		{http.MethodPut, "/_admin/cycles/" + a.GMAID + "/" + first.ID + "/spend", map[string]float64{"spend": -1}, 400},
		{http.MethodPut, "/_admin/cycles/" + a.GMAID + "/" + first.ID + "/spend", map[string]any{}, 400},
		{http.MethodPost, "/_admin/campaigns/" + a.GMAID + "/NOPE_1/cycles", liqtest.NewCycle{}, 404},
		{http.MethodPost, "/_admin/campaigns/" + a.GMAID + "/" + run.ID + "/cycles", liqtest.NewCycle{Start: "2026-02-10", End: "2026-02-01"}, 400},
		{http.MethodPost, "/_admin/campaigns/" + a.GMAID + "/" + run.ID + "/cycles", liqtest.NewCycle{Start: "soon"}, 400},
	} {
		if r := b.do(t, c.method, c.path, "", c.body); r.status != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.status, r.body, c.want)
		}
	}
}

func TestCampaignsAreDeterministicAndOwnTheirRandomStream(t *testing.T) {
	t.Parallel()
	one := setup(t, liqtest.Options{Seed: 3})
	two := setup(t, liqtest.Options{Seed: 3})
	other := setup(t, liqtest.Options{Seed: 4})
	all := func(b *bundle) map[string][]liqtest.Campaign {
		out := map[string][]liqtest.Campaign{}
		for _, a := range b.srv.Advertisers() {
			cs, err := b.srv.Campaigns(a.GMAID)
			if err != nil {
				t.Fatal(err)
			}
			out[a.GMAID] = cs
		}
		return out
	}
	if !reflect.DeepEqual(all(one), all(two)) {
		t.Fatal("same seed, different campaigns")
	}
	if reflect.DeepEqual(all(one), all(other)) {
		t.Fatal("different seeds, same campaigns")
	}
	// Changing campaigns changes no lead.
	before := one.srv.GroundTruth()
	a := one.firstPlain(t)
	cs := all(one)[a.GMAID]
	if err := one.srv.SetCycleSpend(a.GMAID, cs[0].Cycles[0].ID, 1); err != nil {
		t.Fatal(err)
	}
	after := one.srv.GroundTruth()
	for i := range before {
		if !reflect.DeepEqual(before[i].Leads, after[i].Leads) || !reflect.DeepEqual(before[i].Records, after[i].Records) {
			t.Fatalf("%s: truth changed with a spend", before[i].AccountID)
		}
	}
}
