package lctest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// The shapes below are those of ../shared/vendor-docs/leadconnector/opportunities.json:
// SearchSuccessfulResponseDto, SearchMetaResponseSchema, GetPipelinesSuccessfulResponseDto,
// LostReasonsResponseSchema.

type oppPage struct {
	Opportunities []map[string]json.RawMessage `json:"opportunities"`
	Meta          struct {
		Total        int     `json:"total"`
		NextPageURL  *string `json:"nextPageUrl"`
		StartAfterID *string `json:"startAfterId"`
		StartAfter   *int64  `json:"startAfter"`
		CurrentPage  int     `json:"currentPage"`
		NextPage     *int    `json:"nextPage"`
		PrevPage     *int    `json:"prevPage"`
	} `json:"meta"`
}

func (b *testBundle) oppSearch(t *testing.T, tok string, q url.Values) (resp, oppPage) {
	t.Helper()
	r := b.do(t, "GET", "/opportunities/search?"+q.Encode(), V2021, tok, "", "")
	var p oppPage
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("search page: %v", err)
		}
	}
	return r, p
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("want a string, got %s", raw)
	}
	return s
}

// oppSetup is a fake with one location's location token.
func oppSetup(t *testing.T, opts Options) (*testBundle, string, string) {
	t.Helper()
	b := setup(t, opts)
	loc := b.srv.LocationIDs()[0]
	return b, loc, b.locationToken(t, b.srv.Authorize("").Access, loc)
}

func TestOpportunitySearchPagesWithStartAfter(t *testing.T) {
	t.Parallel()
	b, loc, tok := oppSetup(t, Options{Locations: 1, ContactsPerLocation: 120})
	want := b.srv.OpportunityIDs(loc)
	if len(want) != 30 {
		t.Fatalf("%d opportunities for 120 contacts, want 30", len(want))
	}
	contacts := b.srv.ContactIDs(loc)
	q := url.Values{"location_id": {loc}, "limit": {"7"}, "order": {"added_asc"}}
	var got []string
	var lastCreated string
	for page := 1; ; page++ {
		r, p := b.oppSearch(t, tok, q)
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		if p.Meta.Total != len(want) || p.Meta.CurrentPage != page {
			t.Fatalf("page %d meta: %+v", page, p.Meta)
		}
		for _, o := range p.Opportunities {
			for _, k := range []string{"id", "name", "monetaryValue", "pipelineId", "pipelineStageId", "status", "source",
				"contactId", "contact", "assignedTo", "lastStatusChangeAt", "lastStageChangeAt", "lostReasonId",
				"createdAt", "updatedAt", "customFields", "locationId"} {
				if _, ok := o[k]; !ok {
					t.Fatalf("opportunity without %s: %v", k, o)
				}
			}
			var c struct{ ID, Name, Email string }
			var fields []struct {
				ID         string          `json:"id"`
				FieldValue json.RawMessage `json:"fieldValue"`
			}
			if json.Unmarshal(o["contact"], &c) != nil || c.ID != str(t, o["contactId"]) || !slices.Contains(contacts, c.ID) {
				t.Fatalf("contact %s of contactId %s", o["contact"], o["contactId"])
			}
			if json.Unmarshal(o["customFields"], &fields) != nil || slices.ContainsFunc(fields, func(f struct {
				ID         string          `json:"id"`
				FieldValue json.RawMessage `json:"fieldValue"`
			}) bool {
				return f.ID == "" || len(f.FieldValue) == 0
			}) {
				t.Fatalf("customFields %s: want [{id, fieldValue}]", o["customFields"])
			}
			created := str(t, o["createdAt"])
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", created); err != nil || created < lastCreated {
				t.Fatalf("createdAt %q after %q: want ascending ISO times", created, lastCreated)
			}
			lastCreated = created
			got = append(got, str(t, o["id"]))
		}
		if p.Meta.NextPage == nil {
			if p.Meta.NextPageURL != nil {
				t.Fatalf("last page with a nextPageUrl: %+v", p.Meta)
			}
			break
		}
		// The meta's position is the page's last opportunity, as the next request takes it.
		last := p.Opportunities[len(p.Opportunities)-1]
		if *p.Meta.StartAfterID != str(t, last["id"]) || *p.Meta.NextPage != page+1 {
			t.Fatalf("meta %+v after %s", p.Meta, last["id"])
		}
		next, err := url.Parse(*p.Meta.NextPageURL)
		if err != nil || next.Query().Get("startAfterId") != *p.Meta.StartAfterID ||
			next.Query().Get("startAfter") != fmt.Sprint(*p.Meta.StartAfter) {
			t.Fatalf("nextPageUrl %s", *p.Meta.NextPageURL)
		}
		q = next.Query()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging listed %d opportunities, want the %d by (createdAt, id) once each", len(got), len(want))
	}
}

func TestOpportunitySearchLimitsOrderAndFilters(t *testing.T) {
	t.Parallel()
	b, loc, tok := oppSetup(t, Options{Locations: 1, ContactsPerLocation: 120})
	ids := b.srv.OpportunityIDs(loc)
	// Default limit 20, newest first (the document names no default order).
	r, p := b.oppSearch(t, tok, url.Values{"location_id": {loc}})
	if r.status != 200 || len(p.Opportunities) != DefaultOppLimit || str(t, p.Opportunities[0]["id"]) != ids[len(ids)-1] {
		t.Fatalf("default page: %d, %d opportunities", r.status, len(p.Opportunities))
	}
	// Keyset paging backwards from the newest page's end.
	r, p2 := b.oppSearch(t, tok, url.Values{"location_id": {loc}, "startAfter": {fmt.Sprint(*p.Meta.StartAfter)}, "startAfterId": {*p.Meta.StartAfterID}})
	if r.status != 200 || len(p2.Opportunities) != len(ids)-DefaultOppLimit || p2.Meta.NextPage != nil ||
		str(t, p2.Opportunities[0]["id"]) != ids[len(ids)-DefaultOppLimit-1] {
		t.Fatalf("second page newest first: %d, %d opportunities, meta %+v", r.status, len(p2.Opportunities), p2.Meta)
	}
	for _, bad := range []struct{ limit, msg string }{
		{"101", "limit must not be greater than 100"},
		{"0", "limit must not be less than 1"},
		{"ten", "limit must be a number conforming to the specified constraints"},
	} {
		r, _ := b.oppSearch(t, tok, url.Values{"location_id": {loc}, "limit": {bad.limit}})
		if m := r.json(t); r.status != 422 || !slices.Contains(m["message"].([]any), any(bad.msg)) {
			t.Errorf("limit %s: %d %s", bad.limit, r.status, r.body)
		}
	}
	if r, _ := b.oppSearch(t, tok, url.Values{"location_id": {loc}, "status": {"closed"}}); r.status != 422 {
		t.Errorf("status closed: %d", r.status)
	}
	if r, _ := b.oppSearch(t, tok, url.Values{}); r.status != 422 {
		t.Errorf("no location_id: %d", r.status)
	}
	states, err := b.srv.Opportunities(loc)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range oppStatuses {
		want := 0
		for _, s := range states {
			if s.Status == st {
				want++
			}
		}
		r, p := b.oppSearch(t, tok, url.Values{"location_id": {loc}, "status": {st}, "limit": {"100"}})
		if r.status != 200 || p.Meta.Total != want || len(p.Opportunities) != want {
			t.Errorf("status=%s: %d, total %d, want %d", st, r.status, p.Meta.Total, want)
		}
		for _, o := range p.Opportunities {
			if str(t, o["status"]) != st || (st == "lost") != (string(o["lostReasonId"]) != "null") {
				t.Errorf("status=%s listed status %s lostReasonId %s", st, o["status"], o["lostReasonId"])
			}
		}
	}
	pid := states[0].PipelineID
	_, p = b.oppSearch(t, tok, url.Values{"location_id": {loc}, "pipeline_id": {pid}, "limit": {"100"}})
	for _, o := range p.Opportunities {
		if str(t, o["pipelineId"]) != pid {
			t.Fatalf("pipeline_id filter listed pipeline %s", o["pipelineId"])
		}
	}
	if len(p.Opportunities) == 0 {
		t.Fatal("pipeline_id filter listed nothing")
	}
}

func TestPipelinesAndLostReasons(t *testing.T) {
	t.Parallel()
	b, loc, tok := oppSetup(t, Options{Locations: 1, ContactsPerLocation: 40})
	r := b.do(t, "GET", "/opportunities/pipelines?locationId="+loc, V3, tok, "", "")
	var pl struct {
		Pipelines []struct {
			ID, Name, LocationID string
			Stages               []struct {
				ID, Name string
				Position int
			}
		}
	}
	if r.status != 200 || json.Unmarshal(r.body, &pl) != nil || len(pl.Pipelines) != 2 {
		t.Fatalf("pipelines: %d %s", r.status, r.body)
	}
	seen := map[string]bool{}
	for _, p := range pl.Pipelines {
		if p.ID == "" || p.Name == "" || p.LocationID != loc || len(p.Stages) < 4 || len(p.Stages) > 6 {
			t.Fatalf("pipeline %+v", p)
		}
		for i, s := range p.Stages {
			if s.ID == "" || s.Name == "" || s.Position != i || seen[s.ID] {
				t.Fatalf("stage %d %+v", i, s)
			}
			seen[s.ID] = true
		}
		if !slices.Equal(b.srv.StageIDs(loc, p.ID), slices.Collect(func(yield func(string) bool) {
			for _, s := range p.Stages {
				if !yield(s.ID) {
					return
				}
			}
		})) {
			t.Fatal("StageIDs differ from the API's stages")
		}
	}
	r = b.do(t, "GET", "/opportunities/lost-reason?locationId="+loc, V2021, tok, "", "")
	var lr struct {
		LostReasons []struct{ ID, Name, LocationID, CreatedAt, UpdatedAt string }
		Total       int
	}
	if r.status != 200 || json.Unmarshal(r.body, &lr) != nil || len(lr.LostReasons) < 3 || lr.Total != len(lr.LostReasons) {
		t.Fatalf("lost reasons: %d %s", r.status, r.body)
	}
	for _, x := range lr.LostReasons {
		if x.ID == "" || x.Name == "" || x.LocationID != loc || x.CreatedAt == "" || x.UpdatedAt == "" {
			t.Fatalf("lost reason %+v", x)
		}
	}
	r = b.do(t, "GET", "/opportunities/lost-reason?locationId="+loc+"&skip=1&limit=1", V2021, tok, "", "")
	if err := json.Unmarshal(r.body, &lr); err != nil || len(lr.LostReasons) != 1 || lr.LostReasons[0].ID != b.srv.LostReasonIDs(loc)[1] {
		t.Fatalf("skip=1 limit=1: %s", r.body)
	}
}

func TestOpportunityAccessErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 2, ContactsPerLocation: 20, ForbiddenLocations: 1})
	locs := b.srv.LocationIDs()
	grant := b.srv.Authorize("")
	forbidden := b.locationToken(t, grant.Access, locs[1])
	// A Forbidden location's opportunities are PII; its pipelines and lost reasons are not.
	if r, _ := b.oppSearch(t, forbidden, url.Values{"location_id": {locs[1]}}); r.status != 403 || r.json(t)["message"] != MsgNoLocation {
		t.Fatalf("forbidden search: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/opportunities/pipelines?locationId=", "/opportunities/lost-reason?locationId="} {
		if r := b.do(t, "GET", path+locs[1], V2021, forbidden, "", ""); r.status != 200 {
			t.Errorf("forbidden %s: %d %s", path, r.status, r.body)
		}
		// Another location's token.
		if r := b.do(t, "GET", path+locs[0], V2021, forbidden, "", ""); r.status != 403 {
			t.Errorf("other location %s: %d", path, r.status)
		}
		if r := b.do(t, "GET", path+locs[0], V2021, grant.Access, "", ""); r.status != 401 || r.json(t)["message"] != MsgAuthClass {
			t.Errorf("company token %s: %d %s", path, r.status, r.body)
		}
	}
	// A grant without opportunities.readonly.
	_, narrow := b.srv.tokens.NewGrant("x", b.srv.companyMeta("contacts.readonly oauth.readonly oauth.write"))
	lt := b.locationToken(t, narrow.Access, locs[0])
	for _, path := range []string{"/opportunities/search?location_id=", "/opportunities/pipelines?locationId=", "/opportunities/lost-reason?locationId="} {
		if r := b.do(t, "GET", path+locs[0], V3, lt, "", ""); r.status != 401 || r.json(t)["message"] != MsgScope {
			t.Errorf("missing scope %s: %d %s", path, r.status, r.body)
		}
	}
	truth := b.srv.GroundTruth()
	for i, at := range truth {
		deals, dict := 0, 0
		for _, rec := range at.Records {
			switch rec.Table {
			case "deals":
				deals++
			case "crm_dictionary":
				dict++
			}
		}
		if wantDeals := len(b.srv.OpportunityIDs(locs[i])); (i == 1) != (deals == 0) || (i == 0 && deals != wantDeals) || dict < 2+8+3 {
			t.Errorf("location %d truth: %d deals (of %d), %d dictionary entries", i, deals, wantDeals, dict)
		}
	}
}

func TestOpportunityMutations(t *testing.T) {
	t.Parallel()
	b, loc, tok := oppSetup(t, Options{Locations: 1, ContactsPerLocation: 40})
	find := func(id string) map[string]json.RawMessage {
		t.Helper()
		_, p := b.oppSearch(t, tok, url.Values{"location_id": {loc}, "id": {id}})
		if len(p.Opportunities) != 1 {
			return nil
		}
		return p.Opportunities[0]
	}
	pipe := b.srv.PipelineIDs(loc)
	stages := b.srv.StageIDs(loc, pipe[1])
	b.clock.Advance(time.Hour)
	id := b.do(t, "POST", "/_admin/locations/"+loc+"/opportunities", "", "", "application/json",
		`{"stage_id":"`+stages[0]+`","monetary_value":1500}`)
	if id.status != 201 {
		t.Fatalf("create: %d %s", id.status, id.body)
	}
	oid := id.json(t)["id"].(string)
	o := find(oid)
	now := isoMillis(b.clock.Now())
	if o == nil || str(t, o["pipelineId"]) != pipe[1] || str(t, o["pipelineStageId"]) != stages[0] || string(o["monetaryValue"]) != "1500" ||
		str(t, o["status"]) != "open" || str(t, o["createdAt"]) != now || str(t, o["updatedAt"]) != now {
		t.Fatalf("created: %v", o)
	}
	if ids := b.srv.OpportunityIDs(loc); ids[len(ids)-1] != oid {
		t.Fatal("a new opportunity must sort last by createdAt")
	}

	b.clock.Advance(time.Minute)
	if r := b.do(t, "PUT", "/_admin/locations/"+loc+"/opportunities/"+oid+"/stage", "", "", "application/json", `{"stage_id":"`+stages[2]+`"}`); r.status != 204 {
		t.Fatalf("move: %d %s", r.status, r.body)
	}
	o, moved := find(oid), isoMillis(b.clock.Now())
	if str(t, o["pipelineStageId"]) != stages[2] || str(t, o["lastStageChangeAt"]) != moved || str(t, o["updatedAt"]) != moved || str(t, o["lastStatusChangeAt"]) != now {
		t.Fatalf("moved: %v", o)
	}
	// Another pipeline's stage moves it to that pipeline.
	if err := b.srv.MoveOpportunity(loc, oid, b.srv.StageIDs(loc, pipe[0])[1]); err != nil || str(t, find(oid)["pipelineId"]) != pipe[0] {
		t.Fatalf("move across pipelines: %v", err)
	}

	b.clock.Advance(time.Minute)
	reason := b.srv.LostReasonIDs(loc)[0]
	if r := b.do(t, "PUT", "/_admin/locations/"+loc+"/opportunities/"+oid+"/status", "", "", "application/json",
		`{"status":"lost","lost_reason_id":"`+reason+`"}`); r.status != 204 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	o, lost := find(oid), isoMillis(b.clock.Now())
	if str(t, o["status"]) != "lost" || str(t, o["lostReasonId"]) != reason || str(t, o["lastStatusChangeAt"]) != lost || str(t, o["updatedAt"]) != lost {
		t.Fatalf("lost: %v", o)
	}
	if err := b.srv.SetOpportunityStatus(loc, oid, "won", reason); err == nil {
		t.Fatal("a won opportunity with a lost reason")
	}
	if err := b.srv.SetOpportunityStatus(loc, oid, "won", ""); err != nil || string(find(oid)["lostReasonId"]) != "null" {
		t.Fatalf("won: %v", err)
	}
	if r := b.do(t, "PUT", "/_admin/locations/"+loc+"/opportunities/"+oid+"/value", "", "", "application/json", `{"monetary_value":2250.5}`); r.status != 204 ||
		string(find(oid)["monetaryValue"]) != "2250.5" {
		t.Fatalf("value: %d %s", r.status, r.body)
	}
	st, err := b.srv.Opportunity(loc, oid)
	if err != nil || st.UpdatedAt != b.clock.Now().Truncate(time.Millisecond) || st.Status != "won" || st.MonetaryValue != 2250.5 {
		t.Fatalf("state %+v, %v", st, err)
	}
	for name, r := range map[string]resp{
		"unknown stage":    b.do(t, "PUT", "/_admin/locations/"+loc+"/opportunities/"+oid+"/stage", "", "", "application/json", `{"stage_id":"nope"}`),
		"unknown status":   b.do(t, "PUT", "/_admin/locations/"+loc+"/opportunities/"+oid+"/status", "", "", "application/json", `{"status":"closed"}`),
		"unknown location": b.do(t, "DELETE", "/_admin/locations/nope/opportunities/"+oid, "", "", "", ""),
	} {
		if want := map[bool]int{true: 404, false: 400}[strings.Contains(name, "location")]; r.status != want {
			t.Errorf("%s: %d, want %d", name, r.status, want)
		}
	}

	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/opportunities/"+oid, "", "", "", ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if find(oid) != nil || slices.Contains(b.srv.OpportunityIDs(loc), oid) {
		t.Fatal("a deleted opportunity is still listed")
	}
	for _, rec := range b.srv.GroundTruth()[0].Records {
		if rec.ID == oid {
			t.Fatal("a deleted opportunity is in the ground truth")
		}
	}
	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/opportunities/"+oid, "", "", "", ""); r.status != 404 {
		t.Fatalf("delete twice: %d", r.status)
	}
}

func TestOpportunitiesAreDeterministicAndLeaveContactsAlone(t *testing.T) {
	t.Parallel()
	clock := simkit.NewManualClock(t0)
	a := New(Options{Seed: 9, Clock: clock, Locations: 2, ContactsPerLocation: 30})
	b := New(Options{Seed: 9, Clock: clock, Locations: 2, ContactsPerLocation: 30})
	for _, loc := range a.LocationIDs() {
		sa, _ := a.Opportunities(loc)
		sb, _ := b.Opportunities(loc)
		if len(sa) != 7 || !slices.Equal(sa, sb) || !slices.Equal(a.PipelineIDs(loc), b.PipelineIDs(loc)) {
			t.Fatalf("location %s: the same seed drew different opportunities", loc)
		}
		// Each is of a contact of the location, created after it.
		contacts := map[string]bool{}
		for _, id := range a.ContactIDs(loc) {
			contacts[id] = true
		}
		for _, s := range sa {
			if !contacts[s.ContactID] || s.UpdatedAt.Before(s.CreatedAt) || s.StageChangedAt.Before(s.CreatedAt) {
				t.Fatalf("opportunity %+v", s)
			}
		}
	}
	// Mutating opportunities draws nothing from the contacts' stream.
	loc := a.LocationIDs()[0]
	if _, err := a.CreateOpportunity(loc, OpportunitySpec{}); err != nil {
		t.Fatal(err)
	}
	ca, _ := a.CreateContact(loc)
	cb, _ := b.CreateContact(loc)
	if ca != cb {
		t.Fatal("creating an opportunity changed the contacts' mutation stream")
	}
}
