package liqtest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
)

// Campaign spend: GET /client_reports/campaigns_overview/{gmaid}, as
// ../shared/vendor-docs/localiq/_campaigns_overview_report.md.erb documents it. The report has
// no parameters; it is one document: the envelope (report_type, report_date, start_date and
// end_date a year apart, time_zone, currency), report_data.campaigns with each campaign's
// cycles (impressions, clicks, leads, spend, budget; opens, quantity and views for email
// campaigns), report_data.totals, and global_master_advertiser_id. "Campaign are limited to
// those that have had activity within the previous year": a campaign whose last activity is
// older than the report's start_date is left out. The report holds no PII, so like
// lead_detail it answers for HIPAA-protected advertisers whatever the user's role (linked
// advertisers only).
//
// The documented quirks it reproduces: spend and budget written as 500.0 (documented Integer);
// leads null on the types the example shows null (gannett_display, shopping); no impressions
// on email campaigns ("N/A for Email Campaigns"); a campaign's null end date sometimes sent as
// "end_dat" (sic), as in the example's Shopping campaign; negative ids on Gannett Display
// campaigns ("TEST_-6924"); currency on some campaigns (the field table lists it, the example
// does not) besides the envelope's; bidding_pricing_model_id on search campaigns.
//
// [ours]: each advertiser has 2 to 5 campaigns, drawn from their own random stream
// (simkit.RandFor(seed, "campaigns/<gmaid>")) relative to the day the fake starts, so the
// interactions do not change with them; the second one ended more than a year ago, so every
// report leaves one out. Cycles are consecutive, 28 to 31 days long; a running campaign's last
// cycle holds today and its end_date is its planned end or null. A reported campaign lists all
// its cycles. Campaigns are named like the interactions' campaign_name (simkit.Campaigns), and
// a cycle's leads are the advertiser's lead interactions of that campaign name created (local
// date) within the cycle, so spend and leads join by campaign name. The interactions'
// campaign_id is an unrelated integer, as in the vendor's examples (campaign_id 400904 on an
// interaction, "TEST_7025" as a report's global_master_campaign_id). The totals (last 30 days,
// running campaigns) sum the cycles that overlap those days and count the lead interactions
// of those campaigns by kind.

// campaignBook is every advertiser's campaigns (f.mu guards it).
type campaignBook struct {
	byGMAID map[string][]*campaign
	next    int64 // number of the next added cycle's id
}

type campaign struct {
	id, name, ctype, source, status string
	ownCurrency                     bool      // the campaign carries a currency key
	start, end                      time.Time // the advertiser's dates; end zero: null
	endTypo                         bool      // a null end date is sent as "end_dat"
	cycles                          []*cycle
}

type cycle struct {
	id                     string
	start, end             time.Time // end zero: null, the cycle runs
	impressions, clicks    int64
	spend, budget          float64 // cents exact
	opens, quantity, views int64   // email campaigns
}

// campaignKinds are the documented type and source pairs.
var campaignKinds = []struct{ typ, source string }{
	{"search", "Search Engine Marketing"}, {"display", "Targeted Display"}, {"display", "ReachDisplay GeoFence"},
	{"facebook", "Facebook"}, {"youtube", "YouTube Advertising"}, {"chat", "Live Chat"}, {"email", "Targeted Email"},
	{"totaltrack", "Campaign Tracking Only (TotalTrack)"}, {"xmedia", "Omnichannel - Smart"},
	{"lsa", "Local Services Ads"}, {"gannett_display", "Gannett Display"}, {"shopping", "Shopping"},
	{"other", "Organic Traffic"},
}

var budgets = []float64{300, 500, 500, 750, 1000, 1500, 2500}

// nullLeads are the campaign types whose cycles the example shows with "leads": null.
func nullLeads(typ string) bool { return typ == "gannett_display" || typ == "shopping" }

func cents(v float64) float64 { return math.Round(v*100) / 100 }

// seedCampaigns draws every advertiser's campaigns, relative to today in its time zone.
func (f *Fake) seedCampaigns() {
	now := f.clock.Now()
	f.campaigns = campaignBook{byGMAID: map[string][]*campaign{}, next: 90_000_000}
	for _, a := range f.advertisers {
		f.campaigns.byGMAID[a.gmaid] = drawCampaigns(simkit.RandFor(f.opts.Seed, "campaigns/"+a.gmaid), a, localDate(a, now))
	}
}

func drawCampaigns(r *rand.Rand, a *advertiser, today time.Time) []*campaign {
	prefix, _, _ := strings.Cut(a.gmaid, "_")
	num := int64(1000 + r.IntN(900_000))
	days := func(lo, n int) int { return lo + r.IntN(n) }
	n := 2 + r.IntN(4)
	names := r.Perm(len(simkit.Campaigns))
	out := make([]*campaign, 0, n)
	for k := range n {
		kind := simkit.Pick(r, campaignKinds)
		c := &campaign{name: simkit.Campaigns[names[k]], ctype: kind.typ, source: kind.source, ownCurrency: r.IntN(2) == 0}
		var last time.Time // the last cycle's last day
		open := false
		switch life := r.IntN(20); {
		case k == 0 || (k > 1 && life < 11):
			c.status, c.start, last, open = "running", today.AddDate(0, 0, -days(30, 670)), today, true
		case k == 1 || life < 14: // no activity within the year: left out of the report
			last = today.AddDate(0, 0, -days(400, 250))
			c.status, c.start, c.end = "ended", last.AddDate(0, 0, -days(60, 300)), last
		case life < 17:
			last = today.AddDate(0, 0, -days(20, 180))
			c.status, c.start = "stopped", last.AddDate(0, 0, -days(60, 400))
		default:
			last = today.AddDate(0, 0, -days(5, 300))
			c.status, c.start, c.end = "ended", last.AddDate(0, 0, -days(30, 400)), last
		}
		c.endTypo = c.end.IsZero() && r.IntN(4) == 0
		sign := int64(1)
		if c.ctype == "gannett_display" {
			sign = -1
		}
		c.id = fmt.Sprintf("%s_%d", prefix, sign*num)
		num++
		budget := simkit.Pick(r, budgets)
		for d := c.start; !d.After(last); {
			length := 28 + r.IntN(4)
			cy := &cycle{id: fmt.Sprintf("%s_%d", prefix, sign*num), start: d, end: d.AddDate(0, 0, length-1), budget: budget}
			num++
			if !cy.end.Before(last) { // the last cycle: a running one keeps its planned end, or has none
				switch {
				case !open:
					cy.end = last
				case r.IntN(3) == 0:
					cy.end = time.Time{}
				}
			}
			through := last
			if !cy.end.IsZero() && cy.end.Before(through) {
				through = cy.end
			}
			ran := int(through.Sub(d).Hours()/24) + 1
			cy.spend = cents(budget * min(1, float64(ran)/float64(length)) * (0.85 + 0.15*r.Float64()))
			cy.clicks = int64(cy.spend / (1.5 + 4.5*r.Float64()))
			cy.impressions = cy.clicks * int64(20+r.IntN(100))
			if c.ctype == "email" {
				cy.impressions = 0
				cy.quantity = int64(10_000 * (1 + r.IntN(8)))
				cy.opens = cy.quantity / int64(5+r.IntN(10))
				cy.views = cy.opens
			}
			c.cycles = append(c.cycles, cy)
			if r.IntN(5) == 0 {
				budget = simkit.Pick(r, budgets)
			}
			d = d.AddDate(0, 0, length)
		}
		num += int64(1 + r.IntN(30))
		out = append(out, c)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// lastActivity is the last day c had activity: today while it runs or a cycle runs.
func (c *campaign) lastActivity(today time.Time) time.Time {
	if c.status == "running" {
		return today
	}
	last := c.end
	for _, cy := range c.cycles {
		if cy.end.IsZero() {
			return today
		}
		if cy.end.After(last) {
			last = cy.end
		}
	}
	return minTime(last, today)
}

// reported says whether the report of today lists c.
func (c *campaign) reported(today time.Time) bool {
	return !c.lastActivity(today).Before(today.AddDate(-1, 0, 0))
}

// currency is the advertiser's report currency [ours]: by platform.
func (a *advertiser) currency() string {
	if strings.HasPrefix(a.gmaid, "CAN_") {
		return "CAD"
	}
	return "USD"
}

// leadDays are a's lead interactions (non-lead chats left out) by campaign name, in creation
// order. Callers hold f.mu.
func leadDays(a *advertiser) map[string][]*interaction {
	out := map[string][]*interaction{}
	for _, it := range a.list {
		if name, _ := it.doc["campaign_name"].(string); name != "" && !it.nonLead {
			out[name] = append(out[name], it)
		}
	}
	return out
}

// leadsIn counts the interactions of its created within [from, to] (local dates).
func leadsIn(a *advertiser, its []*interaction, from, to time.Time) int64 {
	var n int64
	for _, it := range its {
		if d := localDate(a, it.created); !d.Before(from) && !d.After(to) {
			n++
		}
	}
	return n
}

// cycleEnd is the last day a cycle's figures cover: its end, or today while it runs.
func cycleEnd(cy *cycle, today time.Time) time.Time {
	if cy.end.IsZero() || cy.end.After(today) {
		return today
	}
	return cy.end
}

// money writes an amount the way the document shows it: 500.0, 75.5, 512.37.
func money(v float64) json.Number {
	return json.Number(strings.TrimSuffix(strconv.FormatFloat(v, 'f', 2, 64), "0"))
}

func dateOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.Format(dateLayout)
	return &s
}

type overviewCycle struct {
	ID          string      `json:"campaign_cycle"`
	Start       string      `json:"start_date"`
	End         *string     `json:"end_date"`
	Impressions *int64      `json:"impressions,omitempty"`
	Clicks      int64       `json:"clicks"`
	Leads       *int64      `json:"leads"`
	Spend       json.Number `json:"spend"`
	Budget      json.Number `json:"budget"`
	Quantity    *int64      `json:"quantity,omitempty"`
	Views       *int64      `json:"views,omitempty"`
	Opens       *int64      `json:"opens,omitempty"`
}

type overviewCampaign struct {
	Name     string          `json:"name"`
	ID       string          `json:"global_master_campaign_id"`
	Type     string          `json:"type"`
	Source   string          `json:"source"`
	Currency string          `json:"currency,omitempty"`
	Start    string          `json:"start_date"`
	End      json.RawMessage `json:"end_date,omitempty"`
	EndDat   json.RawMessage `json:"end_dat,omitempty"` // sic
	Status   string          `json:"status"`
	Bidding  int             `json:"bidding_pricing_model_id,omitempty"`
	Cycles   []overviewCycle `json:"cycles"`
}

type overviewTotals struct {
	Calls              int64 `json:"calls"`
	Chats              int64 `json:"chats"`
	Clicks             int64 `json:"clicks"`
	Emails             int64 `json:"emails"`
	WebEvents          int64 `json:"web_events"`
	Impressions        int64 `json:"impressions"`
	QualifiedWebEvents int64 `json:"qualified_web_events"`
}

type overviewReport struct {
	ReportType string `json:"report_type"`
	ReportDate string `json:"report_date"`
	StartDate  string `json:"start_date"`
	EndDate    string `json:"end_date"`
	TimeZone   string `json:"time_zone"`
	Currency   string `json:"currency"`
	ReportData struct {
		Campaigns []overviewCampaign `json:"campaigns"`
		Totals    overviewTotals     `json:"totals"`
	} `json:"report_data"`
	GMAID string `json:"global_master_advertiser_id"`
}

// campaignsOverview is GET /client_reports/campaigns_overview/{gmaid}.
func (f *Fake) campaignsOverview(w http.ResponseWriter, r *http.Request, user string) {
	gmaid := r.PathValue("gmaid")
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.linked(user, gmaid)
	if a == nil {
		writeRaw(w, http.StatusForbidden, bodyNotAuthorized)
		return
	}
	today := localDate(a, f.clock.Now())
	rep := overviewReport{ReportType: "campaigns_overview", ReportDate: today.Format(dateLayout),
		StartDate: today.AddDate(-1, 0, 0).Format(dateLayout), EndDate: today.Format(dateLayout),
		TimeZone: a.tzName, Currency: a.currency(), GMAID: gmaid}
	rep.ReportData.Campaigns = []overviewCampaign{}
	leads := leadDays(a)
	month := today.AddDate(0, 0, -29)
	tot := &rep.ReportData.Totals
	for _, c := range f.campaigns.byGMAID[gmaid] {
		if !c.reported(today) {
			continue
		}
		oc := overviewCampaign{Name: c.name, ID: c.id, Type: c.ctype, Source: c.source, Start: c.start.Format(dateLayout),
			Status: c.status, Cycles: []overviewCycle{}}
		if c.ownCurrency {
			oc.Currency = a.currency()
		}
		switch {
		case !c.end.IsZero():
			oc.End = json.RawMessage(strconv.Quote(c.end.Format(dateLayout)))
		case c.endTypo:
			oc.EndDat = json.RawMessage("null")
		default:
			oc.End = json.RawMessage("null")
		}
		if c.ctype == "search" {
			oc.Bidding = 8
		}
		for _, cy := range c.cycles {
			n := leadsIn(a, leads[c.name], cy.start, cycleEnd(cy, today))
			occ := overviewCycle{ID: cy.id, Start: cy.start.Format(dateLayout), End: dateOrNull(cy.end), Clicks: cy.clicks,
				Leads: &n, Spend: money(cy.spend), Budget: money(cy.budget)}
			if nullLeads(c.ctype) {
				occ.Leads = nil
			}
			if c.ctype == "email" {
				occ.Quantity, occ.Views, occ.Opens = &cy.quantity, &cy.views, &cy.opens
			} else {
				occ.Impressions = &cy.impressions
			}
			oc.Cycles = append(oc.Cycles, occ)
			if c.status == "running" && !cycleEnd(cy, today).Before(month) {
				tot.Impressions += cy.impressions
				tot.Clicks += cy.clicks
			}
		}
		if c.status == "running" {
			for _, it := range leads[c.name] {
				if localDate(a, it.created).Before(month) {
					continue
				}
				switch it.kind {
				case "call":
					tot.Calls++
				case "email":
					tot.Emails++
				case "form":
					tot.WebEvents++
					tot.QualifiedWebEvents++
				case "chat":
					tot.Chats++
				}
			}
		}
		rep.ReportData.Campaigns = append(rep.ReportData.Campaigns, oc)
	}
	simkit.WriteJSON(w, http.StatusOK, rep)
}

// Campaign is a campaign as the admin API shows it: its cycles' figures are what the report
// sends (leads 0 where it sends null, impressions 0 where it sends none). Reported is false
// for a campaign the report leaves out (no activity within the previous year).
type Campaign struct {
	ID       string  `json:"global_master_campaign_id"`
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Source   string  `json:"source"`
	Status   string  `json:"status"`
	Currency string  `json:"currency"`
	Start    string  `json:"start_date"`
	End      string  `json:"end_date"` // "" when null
	Reported bool    `json:"reported"`
	Cycles   []Cycle `json:"cycles"`
}

// Cycle is one cycle of a Campaign; dates are the advertiser's, End "" while it runs.
type Cycle struct {
	ID          string  `json:"campaign_cycle"`
	Start       string  `json:"start_date"`
	End         string  `json:"end_date"`
	Impressions int64   `json:"impressions"`
	Clicks      int64   `json:"clicks"`
	Leads       int64   `json:"leads"`
	Spend       float64 `json:"spend"`
	Budget      float64 `json:"budget"`
}

func dateString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(dateLayout)
}

// Campaigns lists an advertiser's campaigns, those the report leaves out included.
func (f *Fake) Campaigns(gmaid string) ([]Campaign, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.byGMAID[gmaid]
	if a == nil {
		return nil, fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	today := localDate(a, f.clock.Now())
	leads := leadDays(a)
	var out []Campaign
	for _, c := range f.campaigns.byGMAID[gmaid] {
		pc := Campaign{ID: c.id, Name: c.name, Type: c.ctype, Source: c.source, Status: c.status, Currency: a.currency(),
			Start: dateString(c.start), End: dateString(c.end), Reported: c.reported(today), Cycles: []Cycle{}}
		for _, cy := range c.cycles {
			pcy := Cycle{ID: cy.id, Start: dateString(cy.start), End: dateString(cy.end), Impressions: cy.impressions,
				Clicks: cy.clicks, Spend: cy.spend, Budget: cy.budget}
			if !nullLeads(c.ctype) {
				pcy.Leads = leadsIn(a, leads[c.name], cy.start, cycleEnd(cy, today))
			}
			pc.Cycles = append(pc.Cycles, pcy)
		}
		out = append(out, pc)
	}
	return out, nil
}

// findCycle returns the cycle of gmaid with id cycleID. Callers hold f.mu.
func (f *Fake) findCycle(gmaid, cycleID string) (*cycle, error) {
	if f.byGMAID[gmaid] == nil {
		return nil, fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	for _, c := range f.campaigns.byGMAID[gmaid] {
		for _, cy := range c.cycles {
			if cy.id == cycleID {
				return cy, nil
			}
		}
	}
	return nil, fmt.Errorf("cycle %s of %s: %w", cycleID, gmaid, ErrNotFound)
}

// SetCycleSpend changes a cycle's spend (rounded to cents).
func (f *Fake) SetCycleSpend(gmaid, cycleID string, spend float64) error {
	if spend < 0 || math.IsNaN(spend) || math.IsInf(spend, 0) {
		return fmt.Errorf("liqtest: spend %v", spend)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cy, err := f.findCycle(gmaid, cycleID)
	if err != nil {
		return err
	}
	cy.spend = cents(spend)
	return nil
}

// NewCycle describes a cycle to add to a campaign. Dates are the advertiser's (YYYY-MM-DD).
type NewCycle struct {
	// Start "" is the day after the campaign's last cycle ends, or today when that cycle
	// runs (it then ends the day before) or there is none.
	Start       string  `json:"start_date,omitempty"`
	End         string  `json:"end_date,omitempty"` // "": null, the cycle runs
	Budget      float64 `json:"budget"`
	Spend       float64 `json:"spend"`
	Impressions int64   `json:"impressions"`
	Clicks      int64   `json:"clicks"`
}

// AddCycle appends a cycle to a campaign and returns its id. A running cycle (no End) makes
// the campaign running again; the campaign's running last cycle, if any, ends the day before.
func (f *Fake) AddCycle(gmaid, campaignID string, nc NewCycle) (string, error) {
	var start, end time.Time
	var err error
	if nc.Start != "" {
		if start, err = time.Parse(dateLayout, nc.Start); err != nil {
			return "", fmt.Errorf("liqtest: start_date: %w", err)
		}
	}
	if nc.End != "" {
		if end, err = time.Parse(dateLayout, nc.End); err != nil {
			return "", fmt.Errorf("liqtest: end_date: %w", err)
		}
	}
	for _, v := range []float64{nc.Budget, nc.Spend} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("liqtest: budget and spend must be non-negative amounts")
		}
	}
	if nc.Impressions < 0 || nc.Clicks < 0 {
		return "", errors.New("liqtest: impressions and clicks must not be negative")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.byGMAID[gmaid]
	if a == nil {
		return "", fmt.Errorf("advertiser %s: %w", gmaid, ErrNotFound)
	}
	i := slices.IndexFunc(f.campaigns.byGMAID[gmaid], func(c *campaign) bool { return c.id == campaignID })
	if i < 0 {
		return "", fmt.Errorf("campaign %s of %s: %w", campaignID, gmaid, ErrNotFound)
	}
	c := f.campaigns.byGMAID[gmaid][i]
	today := localDate(a, f.clock.Now())
	var prev *cycle
	if len(c.cycles) > 0 {
		prev = c.cycles[len(c.cycles)-1]
	}
	if start.IsZero() {
		switch {
		case prev == nil || prev.end.IsZero():
			start = today
		default:
			start = prev.end.AddDate(0, 0, 1)
		}
	}
	if !end.IsZero() && end.Before(start) {
		return "", errors.New("liqtest: end_date before start_date")
	}
	if prev != nil && prev.end.IsZero() {
		prev.end = start.AddDate(0, 0, -1)
		if prev.end.Before(prev.start) {
			prev.end = prev.start
		}
	}
	prefix, _, _ := strings.Cut(gmaid, "_")
	cy := &cycle{id: fmt.Sprintf("%s_%d", prefix, f.campaigns.next), start: start, end: end,
		impressions: nc.Impressions, clicks: nc.Clicks, spend: cents(nc.Spend), budget: cents(nc.Budget)}
	f.campaigns.next++
	c.cycles = append(c.cycles, cy)
	if end.IsZero() {
		c.status, c.end = "running", time.Time{}
	}
	return cy.id, nil
}

// cycleTruth is the report's cycles of a, as campaign_cycles rows. Callers hold f.mu.
func (f *Fake) cycleTruth(a *advertiser) []simkit.RecordTruth {
	today := localDate(a, f.clock.Now())
	var out []simkit.RecordTruth
	for _, c := range f.campaigns.byGMAID[a.gmaid] {
		if !c.reported(today) {
			continue
		}
		for _, cy := range c.cycles {
			out = append(out, simkit.RecordTruth{Table: sources.TableCampaignCycles, ID: c.id + "/" + cy.id})
		}
	}
	slices.SortFunc(out, func(x, y simkit.RecordTruth) int {
		return cmp.Or(strings.Compare(x.Table, y.Table), strings.Compare(x.ID, y.ID))
	})
	return out
}

// adminCampaigns adds the campaigns' /_admin/ routes.
func (f *Fake) adminCampaigns(mux *http.ServeMux) {
	mux.HandleFunc("GET /campaigns/{gmaid}", func(w http.ResponseWriter, r *http.Request) {
		cs, err := f.Campaigns(r.PathValue("gmaid"))
		if err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		simkit.WriteJSON(w, http.StatusOK, cs)
	})
	mux.HandleFunc("POST /campaigns/{gmaid}/{campaign}/cycles", func(w http.ResponseWriter, r *http.Request) {
		var nc NewCycle
		if err := simkit.DecodeStrict(r, &nc); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		id, err := f.AddCycle(r.PathValue("gmaid"), r.PathValue("campaign"), nc)
		if err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"campaign_cycle": id})
	})
	mux.HandleFunc("PUT /cycles/{gmaid}/{cycle}/spend", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Spend *float64 `json:"spend"`
		}
		if err := simkit.DecodeStrict(r, &req); err != nil || req.Spend == nil {
			adminError(w, http.StatusBadRequest, errors.Join(err, errors.New(`need {"spend": amount}`)))
			return
		}
		if err := f.SetCycleSpend(r.PathValue("gmaid"), r.PathValue("cycle"), *req.Spend); err != nil {
			adminError(w, statusOf(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
