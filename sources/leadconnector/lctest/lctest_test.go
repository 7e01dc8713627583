package lctest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	srv   *Server
	clock *simkit.ManualClock
	http  *http.Client
}

func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	clock := simkit.NewManualClock(t0)
	if opts.Clock == nil {
		opts.Clock = clock
	}
	opts.Seed = max(opts.Seed, 42)
	srv := NewServer(opts)
	t.Cleanup(srv.Close)
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return &testBundle{srv: srv, clock: clock, http: hc}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	return m
}

// do sends one request; version "" sends no Version header, token "" no Authorization.
func (b *testBundle) do(t *testing.T, method, path, version, token, ctype, body string) resp {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if version != "" {
		req.Header.Set("Version", version)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := b.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, data}
}

func (b *testBundle) refresh(t *testing.T, rt string) resp {
	t.Helper()
	form := url.Values{"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "user_type": {"Company"}}
	return b.do(t, "POST", "/oauth/token", "", "", "application/x-www-form-urlencoded", form.Encode())
}

// locationToken mints a location token with a company access token.
func (b *testBundle) locationToken(t *testing.T, company, loc string) string {
	t.Helper()
	form := url.Values{"companyId": {b.srv.CompanyID()}, "locationId": {loc}}
	r := b.do(t, "POST", "/oauth/location-token", V3, company, "application/x-www-form-urlencoded", form.Encode())
	if r.status != http.StatusOK {
		t.Fatalf("location token: %d %s", r.status, r.body)
	}
	return r.json(t)["accessToken"].(string)
}

type searchPage struct {
	Contacts []struct {
		ID          string `json:"id"`
		DateUpdated string `json:"dateUpdated"`
		SearchAfter []any  `json:"searchAfter"`
	} `json:"contacts"`
	Total int `json:"total"`
}

func (b *testBundle) search(t *testing.T, tok string, body map[string]any) (resp, searchPage) {
	t.Helper()
	raw, _ := json.Marshal(body)
	r := b.do(t, "POST", "/contacts/search", V3, tok, "application/json", string(raw))
	var p searchPage
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("search page: %v", err)
		}
	}
	return r, p
}

func TestCodeFlowGivesCompanyTokenInBothVersions(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for _, v3 := range []bool{false, true} {
		q := url.Values{"response_type": {"code"}, "client_id": {DefaultClientID},
			"redirect_uri": {"http://127.0.0.1:53121/callback"}, "scope": {DefaultScopes}, "state": {"st-1"}}
		r := b.do(t, "GET", "/oauth/chooselocation?"+q.Encode(), "", "", "", "")
		if r.status != http.StatusFound {
			t.Fatalf("authorize: %d %s", r.status, r.body)
		}
		loc, _ := url.Parse(r.header.Get("Location"))
		if loc.Host != "127.0.0.1:53121" || loc.Query().Get("state") != "st-1" || loc.Query().Get("code") == "" {
			t.Fatalf("redirect %s: want the loopback port kept, state echoed and a code", loc)
		}
		code := loc.Query().Get("code")
		var tr resp
		if v3 {
			body, _ := json.Marshal(map[string]string{"clientId": DefaultClientID, "clientSecret": DefaultClientSecret,
				"grantType": "authorization_code", "code": code, "userType": "Company", "redirectUri": "http://127.0.0.1:53121/callback"})
			tr = b.do(t, "POST", "/oauth/token", V3, "", "application/json", string(body))
		} else {
			form := url.Values{"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
				"grant_type": {"authorization_code"}, "code": {code}, "user_type": {"Company"}, "redirect_uri": {"http://127.0.0.1:53121/callback"}}
			tr = b.do(t, "POST", "/oauth/token", "", "", "application/x-www-form-urlencoded", form.Encode())
		}
		m := tr.json(t)
		access, refresh, exp := "access_token", "refresh_token", "expires_in"
		if v3 {
			access, refresh, exp = "accessToken", "refreshToken", "expiresIn"
		}
		if tr.status != 200 || !strings.HasPrefix(m[access].(string), "lc_at_") || !strings.HasPrefix(m[refresh].(string), "lc_rt_") ||
			m[exp] != float64(86399) || m["userType"] != "Company" || m["companyId"] != b.srv.CompanyID() {
			t.Fatalf("v3=%v token response: %d %s", v3, tr.status, tr.body)
		}
		// The code is single-use.
		form := url.Values{"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
			"grant_type": {"authorization_code"}, "code": {code}, "user_type": {"Company"}, "redirect_uri": {"http://127.0.0.1:53121/callback"}}
		if again := b.do(t, "POST", "/oauth/token", "", "", "application/x-www-form-urlencoded", form.Encode()); again.status != 400 {
			t.Fatalf("reused code: %d", again.status)
		}
	}
	if n := b.srv.Counters().Get(simkit.CountTokenGrants); n != 2 {
		t.Fatalf("token_grants = %d, want 2", n)
	}
}

func TestAuthorizePageValidates(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ok := url.Values{"response_type": {"code"}, "client_id": {DefaultClientID}, "redirect_uri": {"http://localhost:9999/callback"}, "state": {"s"}}
	for name, tc := range map[string]struct {
		mod    func(url.Values)
		status int
		errVal string
	}{
		"bad client":        {func(v url.Values) { v.Set("client_id", "other") }, 400, ""},
		"unregistered uri":  {func(v url.Values) { v.Set("redirect_uri", "https://evil.example.com/callback") }, 400, ""},
		"other path":        {func(v url.Values) { v.Set("redirect_uri", "http://localhost:9999/other") }, 400, ""},
		"bad response_type": {func(v url.Values) { v.Set("response_type", "token") }, 302, "unsupported_response_type"},
	} {
		v := url.Values{}
		for k, vv := range ok {
			v[k] = slices.Clone(vv)
		}
		tc.mod(v)
		r := b.do(t, "GET", "/oauth/chooselocation?"+v.Encode(), "", "", "", "")
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d", name, r.status, tc.status)
			continue
		}
		if tc.status == 400 && (r.header.Get("Location") != "" || !strings.Contains(r.header.Get("Content-Type"), "text/html")) {
			t.Errorf("%s: want an HTML error page and no redirect", name)
		}
		if tc.errVal != "" {
			loc, _ := url.Parse(r.header.Get("Location"))
			if loc.Query().Get("error") != tc.errVal || loc.Query().Get("state") != "s" {
				t.Errorf("%s: redirect %s", name, loc)
			}
		}
	}
}

func TestReusedRefreshTokenIsRejectedAfterGrace(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	if r := b.refresh(t, p.Refresh); r.status != 200 {
		t.Fatalf("first refresh: %d %s", r.status, r.body)
	}
	b.clock.Advance(GraceWindow + time.Second)
	r := b.refresh(t, p.Refresh)
	if r.status != 400 || string(r.body) != `{"message":"Invalid grant: refresh token is invalid","statusCode":400}` {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshReuse); n != 1 {
		t.Fatalf("refresh_reuse = %d, want 1", n)
	}
	if r := b.refresh(t, "lc_rt_never-issued"); r.status != 400 {
		t.Fatalf("unknown refresh token: %d", r.status)
	}
}

func TestSameRefreshTokenInsideGraceGetsSamePair(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	first := b.refresh(t, p.Refresh).json(t)
	b.clock.Advance(GraceWindow - time.Second)
	second := b.refresh(t, p.Refresh)
	m := second.json(t)
	if second.status != 200 || m["access_token"] != first["access_token"] || m["refresh_token"] != first["refresh_token"] {
		t.Fatalf("inside the grace window the same pair must come back:\nfirst  %v\nsecond %v", first, m)
	}
	if m["refresh_token"] == p.Refresh {
		t.Fatal("the refresh token was not rotated")
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshReuse); n != 0 {
		t.Fatalf("refresh_reuse = %d inside the grace window", n)
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshes); n != 1 {
		t.Fatalf("refreshes = %d, want 1 rotation", n)
	}
}

func TestV3RefreshTakesJSONCamelCase(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	snake, _ := json.Marshal(map[string]string{"client_id": DefaultClientID, "client_secret": DefaultClientSecret,
		"grant_type": "refresh_token", "refresh_token": p.Refresh})
	r := b.do(t, "POST", "/oauth/token", V3, "", "application/json", string(snake))
	if r.status != 400 || r.json(t)["message"] != "Missing parameter: clientId" {
		t.Fatalf("v3 with snake_case: %d %s", r.status, r.body)
	}
	camel, _ := json.Marshal(map[string]string{"clientId": DefaultClientID, "clientSecret": DefaultClientSecret,
		"grantType": "refresh_token", "refreshToken": p.Refresh, "userType": "Company"})
	r = b.do(t, "POST", "/oauth/token", V3, "", "application/json", string(camel))
	m := r.json(t)
	if r.status != 200 || m["accessToken"] == nil || m["refreshToken"] == nil || m["access_token"] != nil {
		t.Fatalf("v3 refresh: %d %s", r.status, r.body)
	}
}

func TestLocationNotActiveKeepsRefreshToken(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	b.srv.SetInactive(true)
	r := b.refresh(t, p.Refresh)
	if r.status != 400 || r.json(t)["message"] != MsgNotActive {
		t.Fatalf("inactive: %d %s", r.status, r.body)
	}
	b.srv.SetInactive(false)
	if r := b.refresh(t, p.Refresh); r.status != 200 {
		t.Fatalf("the refresh token must survive 'Location is not active': %d %s", r.status, r.body)
	}
}

func TestDroppedRefreshResponseRotatesAnyway(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Faults: simkit.FaultSettings{DropRefreshResponses: 1}})
	p := b.srv.Authorize("")
	form := url.Values{"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
		"grant_type": {"refresh_token"}, "refresh_token": {p.Refresh}}
	res, err := b.http.PostForm(b.srv.URL+"/oauth/token", form)
	if err == nil {
		res.Body.Close()
		t.Fatal("want the connection dropped")
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshes); n != 1 {
		t.Fatalf("refreshes = %d: the token must rotate before the drop", n)
	}
	// A retry inside the grace window recovers the lost pair.
	if r := b.refresh(t, p.Refresh); r.status != 200 {
		t.Fatalf("retry inside grace: %d %s", r.status, r.body)
	}
}

func TestMissingVersionIs401BeforeAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	r := b.do(t, "POST", "/contacts/search", "", "", "application/json", `{}`)
	if r.status != 401 || string(r.body) != `{"error":"Unauthorized","message":"version header was not found.","statusCode":401}` {
		t.Fatalf("missing Version: %d %s", r.status, r.body)
	}
	r = b.do(t, "POST", "/contacts/search", V3, "lc_at_bogus", "application/json", `{}`)
	if r.status != 401 || r.json(t)["message"] != MsgInvalidJWT {
		t.Fatalf("bad token: %d %s", r.status, r.body)
	}
}

func TestExpiredTokenIsInvalidJWT(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{TokenTTL: time.Hour})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	b.clock.Advance(time.Hour)
	r, _ := b.search(t, lt, map[string]any{"locationId": loc, "pageLimit": 10})
	if r.status != 401 || r.json(t)["message"] != MsgInvalidJWT {
		t.Fatalf("expired location token: %d %s", r.status, r.body)
	}
}

func TestOldPathsUnderOtherVersion(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	q := "?companyId=" + b.srv.CompanyID() + "&appId=" + b.srv.AppID()
	r := b.do(t, "GET", "/oauth/installedLocations"+q, V3, p.Access, "", "")
	want := `{"message":"Endpoint GET /oauth/installedLocations is not available in API version v3. Use GET /oauth/installed-locations instead.","statusCode":400}`
	if r.status != 400 || string(r.body) != want {
		t.Fatalf("old path under v3: %d %s", r.status, r.body)
	}
	r = b.do(t, "POST", "/oauth/locationToken", V3, p.Access, "application/x-www-form-urlencoded", "")
	if r.status != 400 || !strings.Contains(r.json(t)["message"].(string), "not available in API version v3") {
		t.Fatalf("locationToken under v3: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/oauth/installed-locations"+q, V2021, p.Access, "", ""); r.status != 404 {
		t.Fatalf("v3 path under 2021-07-28: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/oauth/installedLocations"+q, V2021, p.Access, "", ""); r.status != 200 {
		t.Fatalf("2021 path under 2021-07-28: %d %s", r.status, r.body)
	}
}

func TestScopeAndClassErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	r, _ := b.search(t, p.Access, map[string]any{"locationId": loc, "pageLimit": 10})
	if r.status != 401 || r.json(t)["message"] != MsgAuthClass {
		t.Fatalf("company token on contacts: %d %s", r.status, r.body)
	}
	lt := b.locationToken(t, p.Access, loc)
	r = b.do(t, "GET", "/oauth/installed-locations?companyId="+b.srv.CompanyID()+"&appId="+b.srv.AppID(), V3, lt, "", "")
	if r.status != 401 || r.json(t)["message"] != MsgAuthClass {
		t.Fatalf("location token on installed locations: %d %s", r.status, r.body)
	}
	// A grant without contacts.readonly: its location tokens cannot search.
	_, narrow := b.srv.tokens.NewGrant("x", b.srv.companyMeta("oauth.readonly oauth.write"))
	r, _ = b.search(t, b.locationToken(t, narrow.Access, loc), map[string]any{"locationId": loc, "pageLimit": 10})
	if r.status != 401 || r.json(t)["message"] != MsgScope {
		t.Fatalf("missing scope: %d %s", r.status, r.body)
	}
}

func TestForbiddenLocation403(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 3, ForbiddenLocations: 1})
	p := b.srv.Authorize("")
	locs := b.srv.LocationIDs()
	want := `{"error":"Forbidden","message":"The token does not have access to this location.","statusCode":403}`
	// A token for one location asking for another.
	r, _ := b.search(t, b.locationToken(t, p.Access, locs[0]), map[string]any{"locationId": locs[1], "pageLimit": 10})
	if r.status != 403 || string(r.body) != want {
		t.Fatalf("other location: %d %s", r.status, r.body)
	}
	// The seeded forbidden location, and one forbidden later through the admin API.
	r, _ = b.search(t, b.locationToken(t, p.Access, locs[2]), map[string]any{"locationId": locs[2], "pageLimit": 10})
	if r.status != 403 || string(r.body) != want {
		t.Fatalf("forbidden location: %d %s", r.status, r.body)
	}
	admin := b.do(t, "PUT", "/_admin/locations/"+locs[0]+"/forbidden", "", "", "application/json", `{"forbidden":true}`)
	if admin.status != 204 {
		t.Fatalf("admin forbid: %d %s", admin.status, admin.body)
	}
	r, _ = b.search(t, b.locationToken(t, p.Access, locs[0]), map[string]any{"locationId": locs[0], "pageLimit": 10})
	if r.status != 403 {
		t.Fatalf("admin-forbidden location: %d", r.status)
	}
	truth := b.srv.GroundTruth()
	if !truth[0].Restricted || truth[1].Restricted || !truth[2].Restricted {
		t.Fatalf("ground truth restrictions: %v %v %v", truth[0].Restricted, truth[1].Restricted, truth[2].Restricted)
	}
}

func TestInstalledLocationsPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Locations: 5, ContactsPerLocation: 1})
	p := b.srv.Authorize("")
	want := b.srv.LocationIDs()
	q := "?isInstalled=true&companyId=" + b.srv.CompanyID() + "&appId=" + b.srv.AppID()

	var got []string
	token := ""
	for range 10 {
		r := b.do(t, "GET", "/oauth/installed-locations"+q+"&pageSize=2&pageToken="+token, V3, p.Access, "", "")
		var page struct {
			Items      []installedLocation `json:"items"`
			Pagination struct {
				HasNextPage   bool   `json:"hasNextPage"`
				NextPageToken string `json:"nextPageToken"`
				TotalRecords  int    `json:"totalRecords"`
			} `json:"pagination"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &page) != nil || page.Pagination.TotalRecords != 5 {
			t.Fatalf("v3 page: %d %s", r.status, r.body)
		}
		for _, l := range page.Items {
			got = append(got, l.ID)
		}
		if !page.Pagination.HasNextPage {
			break
		}
		token = page.Pagination.NextPageToken
	}
	if !slices.Equal(got, want) {
		t.Fatalf("v3 paging: got %v want %v", got, want)
	}

	got = nil
	for skip := 0; ; skip += 2 {
		r := b.do(t, "GET", fmt.Sprintf("/oauth/installedLocations%s&skip=%d&limit=2", q, skip), V2021, p.Access, "", "")
		var page struct {
			Locations []installedLocation `json:"locations"`
			Count     int                 `json:"count"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &page) != nil || page.Count != 5 {
			t.Fatalf("2021 page: %d %s", r.status, r.body)
		}
		if len(page.Locations) == 0 {
			break
		}
		for _, l := range page.Locations {
			got = append(got, l.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("2021 paging: got %v want %v", got, want)
	}

	r := b.do(t, "GET", "/oauth/installed-locations?companyId="+b.srv.CompanyID(), V3, p.Access, "", "")
	if m := r.json(t); r.status != 400 || m["error"].(map[string]any)["code"] != "INVALID_ARGUMENT" {
		t.Fatalf("v3 missing appId: want an AIP envelope, got %d %s", r.status, r.body)
	}
	r = b.do(t, "GET", "/oauth/installedLocations?companyId="+b.srv.CompanyID(), V2021, p.Access, "", "")
	if m := r.json(t); r.status != 422 || !slices.Equal(m["message"].([]any), []any{"appId should not be empty"}) {
		t.Fatalf("2021 missing appId: %d %s", r.status, r.body)
	}
}

func TestLocationTokenCanAnswer201(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{LocationToken201: true})
	p := b.srv.Authorize("")
	form := url.Values{"companyId": {b.srv.CompanyID()}, "locationId": {b.srv.LocationIDs()[1]}}
	r := b.do(t, "POST", "/oauth/locationToken", V2021, p.Access, "application/x-www-form-urlencoded", form.Encode())
	m := r.json(t)
	if r.status != 201 || m["access_token"] == nil || m["locationId"] != b.srv.LocationIDs()[1] || m["expires_in"] != float64(86399) {
		t.Fatalf("location token: %d %s", r.status, r.body)
	}
	r = b.do(t, "POST", "/oauth/locationToken", V2021, p.Access, "application/x-www-form-urlencoded", "companyId="+b.srv.CompanyID())
	if m := r.json(t); r.status != 422 || len(m["message"].([]any)) == 0 {
		t.Fatalf("missing locationId: %d %s", r.status, r.body)
	}
}

func TestSearchValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 5})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	for name, body := range map[string]map[string]any{
		"no locationId": {"pageLimit": 10},
		"no pageLimit":  {"locationId": loc},
		"pageLimit 101": {"locationId": loc, "pageLimit": 101},
		"bad filter":    {"locationId": loc, "pageLimit": 10, "filters": []any{map[string]any{"field": "email", "operator": "eq", "value": "x"}}},
		"bad after":     {"locationId": loc, "pageLimit": 10, "searchAfter": []any{"x"}},
	} {
		r, _ := b.search(t, lt, body)
		if r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
			continue
		}
		if msgs, ok := r.json(t)["message"].([]any); !ok || len(msgs) == 0 {
			t.Errorf("%s: 422 message must be an array: %s", name, r.body)
		}
	}
}

func TestSearchFiltersSortsAndCarriesSearchAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 300})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	from := t0.AddDate(0, -6, 0)
	to := t0.AddDate(0, -3, 0)
	inRange := 0
	for _, lt := range b.srv.GroundTruth()[0].Leads {
		if !lt.UpdatedAt.Before(from) && !lt.UpdatedAt.After(to) {
			inRange++
		}
	}
	filter := []any{map[string]any{"field": "dateUpdated", "operator": "range",
		"value": map[string]any{"gte": isoMillis(from), "lte": isoMillis(to)}}}
	for _, dir := range []string{"asc", "desc"} {
		_, page := b.search(t, lt, map[string]any{"locationId": loc, "pageLimit": 100, "filters": filter,
			"sort": []any{map[string]any{"field": "dateUpdated", "direction": dir}}})
		if page.Total != inRange || len(page.Contacts) != min(inRange, 100) || inRange == 0 {
			t.Fatalf("%s: total %d, %d contacts; want %d in range", dir, page.Total, len(page.Contacts), inRange)
		}
		for i, c := range page.Contacts {
			u, _ := time.Parse(time.RFC3339, c.DateUpdated)
			if u.Before(from) || u.After(to) {
				t.Fatalf("%s: contact outside the range: %s", dir, c.DateUpdated)
			}
			if len(c.SearchAfter) != 2 || c.SearchAfter[0] != float64(u.UnixMilli()) || c.SearchAfter[1] != c.ID {
				t.Fatalf("searchAfter %v for %s %s", c.SearchAfter, c.DateUpdated, c.ID)
			}
			if i > 0 {
				prev := page.Contacts[i-1]
				c1 := strings.Compare(prev.DateUpdated+prev.ID, c.DateUpdated+c.ID)
				if (dir == "asc" && c1 >= 0) || (dir == "desc" && c1 <= 0) {
					t.Fatalf("%s order broken at %d", dir, i)
				}
			}
		}
	}
}

// TestPagingWhileContactsChange: every contact arrives, unchanged ones exactly once, while
// contacts are updated between pages (updated ones move to the end of the sort).
func TestPagingWhileContactsChange(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 450})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	ids := b.srv.ContactIDs(loc)

	seen := map[string]int{}
	updated := map[string]bool{}
	var after []any
	for page := 0; ; page++ {
		body := map[string]any{"locationId": loc, "pageLimit": 50,
			"sort": []any{map[string]any{"field": "dateUpdated", "direction": "asc"}}}
		if after != nil {
			body["searchAfter"] = after
		}
		r, sp := b.search(t, lt, body)
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		for _, c := range sp.Contacts {
			seen[c.ID]++
		}
		if len(sp.Contacts) < 50 {
			break
		}
		after = sp.Contacts[len(sp.Contacts)-1].SearchAfter
		// Touch one contact already paged past and one not reached yet.
		for _, id := range []string{ids[(page*37)%len(ids)], ids[(page*53+200)%len(ids)]} {
			b.clock.Advance(time.Millisecond)
			if err := b.srv.UpdateContact(loc, id); err != nil {
				t.Fatal(err)
			}
			updated[id] = true
		}
		if page > 100 {
			t.Fatal("paging does not end")
		}
	}
	for _, id := range ids {
		switch {
		case seen[id] == 0:
			t.Errorf("contact %s never returned", id)
		case !updated[id] && seen[id] != 1:
			t.Errorf("unchanged contact %s returned %d times", id, seen[id])
		}
	}
	if len(updated) == 0 {
		t.Fatal("test did not update anything")
	}
}

func TestRateLimitHeadersAnd429(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Burst: 3, ContactsPerLocation: 2})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	body := map[string]any{"locationId": loc, "pageLimit": 10}
	b.clock.Advance(10*time.Second - time.Duration(t0.UnixNano()%int64(10*time.Second))) // window start
	for i := range 3 {
		r, _ := b.search(t, lt, body)
		if r.status != 200 || r.header.Get("X-RateLimit-Remaining") != fmt.Sprint(2-i) ||
			r.header.Get("X-RateLimit-Max") != "3" || r.header.Get("X-RateLimit-Interval-Milliseconds") != "10000" ||
			r.header.Get("X-RateLimit-Limit-Daily") != "200000" || r.header.Get("X-RateLimit-Daily-Remaining") != fmt.Sprint(199999-i) {
			t.Fatalf("request %d: %d headers %v", i, r.status, r.header)
		}
	}
	r, _ := b.search(t, lt, body)
	if r.status != 429 || string(r.body) != Body429 || r.header.Get("Retry-After") != "" ||
		r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Max") != "3" ||
		r.header.Get("X-RateLimit-Interval-Milliseconds") != "10000" || r.header.Get("X-RateLimit-Daily-Remaining") != "199997" {
		t.Fatalf("over the burst: %d %s %v", r.status, r.body, r.header)
	}
	// Another location has its own bucket; this one recovers in the next window.
	other := b.srv.LocationIDs()[1]
	if r, _ := b.search(t, b.locationToken(t, p.Access, other), map[string]any{"locationId": other, "pageLimit": 1}); r.status != 200 {
		t.Fatalf("other location: %d", r.status)
	}
	b.clock.Advance(10 * time.Second)
	if r, _ := b.search(t, lt, body); r.status != 200 {
		t.Fatalf("next window: %d", r.status)
	}
	if n := b.srv.Counters().Get(simkit.Count429); n != 1 {
		t.Fatalf("status_429 = %d", n)
	}
	// Error answers carry the headers too.
	for _, r := range []resp{
		b.do(t, "POST", "/contacts/search", "", "", "application/json", `{}`),
		b.do(t, "POST", "/contacts/search", V3, lt, "application/json", `{}`),
		b.refresh(t, "lc_rt_nope"),
	} {
		if r.header.Get("X-RateLimit-Max") == "" || r.header.Get("X-RateLimit-Daily-Remaining") == "" {
			t.Fatalf("%d answer without rate-limit headers: %v", r.status, r.header)
		}
	}
}

func TestDailyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Daily: 2, ContactsPerLocation: 2})
	p := b.srv.Authorize("")
	q := "/oauth/installed-locations?companyId=" + b.srv.CompanyID() + "&appId=" + b.srv.AppID()
	for range 2 {
		if r := b.do(t, "GET", q, V3, p.Access, "", ""); r.status != 200 {
			t.Fatalf("%d", r.status)
		}
	}
	r := b.do(t, "GET", q, V3, p.Access, "", "")
	if r.status != 429 || r.header.Get("X-RateLimit-Daily-Remaining") != "0" {
		t.Fatalf("over the daily quota: %d %v", r.status, r.header)
	}
}

func TestIndexLagAndDeletes(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 3, IndexLag: 5 * time.Second})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	b.clock.Advance(time.Minute)
	count := func() int {
		_, page := b.search(t, lt, map[string]any{"locationId": loc, "pageLimit": 100})
		return len(page.Contacts)
	}
	id, err := b.srv.CreateContact(loc)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("a new contact must not be searchable inside the lag: %d", n)
	}
	b.clock.Advance(5 * time.Second)
	if n := count(); n != 4 {
		t.Fatalf("after the lag: %d contacts, want 4", n)
	}
	if err := b.srv.DeleteContact(loc, id); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("a delete inside the lag is not visible yet: %d", n)
	}
	b.clock.Advance(5 * time.Second)
	if n := count(); n != 3 {
		t.Fatalf("deleted contacts vanish from search: %d", n)
	}
	for _, l := range b.srv.GroundTruth()[0].Leads {
		if l.ID == id {
			t.Fatal("deleted contact still in ground truth")
		}
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 2})
	loc := b.srv.LocationIDs()[0]
	r := b.do(t, "POST", "/_admin/locations/"+loc+"/contacts", "", "", "", "")
	id, _ := r.json(t)["id"].(string)
	if r.status != 201 || id == "" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	b.clock.Advance(time.Second)
	if r := b.do(t, "PATCH", "/_admin/locations/"+loc+"/contacts/"+id, "", "", "", ""); r.status != 204 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	var truth []simkit.AccountTruth
	if err := json.Unmarshal(b.do(t, "GET", "/_admin/truth", "", "", "", "").body, &truth); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range truth[0].Leads {
		if l.ID == id {
			found = l.UpdatedAt.Equal(t0.Add(time.Second))
		}
	}
	if !found {
		t.Fatalf("created+updated contact missing or stale in truth: %+v", truth[0].Leads)
	}
	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/contacts/"+id, "", "", "", ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	if r := b.do(t, "DELETE", "/_admin/locations/"+loc+"/contacts/"+id, "", "", "", ""); r.status != 404 {
		t.Fatalf("delete twice: %d", r.status)
	}
	if r := b.do(t, "PUT", "/_admin/faults", "", "", "application/json", `{"rate_429":1}`); r.status != 200 {
		t.Fatalf("faults: %d %s", r.status, r.body)
	}
	if r := b.do(t, "GET", "/oauth/installed-locations", V3, "", "", ""); r.status != 429 || string(r.body) != Body429 {
		t.Fatalf("injected 429: %d %s", r.status, r.body)
	}
	var snap simkit.Snapshot
	if err := json.Unmarshal(b.do(t, "GET", "/_admin/counters", "", "", "", "").body, &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Counters[simkit.Count429] != 1 || snap.Requests["oauth/installed-locations"]["429"] != 1 {
		t.Fatalf("counters: %+v", snap)
	}
	if r := b.do(t, "PUT", "/_admin/ttl", "", "", "application/json", `{"ttl":"90s"}`); r.status != 204 || b.srv.Tokens().TTL() != 90*time.Second {
		t.Fatalf("ttl: %d", r.status)
	}
	if r := b.do(t, "PUT", "/_admin/limits", "", "", "application/json", `{"max":5,"interval_ms":1000,"daily":10}`); r.status != 204 {
		t.Fatalf("limits: %d %s", r.status, r.body)
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	t.Parallel()
	opts := Options{Seed: 7, Clock: simkit.NewManualClock(t0), ContactsPerLocation: 20}
	a, b := New(opts), New(opts)
	ta, tb := a.GroundTruth(), b.GroundTruth()
	if a.CompanyID() != b.CompanyID() || len(ta) != 3 || len(ta[0].Leads) != 20 {
		t.Fatalf("company %s vs %s, %d accounts", a.CompanyID(), b.CompanyID(), len(ta))
	}
	for i := range ta {
		if ta[i].AccountID != tb[i].AccountID || !slices.Equal(ta[i].Leads, tb[i].Leads) {
			t.Fatalf("account %d differs between two fakes of the same seed", i)
		}
	}
	if c := New(Options{Seed: 8, Clock: simkit.NewManualClock(t0)}); c.CompanyID() == a.CompanyID() {
		t.Fatal("another seed gives the same data")
	}
	// Dates spread over the two years before DataEnd.
	var oldest, newest time.Time
	for _, l := range ta[0].Leads {
		if oldest.IsZero() || l.UpdatedAt.Before(oldest) {
			oldest = l.UpdatedAt
		}
		if l.UpdatedAt.After(newest) {
			newest = l.UpdatedAt
		}
	}
	if end := a.Options().DataEnd; newest.After(end) || oldest.Before(end.AddDate(-2, 0, 0)) || newest.Sub(oldest) < 180*24*time.Hour {
		t.Fatalf("dates %s..%s", oldest, newest)
	}
}

func TestContactsCarryVendorFields(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 60})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	r, _ := b.search(t, b.locationToken(t, p.Access, loc), map[string]any{"locationId": loc, "pageLimit": 60})
	var page struct {
		Contacts []map[string]any `json:"contacts"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Contacts) != 60 {
		t.Fatalf("%v %d", err, len(page.Contacts))
	}
	var campaigns, dobs, customs, customers int
	for _, c := range page.Contacts {
		for _, k := range []string{"id", "locationId", "firstName", "lastName", "email", "phone", "type", "source",
			"tags", "dateAdded", "dateUpdated", "customFields", "address", "city", "postalCode", "searchAfter"} {
			if _, ok := c[k]; !ok {
				t.Fatalf("contact without %q", k)
			}
		}
		if a, ok := c["attributionSource"].(map[string]any); ok && a["campaign"] != nil && a["sessionSource"] != nil {
			campaigns++
		}
		if _, ok := c["dateOfBirth"].(float64); ok {
			dobs++
		}
		if cf := c["customFields"].([]any); len(cf) > 0 {
			customs++
		}
		if c["type"] == "customer" {
			customers++
		}
	}
	if campaigns == 0 || dobs == 0 || customs != 60 || customers == 0 {
		t.Fatalf("campaigns %d, birthdays %d, custom fields %d, customers %d", campaigns, dobs, customs, customers)
	}
}

// TestPagingDuringConcurrentUpdates: a writer updates contacts while a reader pages through
// them; the reader sees every contact, and the untouched ones exactly once.
func TestPagingDuringConcurrentUpdates(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{ContactsPerLocation: 600})
	p := b.srv.Authorize("")
	loc := b.srv.LocationIDs()[0]
	lt := b.locationToken(t, p.Access, loc)
	ids := b.srv.ContactIDs(loc)

	done := make(chan struct{})
	progress := make(chan string, len(ids)*4) // never blocks the writer
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			id := ids[(i*97)%len(ids)]
			b.clock.Advance(time.Millisecond) // the only writer: update times strictly increase
			if err := b.srv.UpdateContact(loc, id); err != nil {
				t.Error(err)
				return
			}
			select {
			case progress <- id:
			default:
				return
			}
		}
	}()
	updated := map[string]bool{}
	seen := map[string]int{}
	var after []any
	for page := 0; page < 200; page++ {
		body := map[string]any{"locationId": loc, "pageLimit": 40,
			"sort": []any{map[string]any{"field": "dateUpdated", "direction": "asc"}}}
		if after != nil {
			body["searchAfter"] = after
		}
		r, sp := b.search(t, lt, body)
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		for _, c := range sp.Contacts {
			seen[c.ID]++
		}
		if len(sp.Contacts) < 40 {
			break
		}
		after = sp.Contacts[len(sp.Contacts)-1].SearchAfter
		updated[<-progress] = true // at least one write between any two pages
	}
	close(done)
	<-writerDone
	for len(progress) > 0 {
		updated[<-progress] = true
	}
	for _, id := range ids {
		if seen[id] == 0 {
			t.Errorf("contact %s never returned", id)
		} else if !updated[id] && seen[id] != 1 {
			t.Errorf("unchanged contact %s returned %d times", id, seen[id])
		}
	}
}
