package lctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// subScopes is an app that may read forms and surveys.
const subScopes = "contacts.readonly oauth.readonly oauth.write forms.readonly surveys.readonly"

type subsPage struct {
	Submissions []map[string]any `json:"submissions"`
	Meta        struct {
		Total       int  `json:"total"`
		CurrentPage int  `json:"currentPage"`
		NextPage    *int `json:"nextPage"`
		PrevPage    *int `json:"prevPage"`
	} `json:"meta"`
}

// submissions gets one page of path (forms or surveys) with the given parameters.
func (b *testBundle) submissions(t *testing.T, tok, path string, q url.Values) (resp, subsPage) {
	t.Helper()
	r := b.do(t, "GET", path+"?"+q.Encode(), V2021, tok, "", "")
	var p subsPage
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("submissions page: %v", err)
		}
	}
	return r, p
}

// listAll pages through path with limit 100 and returns the ids in the order served.
func (b *testBundle) listAll(t *testing.T, tok, path string, q url.Values) []string {
	t.Helper()
	var ids []string
	for page := 1; page < 100; page++ {
		q.Set("page", strconv.Itoa(page))
		q.Set("limit", "100")
		r, p := b.submissions(t, tok, path, q)
		if r.status != http.StatusOK {
			t.Fatalf("%s page %d: %d %s", path, page, r.status, r.body)
		}
		for _, s := range p.Submissions {
			ids = append(ids, s["id"].(string))
		}
		if p.Meta.NextPage == nil {
			return ids
		}
	}
	t.Fatal("paging does not end")
	return nil
}

// subTruthOf is the fake's submissions of loc by id, with their kind and createdAt.
func subTruthOf(b *testBundle, loc string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, a := range b.srv.GroundTruth() {
		if a.AccountID != loc {
			continue
		}
		for _, r := range a.Records {
			if r.Table == "submissions" {
				out[r.ID] = r.Updated
			}
		}
	}
	return out
}

func TestSubmissionsWithoutDatesAreOnlyTheLastMonth(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 1, ContactsPerLocation: 300, Scopes: subScopes})
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, b.srv.Authorize("").Access, loc)
	truth := subTruthOf(b, loc)
	// t0 is 2026-03-02 12:00 UTC: the documented defaults are 2026-02-02 .. 2026-03-02.
	from, until := time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	var recent, older int
	for id, at := range truth {
		switch kind := b.srv.SubmissionKind(loc, id); {
		case kind != KindFormSubmission:
		case !at.Before(from) && at.Before(until):
			recent++
		default:
			older++
		}
	}
	if recent == 0 || older < 5*recent {
		t.Fatalf("seeded form submissions: %d in the last month, %d older; want most of them older", recent, older)
	}
	got := b.listAll(t, lt, "/forms/submissions", url.Values{"locationId": {loc}})
	if len(got) != recent {
		t.Fatalf("without startAt/endAt: %d submissions, want the %d of the last month", len(got), recent)
	}
	all := b.listAll(t, lt, "/forms/submissions", url.Values{"locationId": {loc}, "startAt": {"2024-01-01"}, "endAt": {"2026-03-02"}})
	if len(all) != recent+older {
		t.Fatalf("with explicit dates: %d submissions, want all %d", len(all), recent+older)
	}
	seen := map[string]bool{}
	for _, id := range all {
		if seen[id] || truth[id].IsZero() {
			t.Fatalf("submission %s twice or not in the truth", id)
		}
		seen[id] = true
	}
	if got := sameDateLastMonth(time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("same date last month of March 31: %s", got)
	}
}

func TestSubmissionsCarryTheDocumentedShape(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 2, ContactsPerLocation: 300, Scopes: subScopes})
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, b.srv.Authorize("").Access, loc)
	contacts := b.srv.ContactIDs(loc)
	q := url.Values{"locationId": {loc}, "startAt": {"2024-03-01"}, "endAt": {"2026-03-02"}, "limit": {"60"}}
	r, p := b.submissions(t, lt, "/forms/submissions", q)
	if r.status != http.StatusOK || len(p.Submissions) != 60 || p.Meta.Total != 100 || p.Meta.CurrentPage != 1 ||
		p.Meta.NextPage == nil || *p.Meta.NextPage != 2 || p.Meta.PrevPage != nil {
		t.Fatalf("page 1: %d, %d submissions, meta %+v", r.status, len(p.Submissions), p.Meta)
	}
	subs := p.Submissions
	q.Set("page", "2")
	if r, p = b.submissions(t, lt, "/forms/submissions", q); r.status != 200 || len(p.Submissions) != 40 ||
		p.Meta.NextPage != nil || p.Meta.PrevPage == nil || *p.Meta.PrevPage != 1 || p.Meta.CurrentPage != 2 {
		t.Fatalf("page 2: %d, %d submissions, meta %+v", r.status, len(p.Submissions), p.Meta)
	}
	subs = append(subs, p.Submissions...)
	q.Set("page", "3")
	if r, p = b.submissions(t, lt, "/forms/submissions", q); r.status != 200 || len(p.Submissions) != 0 || p.Meta.NextPage != nil {
		t.Fatalf("past the end: %d %+v", r.status, p.Meta)
	}
	var gclids, fbclids, utms, untracked int
	prev := "9999"
	for _, s := range subs {
		for _, k := range []string{"id", "contactId", "createdAt", "formId", "name", "email", "others"} {
			if _, ok := s[k]; !ok {
				t.Fatalf("submission without %q", k)
			}
		}
		if _, ok := s["surveyId"]; ok {
			t.Fatal("a form submission with a surveyId")
		}
		if !slices.Contains(contacts, s["contactId"].(string)) {
			t.Fatalf("submission %s of a contact the location does not have", s["id"])
		}
		if at := s["createdAt"].(string); at > prev {
			t.Fatalf("not newest first: %s after %s", at, prev)
		} else {
			prev = at
		}
		others := s["others"].(map[string]any)
		if others["email"] != s["email"] || others["fieldsOriSequance"] == nil {
			t.Fatalf("answers %v", others)
		}
		ev, ok := others["eventData"].(map[string]any)
		if !ok {
			untracked++
			continue
		}
		page, _ := ev["page"].(map[string]any)
		if ev["source"] == "" || ev["medium"] != "form" || ev["parentId"] != s["formId"] || page["url"] == nil {
			t.Fatalf("eventData %v", ev)
		}
		params, _ := ev["url_params"].(map[string]any)
		if params["utm_source"] != nil {
			utms++
			if !strings.Contains(page["url"].(string), "utm_source=") {
				t.Fatalf("url_params %v not in the page url %s", params, page["url"])
			}
		}
		if ev["gclid"] != nil {
			gclids++
			if params["gclid"] != ev["gclid"] || ev["source"] != "Paid Search" {
				t.Fatalf("a Google Ads visit: %v", ev)
			}
		}
		if ev["fbclid"] != nil {
			fbclids++
			if !strings.HasSuffix(ev["fbc"].(string), ev["fbclid"].(string)) {
				t.Fatalf("a Facebook Ads visit: %v", ev)
			}
		}
	}
	if gclids == 0 || fbclids == 0 || utms == 0 || untracked == 0 {
		t.Fatalf("gclids %d, fbclids %d, utm-tagged %d, untracked %d", gclids, fbclids, utms, untracked)
	}
	// Surveys carry surveyId, and the survey filter works.
	_, sp := b.submissions(t, lt, "/surveys/submissions", url.Values{"locationId": {loc}, "startAt": {"2024-03-01"}, "endAt": {"2026-03-02"}, "limit": {"100"}})
	if sp.Meta.Total != 30 || sp.Submissions[0]["surveyId"] == nil || sp.Submissions[0]["formId"] != nil {
		t.Fatalf("surveys: %d, first %v", sp.Meta.Total, sp.Submissions[0])
	}
	survey := sp.Submissions[0]["surveyId"].(string)
	_, sp = b.submissions(t, lt, "/surveys/submissions", url.Values{"locationId": {loc}, "startAt": {"2024-03-01"}, "surveyId": {survey}})
	if sp.Meta.Total != 30 || len(sp.Submissions) != 20 {
		t.Fatalf("by surveyId: total %d, %d on the default page of 20", sp.Meta.Total, len(sp.Submissions))
	}
	// The forms and surveys themselves.
	var forms struct {
		Forms []formDef `json:"forms"`
		Total int       `json:"total"`
	}
	if r := b.do(t, "GET", "/forms/?locationId="+loc, V2021, lt, "", ""); r.status != 200 || json.Unmarshal(r.body, &forms) != nil ||
		forms.Total != 2 || forms.Forms[0].Name == "" || forms.Forms[0].LocationID != loc {
		t.Fatalf("forms: %d %s", r.status, r.body)
	}
}

func TestSubmissionsValidateAndRefuse(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 3, ContactsPerLocation: 30, ForbiddenLocations: 1, Scopes: subScopes})
	locs := b.srv.LocationIDs()
	p := b.srv.Authorize("")
	lt := b.locationToken(t, p.Access, locs[0])
	for _, c := range []struct {
		q    string
		want string
	}{
		{"limit=101", "limit must not be greater than 100"},
		{"page=0", "page must not be less than 1"},
		{"startAt=03/01/2026", "startAt must be a valid date (YYYY-MM-DD)"},
		{"endAt=yesterday", "endAt must be a valid date (YYYY-MM-DD)"},
	} {
		r := b.do(t, "GET", "/forms/submissions?locationId="+locs[0]+"&"+c.q, V2021, lt, "", "")
		if r.status != 422 || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s", c.q, r.status, r.body)
		}
	}
	if r := b.do(t, "GET", "/surveys/submissions", V2021, lt, "", ""); r.status != 422 || !strings.Contains(string(r.body), "locationId should not be empty") {
		t.Errorf("no locationId: %d %s", r.status, r.body)
	}
	want403 := `{"error":"Forbidden","message":"The token does not have access to this location.","statusCode":403}`
	for _, path := range []string{"/forms/submissions", "/surveys/submissions"} {
		if r, _ := b.submissions(t, lt, path, url.Values{"locationId": {locs[1]}}); r.status != 403 || string(r.body) != want403 {
			t.Errorf("%s of another location: %d %s", path, r.status, r.body)
		}
		forbidden := b.locationToken(t, p.Access, locs[2])
		if r, _ := b.submissions(t, forbidden, path, url.Values{"locationId": {locs[2]}}); r.status != 403 || string(r.body) != want403 {
			t.Errorf("%s of a forbidden location: %d %s", path, r.status, r.body)
		}
	}
	// A grant without the scopes: contacts work, submissions are 401 for their scope.
	_, narrow := b.srv.tokens.NewGrant("x", b.srv.companyMeta("contacts.readonly oauth.readonly oauth.write forms.readonly"))
	nt := b.locationToken(t, narrow.Access, locs[0])
	if r, _ := b.submissions(t, nt, "/forms/submissions", url.Values{"locationId": {locs[0]}}); r.status != 200 {
		t.Errorf("forms with forms.readonly: %d %s", r.status, r.body)
	}
	if r, _ := b.submissions(t, nt, "/surveys/submissions", url.Values{"locationId": {locs[0]}}); r.status != 401 || r.json(t)["message"] != MsgScope {
		t.Errorf("surveys without surveys.readonly: %d %s", r.status, r.body)
	}
	// A company token is the wrong class.
	if r, _ := b.submissions(t, p.Access, "/forms/submissions", url.Values{"locationId": {locs[0]}}); r.status != 401 || r.json(t)["message"] != MsgAuthClass {
		t.Errorf("company token: %d %s", r.status, r.body)
	}
	// The forbidden location's submissions are not in the truth; the others' are.
	if len(subTruthOf(b, locs[2])) != 0 || len(subTruthOf(b, locs[0])) != 30/3+30/10 {
		t.Errorf("truth: %d forbidden, %d allowed", len(subTruthOf(b, locs[2])), len(subTruthOf(b, locs[0])))
	}
}

func TestSubmissionDatesAreWholeInclusiveDays(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 1, ContactsPerLocation: 30, Scopes: subScopes})
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, b.srv.Authorize("").Access, loc)
	ids := map[string]string{}
	for _, at := range []time.Time{time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 12, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 1, 13, 0, 0, 0, 0, time.UTC)} {
		id, err := b.srv.addSubmissionAt(loc, KindFormSubmission, at)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = at.Format(time.DateOnly)
	}
	got := b.listAll(t, lt, "/forms/submissions", url.Values{"locationId": {loc}, "startAt": {"2026-01-10"}, "endAt": {"2026-01-12"}})
	n := 0
	for _, id := range got {
		if day, ok := ids[id]; ok {
			n++
			if day == "2026-01-13" {
				t.Fatal("a submission of the day after endAt")
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d of the submissions at 00:00 of startAt and 23:59:59.999 of endAt, want both", n)
	}
	// An empty window is an empty array.
	r := b.do(t, "GET", "/forms/submissions?locationId="+loc+"&startAt=2030-01-01&endAt=2030-01-31", V2021, lt, "", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"submissions":[]`) || !strings.Contains(string(r.body), `"total":0`) {
		t.Fatalf("empty window: %d %s", r.status, r.body)
	}
}

func TestSubmissionsAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 2, ContactsPerLocation: 30, Scopes: subScopes})
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, b.srv.Authorize("").Access, loc)
	before := b.srv.SubmissionIDs(loc)
	b.clock.Advance(time.Minute)
	r := b.do(t, "POST", "/_admin/locations/"+loc+"/form-submissions", "", "", "", "")
	id, _ := r.json(t)["id"].(string)
	if r.status != 201 || id == "" {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	sid, err := b.srv.AddSurveySubmission(loc)
	if err != nil {
		t.Fatal(err)
	}
	after := b.srv.SubmissionIDs(loc)
	if newest := after[len(after)-2:]; len(after) != len(before)+2 || !slices.Contains(newest, id) || !slices.Contains(newest, sid) {
		t.Fatalf("%d submissions after adding 2 to %d (newest last)", len(after), len(before))
	}
	if truth := subTruthOf(b, loc); !truth[id].Equal(t0.Add(time.Minute)) {
		t.Fatalf("added submission in truth at %v", truth[id])
	}
	// Newest first: the new one leads the default listing.
	if _, p := b.submissions(t, lt, "/forms/submissions", url.Values{"locationId": {loc}}); len(p.Submissions) == 0 || p.Submissions[0]["id"] != id {
		t.Fatalf("the new submission does not lead the listing")
	}
	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/submissions/"+id, "", "", "", ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/submissions/"+id, "", "", "", ""); r.status != 404 {
		t.Fatalf("delete twice: %d", r.status)
	}
	if _, ok := subTruthOf(b, loc)[id]; ok || b.srv.SubmissionKind(loc, id) != "" {
		t.Fatal("a deleted submission is still in the truth")
	}
	if r := b.do(t, "POST", "/_admin/locations/nowhere/survey-submissions", "", "", "", ""); r.status != 404 {
		t.Fatalf("unknown location: %d", r.status)
	}
}

func TestSubmissionsSeedIsDeterministic(t *testing.T) {
	t.Parallel()
	opts := Options{Seed: 7, Clock: simkit.NewManualClock(t0), ContactsPerLocation: 60}
	a, b := New(opts), New(opts)
	for i, loc := range a.LocationIDs() {
		if !slices.Equal(a.SubmissionIDs(loc), b.SubmissionIDs(b.LocationIDs()[i])) || len(a.SubmissionIDs(loc)) != 60/3+60/10 {
			t.Fatalf("location %d: submissions differ between two fakes of one seed", i)
		}
	}
	// Dates spread over the two years of data.
	var oldest, newest time.Time
	for _, r := range a.GroundTruth()[0].Records {
		if r.Table != "submissions" {
			continue
		}
		if oldest.IsZero() || r.Updated.Before(oldest) {
			oldest = r.Updated
		}
		if r.Updated.After(newest) {
			newest = r.Updated
		}
	}
	if end := a.Options().DataEnd; newest.After(end) || oldest.Before(end.AddDate(-2, 0, 0)) || newest.Sub(oldest) < 365*24*time.Hour {
		t.Fatalf("submissions from %s to %s", oldest, newest)
	}
}
