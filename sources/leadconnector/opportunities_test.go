package leadconnector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

// read runs one stream of acct from cur to its end (or stopAfter pages) and returns its pages.
func (b *testBundle) read(t *testing.T, acct sources.Account, stream string, cur sources.Cursor, stopAfter int) ([]sources.Page, error) {
	t.Helper()
	var pages []sources.Page
	for p, err := range b.src.Read(context.Background(), acct, stream, cur, sources.ReadOptions{}) {
		if err != nil {
			return pages, err
		}
		pages = append(pages, p)
		if stopAfter > 0 && len(pages) == stopAfter {
			break
		}
	}
	return pages, nil
}

// records are the rows of pages as the fake's ground truth names them.
func records(pages []sources.Page) []simkit.RecordTruth {
	var out []simkit.RecordTruth
	for _, p := range pages {
		for _, d := range p.Deals {
			out = append(out, simkit.RecordTruth{Table: sources.TableDeals, ID: d.ID, Updated: d.UpdatedAt})
		}
		for _, e := range p.Dictionary {
			out = append(out, simkit.RecordTruth{Table: sources.TableDictionary, ID: e.Kind + ":" + e.ID})
		}
	}
	slices.SortFunc(out, func(a, b simkit.RecordTruth) int {
		return cmp.Or(strings.Compare(a.Table, b.Table), strings.Compare(a.ID, b.ID))
	})
	return out
}

// lifecycleTruth is the fake's truth of the tables these streams write.
func lifecycleTruth(b *testBundle, id string) []simkit.RecordTruth {
	var out []simkit.RecordTruth
	for _, r := range truthOf(b, id).Records {
		// The deals, and the dictionary kinds of the pipelines stream (not the custom fields
		// and users of fields.go).
		if r.Table == sources.TableDeals || r.Table == sources.TableDictionary &&
			!strings.HasPrefix(r.ID, sources.DictCustomField+":") && !strings.HasPrefix(r.ID, sources.DictUser+":") {
			out = append(out, r)
		}
	}
	return out
}

func TestOpportunityStreamsAreRegisteredInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 1}, nil)
	var names []string
	for _, st := range b.src.Streams() {
		names = append(names, st.Name)
		if st.Name == StreamOpportunities && (st.Mode != sources.FullRefresh || st.Table != sources.TableDeals) ||
			st.Name == StreamPipelines && (st.Mode != sources.FullRefresh || st.Table != sources.TableDictionary) {
			t.Errorf("stream %+v", st)
		}
	}
	if i, j, k := slices.Index(names, StreamContacts), slices.Index(names, StreamPipelines), slices.Index(names, StreamOpportunities); i != 0 || j < i || k < j {
		t.Fatalf("streams %v: want the contacts first, and the pipelines before the deals that name them", names)
	}
	for _, st := range []string{StreamOpportunities, StreamPipelines} {
		if got := b.src.NeededScopes(st); !slices.Equal(got, []string{"oauth.readonly", "oauth.write", "opportunities.readonly"}) {
			t.Errorf("%s needs %v", st, got)
		}
	}
	if !slices.Contains(DefaultScopes, "opportunities.readonly") {
		t.Error("the login does not ask for opportunities.readonly")
	}
}

func TestOpportunitiesAndPipelinesEqualTheFake(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 80}, nil)
	acct := b.accounts(t)[0]
	dict, err := b.read(t, acct, StreamPipelines, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	deals, err := b.read(t, acct, StreamOpportunities, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dict) != 1 || dict[0].Next != "" || len(deals) != 1 || deals[0].Next != "" {
		t.Fatalf("%d dictionary pages, %d deal pages: want one each, ending with the empty cursor", len(dict), len(deals))
	}
	if got, want := records(slices.Concat(dict, deals)), lifecycleTruth(b, acct.ID); !slices.Equal(got, want) {
		t.Fatalf("read %d rows, the fake has %d:\n%v\n%v", len(got), len(want), got, want)
	}
	// Every field the warehouse keeps is the fake's.
	states, err := b.srv.Opportunities(acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]sources.Deal{}
	for _, d := range deals[0].Deals {
		byID[d.ID] = d
	}
	customs := 0
	for _, s := range states {
		d := byID[s.ID]
		if d.ContactID != s.ContactID || d.PipelineID != s.PipelineID || d.StageID != s.StageID || d.Status != s.Status ||
			d.StatusCategory != s.Status || d.Value != s.MonetaryValue || d.LostReasonID != s.LostReasonID ||
			!d.CreatedAt.Equal(s.CreatedAt) || !d.StageChangedAt.Equal(s.StageChangedAt) || !d.StatusChangedAt.Equal(s.StatusChangedAt) ||
			d.Name == "" || d.LeadSource == "" || d.HIPAA || !json.Valid(d.Raw) {
			t.Fatalf("deal %s: %+v\nfake: %+v", s.ID, d, s)
		}
		if (s.Status == "lost") != (d.LostReasonID != "") {
			t.Fatalf("deal %s: status %s with lost reason %q", s.ID, d.Status, d.LostReasonID)
		}
		customs += len(d.CustomValues)
	}
	if customs == 0 {
		t.Fatal("no custom values read")
	}
	for _, pid := range b.srv.PipelineIDs(acct.ID) {
		var stages []string
		for _, e := range dict[0].Dictionary {
			if e.Kind == sources.DictStage && e.ParentID == pid {
				if e.Position != len(stages) || e.Name == "" {
					t.Fatalf("stage %+v at %d", e, len(stages))
				}
				stages = append(stages, e.ID)
			}
		}
		if !slices.Equal(stages, b.srv.StageIDs(acct.ID, pid)) {
			t.Fatalf("pipeline %s stages %v, the fake has %v", pid, stages, b.srv.StageIDs(acct.ID, pid))
		}
	}

	// Changes at the vendor: the next pass sees them, and no longer the deleted one.
	ids := b.srv.OpportunityIDs(acct.ID)
	b.clock.Advance(time.Hour)
	stage := b.srv.StageIDs(acct.ID, b.srv.PipelineIDs(acct.ID)[1])[2]
	if err := b.srv.MoveOpportunity(acct.ID, ids[0], stage); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.SetOpportunityStatus(acct.ID, ids[1], "abandoned", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.DeleteOpportunity(acct.ID, ids[2]); err != nil {
		t.Fatal(err)
	}
	created, err := b.srv.CreateOpportunity(acct.ID, lctest.OpportunitySpec{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.read(t, acct, StreamOpportunities, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := records(again), lifecycleTruth(b, acct.ID); !slices.Equal(got, slices.DeleteFunc(want, func(r simkit.RecordTruth) bool {
		return r.Table != sources.TableDeals
	})) {
		t.Fatalf("second pass: %d deals, the fake has %d", len(got), len(want))
	}
	byID = map[string]sources.Deal{}
	for _, d := range again[0].Deals {
		byID[d.ID] = d
	}
	now := b.clock.Now().Truncate(time.Millisecond)
	if d := byID[ids[0]]; d.StageID != stage || !d.StageChangedAt.Equal(now) || !d.UpdatedAt.Equal(now) {
		t.Errorf("moved deal %+v", d)
	}
	if d := byID[ids[1]]; d.StatusCategory != sources.StatusAbandoned || !d.StatusChangedAt.Equal(now) {
		t.Errorf("abandoned deal %+v", d)
	}
	if _, ok := byID[ids[2]]; ok {
		t.Error("the deleted deal is still read")
	}
	if d := byID[created]; d.StatusCategory != sources.StatusOpen || !d.CreatedAt.Equal(now) {
		t.Errorf("created deal %+v", d)
	}
}

func TestOpportunitiesPageAndResumeMidPass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		pageSize, pages  int
		contactsPerOpps4 int
	}{
		{"short last page", 7, 5, 120},    // 30 deals: 7 7 7 7 2
		{"exact multiple", 10, 4, 120},    // 30 deals: 10 10 10, and an empty page ends it
		{"one deal a page", 1, 4, 12},     // 3 deals, then the empty page
		{"everything at once", 100, 1, 8}, // 2 deals
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: tc.contactsPerOpps4}, func(c *Config) { c.PageSize = tc.pageSize })
			acct := b.accounts(t)[0]
			want := b.srv.OpportunityIDs(acct.ID)
			pages, err := b.read(t, acct, StreamOpportunities, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, p := range pages {
				if (i == len(pages)-1) != (p.Next == "") {
					t.Fatalf("page %d of %d: cursor %q", i, len(pages), p.Next)
				}
				for _, d := range p.Deals {
					got = append(got, d.ID)
				}
			}
			if len(pages) != tc.pages || !slices.Equal(got, want) {
				t.Fatalf("%d pages (want %d), %d deals (want the fake's %d in creation order)", len(pages), tc.pages, len(got), len(want))
			}
			if len(pages) < 2 {
				return
			}
			// A pass stopped after its first page resumes from that page's cursor.
			var c oppCursor
			if err := json.Unmarshal([]byte(pages[0].Next), &c); err != nil || c.StartAfterID != pages[0].Deals[len(pages[0].Deals)-1].ID {
				t.Fatalf("cursor %s: want the last deal's position", pages[0].Next)
			}
			rest, err := b.read(t, acct, StreamOpportunities, pages[0].Next, 0)
			if err != nil {
				t.Fatal(err)
			}
			resumed := slices.Clone(got[:len(pages[0].Deals)])
			for _, p := range rest {
				for _, d := range p.Deals {
					resumed = append(resumed, d.ID)
				}
			}
			if !slices.Equal(resumed, want) || rest[len(rest)-1].Next != "" {
				t.Fatalf("resumed pass read %d deals, want the other %d once each", len(resumed)-len(pages[0].Deals), len(want)-len(pages[0].Deals))
			}
		})
	}
}

func TestOpportunitiesOfAForbiddenLocationAreRestricted(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 2, ContactsPerLocation: 20, ForbiddenLocations: 1}, nil)
	accts := b.accounts(t)
	accts[1].HIPAAProtected = true
	_, err := b.read(t, accts[1], StreamOpportunities, "", 0)
	re, ok := errors.AsType[*sources.RestrictedError](err)
	if !ok || re.Stream != StreamOpportunities || re.AccountID != accts[1].ID || !re.HIPAA || re.Message != lctest.MsgNoLocation {
		t.Fatalf("want the opportunities stream restricted, got %v", err)
	}
	// Pipelines are PII-free: they sync for the same location.
	dict, err := b.read(t, accts[1], StreamPipelines, "", 0)
	if err != nil {
		t.Fatalf("pipelines of the forbidden location: %v", err)
	}
	if got, want := records(dict), lifecycleTruth(b, accts[1].ID); !slices.Equal(got, want) {
		t.Fatalf("forbidden location: read %v, the fake has %v", got, want)
	}
	if _, err := b.read(t, accts[0], StreamOpportunities, "", 0); err != nil {
		t.Fatalf("the other location must still sync: %v", err)
	}
}

func TestOpportunitiesWithoutTheScope(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 8}, func(c *Config) {
		c.Scopes = []string{"contacts.readonly", "oauth.readonly", "oauth.write"}
	})
	acct := b.accounts(t)[0]
	for _, stream := range []string{StreamPipelines, StreamOpportunities} {
		_, err := b.read(t, acct, stream, "", 0)
		me, ok := errors.AsType[*sources.MissingScopeError](err)
		if !ok || me.Stream != stream || me.Scope != "opportunities.readonly" || me.AccountID != acct.ID ||
			me.Vendor != sources.LeadConnector || me.Message != lctest.MsgScope {
			t.Fatalf("%s: want a missing scope, got %v", stream, err)
		}
	}
	if _, err := b.pass(t, acct, "", sources.ReadOptions{}, 0); err != nil {
		t.Fatalf("contacts must still sync: %v", err)
	}
	if r, m := b.tokens.refreshes.Load(), b.tokens.mints.Load(); r != 0 || m != 1 {
		t.Fatalf("a scope error must not refresh or re-mint: refreshes %d mints %d", r, m)
	}
}

// cannedOpps is a source on a server that answers the opportunities endpoints with fixed
// bodies (search: by request number).
func cannedOpps(t *testing.T, pageSize int, search func(n int64, r *http.Request) string, pipelines, lost string) (*Source, *atomic.Int64) {
	t.Helper()
	var searches atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/location-token", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"accessToken":"lc_at_loc","expiresIn":86399,"locationId":"L"}`))
	})
	mux.HandleFunc("GET /opportunities/search", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(search(searches.Add(1), r)))
	})
	mux.HandleFunc("GET /opportunities/pipelines", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(pipelines)) })
	mux.HandleFunc("GET /opportunities/lost-reason", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(lost)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tokens := &memTokens{now: time.Now, accounts: map[string]*memAccount{},
		grant: &oauth2.Token{AccessToken: "lc_at_company", Expiry: time.Now().Add(time.Hour)}}
	src, err := New(Config{BaseURL: srv.URL, AppID: "app", CompanyID: "C", PageSize: pageSize, Logger: slog.New(slog.DiscardHandler)}, tokens)
	if err != nil {
		t.Fatal(err)
	}
	return src, &searches
}

func readAll(src *Source, stream string) ([]sources.Page, error) {
	var pages []sources.Page
	for p, err := range src.Read(context.Background(), sources.Account{ID: "L"}, stream, "", sources.ReadOptions{}) {
		if err != nil {
			return pages, err
		}
		pages = append(pages, p)
	}
	return pages, nil
}

// chainSays reports whether an error in err's chain says want (httpx keeps a decoder's own
// error as the cause, under a PII-free message).
func chainSays(err error, want string) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), want) {
			return true
		}
	}
	return false
}

func TestBadOpportunitiesAreQuarantinedAndThePassGoesOn(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	src, searches := cannedOpps(t, 6, func(n int64, r *http.Request) string {
		if n > 1 {
			if r.URL.Query().Get("startAfterId") != "e" || r.URL.Query().Get("startAfter") != "1767312000000" {
				return `{"opportunities":[{"id":"wrong position"}]}`
			}
			return `{"opportunities":[],"meta":{"total":6,"startAfter":null,"startAfterId":null,"nextPage":null}}`
		}
		// A full page: the pass asks again after it, from the meta's position.
		return `{"opportunities":[` +
			`{"id":"a","name":"Ann Lee","monetaryValue":"1250.50","status":"Won","contactId":"c1","createdAt":"2026-01-01T00:00:00.000Z",` +
			`"customFields":[{"id":"f1","fieldValue":"Residential"},{"id":"f2","fieldValue":["x","y"]},{"id":"f3","fieldValue":null},{"fieldValue":"no id"}]},` +
			`{"id":null,"name":"Bo Ray","createdAt":"2026-01-01T00:00:01.000Z"},` +
			`{"id":"c","name":"Cy Day","monetaryValue":{"amount":5551234},"createdAt":"2026-01-01T00:00:02.000Z"},` +
			deep + `,"not an object",` +
			`{"id":"e","status":"closed","contact":{"id":"c9","email":"e@example.com"},"dateAdded":1767312000000}],` +
			`"meta":{"total":6,"startAfter":1767312000000,"startAfterId":"e","nextPage":2}}`
	}, "", "")
	pages, err := readAll(src, StreamOpportunities)
	if err != nil {
		t.Fatalf("the pass failed: %v", err)
	}
	if len(pages) != 2 || len(pages[0].Deals) != 2 || len(pages[0].Rejected) != 4 || searches.Load() != 2 || pages[1].Next != "" {
		t.Fatalf("%d pages, %d searches; want a page of 2 deals and 4 rejected, then the empty page", len(pages), searches.Load())
	}
	a, e := pages[0].Deals[0], pages[0].Deals[1]
	if a.Value != 1250.50 || a.Status != "Won" || a.StatusCategory != sources.StatusWon || a.ContactID != "c1" ||
		string(a.CustomValues["f1"]) != `"Residential"` || string(a.CustomValues["f2"]) != `["x","y"]` || len(a.CustomValues) != 2 ||
		!a.UpdatedAt.Equal(a.CreatedAt) {
		t.Errorf("deal a: %+v", a)
	}
	if e.Status != "closed" || e.StatusCategory != sources.StatusOpen || e.ContactID != "c9" || e.CustomValues != nil ||
		!e.CreatedAt.Equal(time.UnixMilli(1767312000000)) {
		t.Errorf("deal e: %+v", e)
	}
	for i, want := range []struct{ id, reason string }{{"", "no id"}, {"c", "want a number"}, {"", "nested deeper than 512"}, {"", "not a JSON object"}} {
		r := pages[0].Rejected[i]
		if r.ID != want.id || !strings.Contains(r.Reason, want.reason) || strings.Contains(r.Reason, "555") {
			t.Errorf("rejected %d: %v, want %q %q", i, r, want.id, want.reason)
		}
	}
}

func TestOpportunityPagesThatCannotEndAPass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		// Taken for an empty page, it would end the pass and soft-delete every deal.
		{"no opportunities array", `{"meta":{"total":0}}`, "no opportunities array"},
		{"full page without a position", `{"opportunities":[{"id":"a"}],"meta":{}}`, "without a position"},
		{"the same page again", `{"opportunities":[{"id":"a","createdAt":1767225600000}],"meta":{"startAfter":1767225600000,"startAfterId":"a","nextPage":2}}`,
			"handed out before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, _ := cannedOpps(t, 1, func(int64, *http.Request) string { return tc.body }, "", "")
			_, err := readAll(src, StreamOpportunities)
			if !chainSays(err, tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

func TestPipelinesDecodeLeniently(t *testing.T) {
	t.Parallel()
	src, _ := cannedOpps(t, 100, nil,
		`{"pipelines":[{"id":"p1","name":"Sales","stages":[{"id":"s1","name":"New","position":"0"},{"name":"no id"},{"id":"s2","name":"Won"}]},`+
			`{"id":"p2","name":"Jobs","stages":{"oops":1}},{"name":"no id"},{"id":"p3","name":"Empty"}]}`,
		`{"lostReasons":[{"id":"r1","name":"Price"},{"id":"r1","name":"Price"},{"name":"x"}],"total":3}`)
	pages, err := readAll(src, StreamPipelines)
	if err != nil || len(pages) != 1 {
		t.Fatalf("%d pages: %v", len(pages), err)
	}
	var got []string
	for _, e := range pages[0].Dictionary {
		got = append(got, e.Kind+":"+e.ID+"/"+e.ParentID+"/"+e.Name)
		if e.ID == "s2" && e.Position != 2 {
			t.Errorf("stage without a position: %d, want its place 2", e.Position)
		}
	}
	want := []string{"pipeline:p1//Sales", "stage:s1/p1/New", "stage:s2/p1/Won", "pipeline:p3//Empty", "lost_reason:r1//Price"}
	if !slices.Equal(got, want) || len(pages[0].Rejected) != 3 || pages[0].Next != "" {
		t.Fatalf("entries %v (want %v), %d rejected (want 3)", got, want, len(pages[0].Rejected))
	}
	src, _ = cannedOpps(t, 100, nil, `{"data":[]}`, `{"lostReasons":[]}`)
	if _, err := readAll(src, StreamPipelines); !chainSays(err, "no pipelines array") {
		t.Fatalf("an answer without pipelines: %v", err)
	}
}

func TestStatusCategories(t *testing.T) {
	t.Parallel()
	for word, want := range map[string]string{
		"open": sources.StatusOpen, "won": sources.StatusWon, " Lost ": sources.StatusLost, "abandoned": sources.StatusAbandoned,
		"": sources.StatusOpen, "all": sources.StatusOpen, "closed": sources.StatusOpen,
	} {
		if got := statusCategory(word); got != want {
			t.Errorf("status %q: category %q, want %q", word, got, want)
		}
	}
}

func TestOpportunityCursor(t *testing.T) {
	t.Parallel()
	c := oppCursor{StartAfter: "1767225600000", StartAfterID: "a"}
	if got, err := parseOppCursor(c.encode()); err != nil || got != c || string(c.encode()) != `{"start_after":"1767225600000","start_after_id":"a"}` {
		t.Fatalf("round trip %s: %+v %v", c.encode(), got, err)
	}
	if (oppCursor{}).encode() != "" {
		t.Fatal("the end of a pass is the empty cursor")
	}
	for _, bad := range []sources.Cursor{"nope", `{"start_after":"1"}`, `{"watermark":"x"}`} {
		if _, err := parseOppCursor(bad); err == nil {
			t.Errorf("cursor %s accepted", bad)
		}
	}
}
