package lctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

const invalidJWT = `{"error":"Unauthorized","message":"Invalid JWT","statusCode":401}`

// adminPIT calls a /_admin/pits endpoint and decodes its JSON answer.
func (b *testBundle) adminPIT(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(body)
	r := b.do(t, "POST", "/_admin/pits"+path, "", "", "application/json", string(raw))
	var m map[string]any
	if len(r.body) > 0 {
		_ = json.Unmarshal(r.body, &m)
	}
	return r.status, m
}

// issuePIT issues a PIT over the admin API.
func (b *testBundle) issuePIT(t *testing.T, loc string) string {
	t.Helper()
	st, m := b.adminPIT(t, "", map[string]string{"location_id": loc})
	tok, _ := m["token"].(string)
	if st != http.StatusCreated || tok == "" {
		t.Fatalf("issue PIT: %d %v", st, m)
	}
	return tok
}

func (b *testBundle) searchStatus(t *testing.T, tok, loc string) (int, string) {
	t.Helper()
	r, _ := b.search(t, tok, map[string]any{"locationId": loc, "pageLimit": 10})
	return r.status, string(r.body)
}

func TestPITSearchesItsLocation(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 7})
	loc := b.srv.LocationIDs()[0]
	tok := b.issuePIT(t, loc)
	if !strings.HasPrefix(tok, "pit-") || len(tok) != len("pit-")+36 || strings.Count(tok, "-") != 5 {
		t.Fatalf("PIT %q is not pit-<uuid>", tok)
	}
	r, page := b.search(t, tok, map[string]any{"locationId": loc, "pageLimit": 100})
	if r.status != 200 || len(page.Contacts) != 7 || r.header.Get("X-RateLimit-Max") != "100" {
		t.Fatalf("search with a PIT: %d %s", r.status, r.body)
	}
	// The 2021-07-28 version takes it too.
	if r := b.do(t, "POST", "/contacts/search", V2021, tok, "application/json",
		`{"locationId":"`+loc+`","pageLimit":1}`); r.status != 200 {
		t.Fatalf("2021-07-28 search with a PIT: %d %s", r.status, r.body)
	}
	if n := b.srv.Counters().Get(CountPITRequests); n != 2 {
		t.Fatalf("%s = %d, want 2", CountPITRequests, n)
	}
	if n := b.srv.Counters().Requests("contacts/search", 200); n != 2 {
		t.Fatalf("contacts/search 200 = %d, want 2", n)
	}
	if _, err := b.srv.IssuePIT("no-such-location"); err == nil {
		t.Fatal("IssuePIT of an unknown location: no error")
	}
	if st, m := b.adminPIT(t, "", map[string]string{"location_id": "no-such-location"}); st != 404 {
		t.Fatalf("admin issue for an unknown location: %d %v", st, m)
	}
	if st, m := b.adminPIT(t, "", map[string]string{"location": loc}); st != 400 {
		t.Fatalf("admin issue with a bad body: %d %v", st, m)
	}
	if other := b.issuePIT(t, loc); other == tok {
		t.Fatal("two PITs are the same token")
	}
}

func TestBadPITsAreInvalidJWT(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	loc := b.srv.LocationIDs()[0]
	tok := b.issuePIT(t, loc)
	for name, bad := range map[string]string{
		"wrong-case prefix": "Pit-" + strings.TrimPrefix(tok, "pit-"),
		"upper-case prefix": "PIT-" + strings.TrimPrefix(tok, "pit-"),
		"unknown":           "pit-00000000-0000-4000-8000-000000000000",
		"prefix only":       "pit-",
	} {
		if st, body := b.searchStatus(t, bad, loc); st != 401 || body != invalidJWT {
			t.Errorf("%s: %d %s", name, st, body)
		}
	}
	if n := b.srv.Counters().Get(CountPITRequests); n != 0 {
		t.Fatalf("rejected PITs counted as uses: %d", n)
	}
}

func TestRevokedPITIsInvalidJWT(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	loc := b.srv.LocationIDs()[0]
	tok, keep := b.issuePIT(t, loc), b.issuePIT(t, loc)
	if st, _ := b.searchStatus(t, tok, loc); st != 200 {
		t.Fatalf("before revoking: %d", st)
	}
	if st, m := b.adminPIT(t, "/revoke", map[string]string{"token": tok}); st != 204 {
		t.Fatalf("revoke: %d %v", st, m)
	}
	if st, body := b.searchStatus(t, tok, loc); st != 401 || body != invalidJWT {
		t.Fatalf("revoked PIT: %d %s", st, body)
	}
	if st, _ := b.searchStatus(t, keep, loc); st != 200 {
		t.Fatalf("revoking one PIT broke another of the same location: %d", st)
	}
	if st, _ := b.adminPIT(t, "/revoke", map[string]string{"token": "pit-unknown"}); st != 404 {
		t.Fatalf("revoke unknown: %d", st)
	}
	if err := b.srv.RevokePIT("pit-unknown"); err == nil {
		t.Fatal("RevokePIT of an unknown token: no error")
	}
	for _, p := range b.srv.PITs() {
		if p.Token == tok {
			t.Fatal("PITs lists a revoked token")
		}
	}
}

func TestRotatePITExpireNow(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	loc := b.srv.LocationIDs()[1]
	old := b.issuePIT(t, loc)
	st, m := b.adminPIT(t, "/rotate", map[string]string{"token": old, "expire": "now"})
	tok, _ := m["token"].(string)
	if st != 200 || !strings.HasPrefix(tok, "pit-") || tok == old || m["old_token_expires_at"] != t0.Format(time.RFC3339) {
		t.Fatalf("rotate now: %d %v", st, m)
	}
	if st, body := b.searchStatus(t, old, loc); st != 401 || body != invalidJWT {
		t.Fatalf("old PIT after rotate-now: %d %s", st, body)
	}
	if st, body := b.searchStatus(t, tok, loc); st != 200 {
		t.Fatalf("new PIT after rotate-now: %d %s", st, body)
	}
	if st, _ := b.adminPIT(t, "/rotate", map[string]string{"token": old, "expire": "now"}); st != 404 {
		t.Fatalf("rotating a revoked PIT: %d", st)
	}
	if st, _ := b.adminPIT(t, "/rotate", map[string]string{"token": tok, "expire": "tomorrow"}); st != 400 {
		t.Fatalf("rotate with a bad expire: %d", st)
	}
}

func TestRotatePITExpireLaterOverlapsSevenDays(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2, TokenTTL: time.Hour})
	loc := b.srv.LocationIDs()[0]
	old, err := b.srv.IssuePIT(loc)
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Hour) // PITs never expire on their own, unlike OAuth tokens
	st, m := b.adminPIT(t, "/rotate", map[string]string{"token": old, "expire": "later"})
	tok, _ := m["token"].(string)
	want := t0.Add(time.Hour + 7*24*time.Hour).Format(time.RFC3339)
	if st != 200 || tok == "" || tok == old || m["old_token_expires_at"] != want {
		t.Fatalf("rotate later: %d %v, want old_token_expires_at %s", st, m, want)
	}
	b.clock.Advance(7*24*time.Hour - time.Second)
	for _, p := range []string{old, tok} {
		if st, body := b.searchStatus(t, p, loc); st != 200 {
			t.Fatalf("inside the overlap: %d %s", st, body)
		}
	}
	listed := map[string]bool{}
	for _, p := range b.srv.PITs() {
		listed[p.Token] = p.LocationID == loc
	}
	if !listed[old] || !listed[tok] {
		t.Fatalf("PITs during the overlap: %v", b.srv.PITs())
	}
	b.clock.Advance(time.Second)
	if st, body := b.searchStatus(t, old, loc); st != 401 || body != invalidJWT {
		t.Fatalf("old PIT after the overlap: %d %s", st, body)
	}
	if st, body := b.searchStatus(t, tok, loc); st != 200 {
		t.Fatalf("new PIT after the overlap: %d %s", st, body)
	}
	if _, err := b.srv.RotatePIT(old, true); err == nil {
		t.Fatal("rotating an expired PIT: no error")
	}
	// Rotating the new one now leaves none of the three working but the newest.
	newest, err := b.srv.RotatePIT(tok, false)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := b.searchStatus(t, tok, loc); st != 401 {
		t.Fatalf("rotated-now PIT: %d", st)
	}
	if st, _ := b.searchStatus(t, newest, loc); st != 200 {
		t.Fatalf("newest PIT: %d", st)
	}
}

func TestPITOfAnotherLocationIs403(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	locs := b.srv.LocationIDs()
	tok := b.issuePIT(t, locs[0])
	want := `{"error":"Forbidden","message":"The token does not have access to this location.","statusCode":403}`
	if st, body := b.searchStatus(t, tok, locs[1]); st != 403 || body != want {
		t.Fatalf("PIT of another location: %d %s", st, body)
	}
}

func TestPITCannotUseAgencyEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	loc := b.srv.LocationIDs()[0]
	tok := b.issuePIT(t, loc)
	q := "?companyId=" + b.srv.CompanyID() + "&appId=" + b.srv.AppID()
	form := url.Values{"companyId": {b.srv.CompanyID()}, "locationId": {loc}}.Encode()
	for _, c := range []struct{ method, path, version, ctype, body string }{
		{"POST", "/oauth/location-token", V3, "application/x-www-form-urlencoded", form},
		{"POST", "/oauth/locationToken", V2021, "application/x-www-form-urlencoded", form},
		{"GET", "/oauth/installed-locations" + q, V3, "", ""},
		{"GET", "/oauth/installedLocations" + q, V2021, "", ""},
	} {
		r := b.do(t, c.method, c.path, c.version, tok, c.ctype, c.body)
		if r.status != 401 || r.json(t)["message"] != MsgAuthClass {
			t.Errorf("PIT on %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}

func TestPITSharesItsLocationsRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Burst: 3, ContactsPerLocation: 2})
	b.clock.Advance(10*time.Second - time.Duration(t0.UnixNano()%int64(10*time.Second))) // window start
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	tok := b.issuePIT(t, loc)
	for i, k := range []string{lt, tok, lt} {
		if st, body := b.searchStatus(t, k, loc); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, body)
		}
	}
	r, _ := b.search(t, tok, map[string]any{"locationId": loc, "pageLimit": 1})
	if r.status != 429 || string(r.body) != Body429 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("PIT over the location's burst: %d %s %v", r.status, r.body, r.header)
	}
	if n := b.srv.Counters().Get(simkit.Count429); n != 1 {
		t.Fatalf("status_429 = %d", n)
	}
	other := b.srv.LocationIDs()[1]
	if st, _ := b.searchStatus(t, b.issuePIT(t, other), other); st != 200 {
		t.Fatalf("another location's PIT: %d", st)
	}
}

func TestAdminListsPITs(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 1})
	locs := b.srv.LocationIDs()
	a, c := b.issuePIT(t, locs[0]), b.issuePIT(t, locs[1])
	if _, err := b.srv.RotatePIT(a, true); err != nil {
		t.Fatal(err)
	}
	var got []PIT
	if err := json.Unmarshal(b.do(t, "GET", "/_admin/pits", "", "", "", "").body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("listed %d PITs, want 3: %+v", len(got), got)
	}
	for _, p := range got {
		switch {
		case p.Token == a && (p.LocationID != locs[0] || p.ExpiresAt == nil || !p.ExpiresAt.Equal(t0.Add(7*24*time.Hour))):
			t.Errorf("rotated-later PIT: %+v", p)
		case p.Token == c && (p.LocationID != locs[1] || p.ExpiresAt != nil):
			t.Errorf("PIT: %+v", p)
		}
	}
}
