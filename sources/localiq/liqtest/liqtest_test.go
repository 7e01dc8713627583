package liqtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

var t0 = time.Date(2026, 3, 10, 15, 4, 5, 0, time.UTC)

type bundle struct {
	srv   *liqtest.Server
	clock *simkit.ManualClock
	http  *http.Client
}

// setup starts a fake on a manual clock; the rate limit is off unless opts sets it.
func setup(t *testing.T, opts liqtest.Options) *bundle {
	t.Helper()
	clock := simkit.NewManualClock(t0)
	opts.Clock = clock
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	srv := liqtest.NewServer(opts)
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &bundle{srv: srv, clock: clock, http: c}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (b *bundle) do(t *testing.T, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = b.srv.URL + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

func (b *bundle) get(t *testing.T, path, token string) resp {
	return b.do(t, http.MethodGet, path, token, nil)
}

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
	return v
}

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	CreatedAt    int64  `json:"created_at"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func grant(kind string, kv ...string) map[string]string {
	m := map[string]string{"client_id": liqtest.DefaultClientID, "client_secret": liqtest.DefaultClientSecret, "grant_type": kind}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func (b *bundle) refresh(t *testing.T, rt string) (resp, tokenResp) {
	t.Helper()
	r := b.do(t, http.MethodPost, "/oauth/token", "", grant("refresh_token", "refresh_token", rt))
	return r, decode[tokenResp](t, r)
}

func (b *bundle) firstPlain(t *testing.T) liqtest.Advertiser {
	t.Helper()
	for _, a := range b.srv.Advertisers() {
		if !a.HIPAAProtected && a.ActiveState == 2 {
			return a
		}
	}
	t.Fatal("no plain advertiser")
	return liqtest.Advertiser{}
}

func (b *bundle) find(t *testing.T, pred func(liqtest.Advertiser) bool) liqtest.Advertiser {
	t.Helper()
	for _, a := range b.srv.Advertisers() {
		if pred(a) {
			return a
		}
	}
	t.Fatal("no such advertiser")
	return liqtest.Advertiser{}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{RedirectURIs: []string{"http://127.0.0.1/cb"}})
	redirect := "http://127.0.0.1:49152/cb" // loopback: any port
	q := url.Values{"client_id": {liqtest.DefaultClientID}, "response_type": {"code"}, "redirect_uri": {redirect}, "state": {"xyz 1"}}
	r := b.get(t, "/oauth/authorize?"+q.Encode(), "")
	if r.status != http.StatusFound {
		t.Fatalf("authorize: %d %s", r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil || loc.Host != "127.0.0.1:49152" || loc.Query().Get("state") != "xyz 1" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect to %v", r.header.Get("Location"))
	}
	code := loc.Query().Get("code")

	// The code is bound to its redirect URI.
	r = b.do(t, http.MethodPost, "/oauth/token", "", grant("authorization_code", "code", code, "redirect_uri", "http://127.0.0.1:1/cb"))
	if tr := decode[tokenResp](t, r); r.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("wrong redirect: %d %s", r.status, r.body)
	}
	// A failed redemption spends the code, so start again.
	r = b.get(t, "/oauth/authorize?"+q.Encode(), "")
	loc, _ = url.Parse(r.header.Get("Location"))
	code = loc.Query().Get("code")
	r = b.do(t, http.MethodPost, "/oauth/token", "", grant("authorization_code", "code", code, "redirect_uri", redirect))
	tr := decode[tokenResp](t, r)
	if r.status != 200 || tr.TokenType != "bearer" || tr.ExpiresIn != 7200 || tr.CreatedAt != t0.Unix() ||
		!strings.HasPrefix(tr.AccessToken, "liq_at_") || !strings.HasPrefix(tr.RefreshToken, "liq_rt_") {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	// Codes are single use.
	r = b.do(t, http.MethodPost, "/oauth/token", "", grant("authorization_code", "code", code, "redirect_uri", redirect))
	if r.status != 400 {
		t.Fatalf("code reuse: %d", r.status)
	}
	if got := b.srv.Counters().Get(simkit.CountTokenGrants); got != 1 {
		t.Fatalf("token_grants = %d", got)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{RedirectURIs: []string{"https://app.example/cb"}})
	for name, q := range map[string]url.Values{
		"bad client":   {"client_id": {"nope"}, "response_type": {"code"}, "redirect_uri": {"https://app.example/cb"}},
		"bad redirect": {"client_id": {liqtest.DefaultClientID}, "response_type": {"code"}, "redirect_uri": {"https://evil.example/cb"}},
		"port on non-loopback": {"client_id": {liqtest.DefaultClientID}, "response_type": {"code"},
			"redirect_uri": {"https://app.example:8443/cb"}},
	} {
		r := b.get(t, "/oauth/authorize?"+q.Encode(), "")
		if r.status != 400 || r.header.Get("Location") != "" || !strings.Contains(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %v", name, r.status, r.header)
		}
	}
	q := url.Values{"client_id": {liqtest.DefaultClientID}, "response_type": {"token"}, "redirect_uri": {"https://app.example/cb"}, "state": {"s"}}
	r := b.get(t, "/oauth/authorize?"+q.Encode(), "")
	loc, _ := url.Parse(r.header.Get("Location"))
	if r.status != 302 || loc.Query().Get("error") != "unsupported_response_type" || loc.Query().Get("state") != "s" {
		t.Fatalf("bad response_type: %d %v", r.status, loc)
	}
}

func TestAuthorizationCodeExpiresAfterTenMinutes(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	q := url.Values{"client_id": {liqtest.DefaultClientID}, "response_type": {"code"}, "redirect_uri": {liqtest.DefaultRedirectURI}}
	r := b.get(t, "/oauth/authorize?"+q.Encode(), "")
	loc, _ := url.Parse(r.header.Get("Location"))
	b.clock.Advance(10*time.Minute + time.Second)
	r = b.do(t, http.MethodPost, "/oauth/token", "", grant("authorization_code", "code", loc.Query().Get("code"), "redirect_uri", liqtest.DefaultRedirectURI))
	if tr := decode[tokenResp](t, r); r.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("expired code: %d %s", r.status, r.body)
	}
}

func TestPasswordGrant(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{SandboxUser: "Ops@Agency.example", SandboxPassword: "hunter2", TokenTTL: time.Hour})
	r := b.do(t, http.MethodPost, "/oauth/token", "", grant("password", "username", "ops@agency.example", "password", "hunter2"))
	tr := decode[tokenResp](t, r)
	if r.status != 200 || tr.ExpiresIn != 3600 || tr.RefreshToken == "" {
		t.Fatalf("password grant: %d %s", r.status, r.body)
	}
	if r := b.get(t, "/identities/v3?user=ops@agency.example", tr.AccessToken); r.status != 200 {
		t.Fatalf("identities with password-grant token: %d", r.status)
	}
	r = b.do(t, http.MethodPost, "/oauth/token", "", grant("password", "username", "ops@agency.example", "password", "wrong"))
	if tr := decode[tokenResp](t, r); r.status != 400 || tr.Error != "invalid_grant" || tr.Description == "" {
		t.Fatalf("bad password: %d %s", r.status, r.body)
	}
	// Form bodies are refused: the vendor documents JSON.
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/oauth/token", strings.NewReader("grant_type=password"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("form body: %d", res.StatusCode)
	}
	// A bad client secret is invalid_client.
	g := grant("password", "username", "ops@agency.example", "password", "hunter2")
	g["client_secret"] = "x"
	if r := b.do(t, http.MethodPost, "/oauth/token", "", g); r.status != 401 || decode[tokenResp](t, r).Error != "invalid_client" {
		t.Fatalf("bad secret: %d %s", r.status, r.body)
	}
}

func TestRefreshRotatesAndRejectsReuse(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	p := b.srv.Authorize("")
	b.clock.Advance(time.Minute)
	r, tr := b.refresh(t, p.Refresh)
	if r.status != 200 || tr.RefreshToken == p.Refresh || tr.AccessToken == p.Access || tr.CreatedAt != t0.Add(time.Minute).Unix() {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	r, used := b.refresh(t, p.Refresh)
	if r.status != 400 || used.Error != "invalid_grant" || used.Description == "" {
		t.Fatalf("reused refresh token: %d %s", r.status, r.body)
	}
	if got := b.srv.Counters().Get(simkit.CountRefreshReuse); got != 1 {
		t.Fatalf("refresh_reuse = %d", got)
	}
	// The rotated token still works once.
	if r, _ := b.refresh(t, tr.RefreshToken); r.status != 200 {
		t.Fatalf("rotated refresh: %d", r.status)
	}
}

func TestRefreshRevokesPreviousAccessToken(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	p := b.srv.Authorize("")
	user := b.srv.Options().SandboxUser
	if r := b.get(t, "/identities/v3?user="+user, p.Access); r.status != 200 {
		t.Fatalf("before refresh: %d", r.status)
	}
	_, tr := b.refresh(t, p.Refresh)
	r := b.get(t, "/identities/v3?user="+user, p.Access)
	if r.status != 401 || string(r.body) != `{"message":"Unauthorized"}` {
		t.Fatalf("old access token after refresh: %d %s", r.status, r.body)
	}
	if r := b.get(t, "/identities/v3?user="+user, tr.AccessToken); r.status != 200 {
		t.Fatalf("new access token: %d", r.status)
	}
}

func TestExpiredAccessTokenIs401(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	b.srv.Tokens().SetTTL(30 * time.Second)
	p := b.srv.Authorize("")
	b.clock.Advance(31 * time.Second)
	r := b.get(t, "/identities/v3?user="+b.srv.Options().SandboxUser, p.Access)
	if r.status != 401 || string(r.body) != `{"message":"Unauthorized"}` {
		t.Fatalf("expired: %d %s", r.status, r.body)
	}
	if r := b.get(t, "/identities/v3?user=x", ""); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
}

func TestDropRefreshResponseRotatesAnyway(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Faults: simkit.FaultSettings{DropRefreshResponses: 1}})
	p := b.srv.Authorize("")
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/oauth/token", strings.NewReader(
		fmt.Sprintf(`{"client_id":%q,"client_secret":%q,"grant_type":"refresh_token","refresh_token":%q}`,
			liqtest.DefaultClientID, liqtest.DefaultClientSecret, p.Refresh)))
	req.Header.Set("Content-Type", "application/json")
	if res, err := b.http.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("dropped refresh answered %d", res.StatusCode)
	}
	if r, _ := b.refresh(t, p.Refresh); r.status != 400 {
		t.Fatalf("the dropped refresh must have spent the token: %d", r.status)
	}
}

type identities struct {
	AdvertiserCount int `json:"advertiser_count"`
	Page            int `json:"page"`
	PageSize        int `json:"page_size"`
	Advertisers     []struct {
		GMAID          string `json:"gmaid"`
		Name           string `json:"name"`
		HIPAA          bool   `json:"hipaa_protected"`
		ActiveState    int    `json:"active_state"`
		PrivilegeLevel int    `json:"privilege_level"`
	} `json:"authorized_advertisers"`
	Users []struct {
		Email          string `json:"email"`
		PrivilegeLevel int    `json:"privilege_level"`
	} `json:"users"`
}

func TestIdentitiesPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 7})
	tok := b.srv.Authorize("").Access
	user := url.QueryEscape(b.srv.Options().SandboxUser)
	var got []string
	states := map[int]int{}
	hipaa := 0
	for page := 1; page <= 4; page++ {
		id := decode[identities](t, b.get(t, fmt.Sprintf("/identities/v3?user=%s&page=%d&page_size=3", user, page), tok))
		if id.AdvertiserCount != 7 || id.Page != page || id.PageSize != 3 || len(id.Users) != 1 || id.Users[0].PrivilegeLevel != 2 {
			t.Fatalf("page %d: %+v", page, id)
		}
		if want := min(3, max(0, 7-(page-1)*3)); len(id.Advertisers) != want {
			t.Fatalf("page %d has %d advertisers, want %d", page, len(id.Advertisers), want)
		}
		for _, a := range id.Advertisers {
			got = append(got, a.GMAID)
			states[a.ActiveState]++
			if a.HIPAA {
				hipaa++
			}
		}
	}
	var want []string
	for _, a := range b.srv.Advertisers() {
		want = append(want, a.GMAID)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paged gmaids %v, want %v", got, want)
	}
	if hipaa == 0 || states[0] == 0 || states[1] == 0 || states[2] == 0 {
		t.Fatalf("seed lacks variety: hipaa %d states %v", hipaa, states)
	}
	for _, g := range got {
		if !strings.HasPrefix(g, "USA_") && !strings.HasPrefix(g, "CAN_") && g != "TEST_1" {
			t.Fatalf("gmaid %q", g)
		}
	}
	// The active_state[] filter.
	id := decode[identities](t, b.get(t, "/identities/v3?user="+user+"&active_state[]=0", tok))
	if len(id.Advertisers) != states[0] {
		t.Fatalf("active_state[]=0: %d advertisers, want %d", len(id.Advertisers), states[0])
	}
	if r := b.get(t, "/identities/v3", tok); r.status != 422 {
		t.Fatalf("missing user: %d", r.status)
	}
}

type page struct {
	GMAID        string            `json:"global_master_advertiser_id"`
	Page         int               `json:"page"`
	TotalPages   int               `json:"total_pages"`
	Next         *string           `json:"next_page_location"`
	Interactions []json.RawMessage `json:"contact_interactions"`
}

type interactionDoc struct {
	ID         int64   `json:"id"`
	CreatedAt  string  `json:"created_at"`
	ReadAt     *string `json:"read_at"`
	ArchivedAt *string `json:"archived_at"`
	EventType  string  `json:"event_type"`
	Contact    struct {
		Email *string `json:"email"`
	} `json:"contact"`
	Call *struct {
		Duration json.RawMessage `json:"duration"`
	} `json:"call"`
}

// fetch reads every page of a window by following next_page_location.
func (b *bundle) fetch(t *testing.T, tok, gmaid, after, before, extra string) []interactionDoc {
	t.Helper()
	u := fmt.Sprintf("/crm/contact_interactions?global_master_advertiser_id=%s&created_after_date=%s&created_before_date=%s%s", gmaid, after, before, extra)
	var out []interactionDoc
	for n := 1; ; n++ {
		r := b.get(t, u, tok)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", u, r.status, r.body)
		}
		if string(r.body) == "[]" {
			return out
		}
		p := decode[page](t, r)
		if p.Page != n || p.GMAID != gmaid || len(p.Interactions) > liqtest.DefaultPageSize {
			t.Fatalf("page %d: page=%d gmaid=%s n=%d", n, p.Page, p.GMAID, len(p.Interactions))
		}
		for _, raw := range p.Interactions {
			out = append(out, decode[interactionDoc](t, resp{body: raw}))
		}
		if p.Next == nil {
			if p.Page != p.TotalPages {
				t.Fatalf("next_page_location null on page %d of %d", p.Page, p.TotalPages)
			}
			return out
		}
		if !strings.HasPrefix(*p.Next, b.srv.URL+"/crm/contact_interactions?") {
			t.Fatalf("next_page_location %q is not a full URL", *p.Next)
		}
		u = *p.Next
	}
}

func TestInteractionsPagingAndPastTheEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 130})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	all := b.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "")
	if len(all) != 130 {
		t.Fatalf("got %d interactions, want 130", len(all))
	}
	seen := map[int64]bool{}
	for _, it := range all {
		if seen[it.ID] {
			t.Fatalf("duplicate id %d", it.ID)
		}
		seen[it.ID] = true
	}
	p := decode[page](t, b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&created_after_date=2000-01-01&created_before_date=2100-01-01", tok))
	if p.TotalPages != 6 || len(p.Interactions) != 25 {
		t.Fatalf("first page: total_pages %d, %d interactions", p.TotalPages, len(p.Interactions))
	}
	r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&created_after_date=2000-01-01&created_before_date=2100-01-01&page=7", tok)
	if r.status != 200 || string(r.body) != "[]" {
		t.Fatalf("past the end: %d %s", r.status, r.body)
	}
	for _, q := range []string{"created_after_date=2000-01-01", "created_after_date=2000-1-1&created_before_date=2100-01-01",
		"created_after_date=2000-01-01&created_before_date=2100-01-01&event_type=sms", "created_after_date=2000-01-01&created_before_date=2100-01-01&page=0"} {
		if r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&"+q, tok); r.status != 422 {
			t.Errorf("%s: %d", q, r.status)
		}
	}
}

func TestNextPageLocationKeepsMountPrefix(t *testing.T) {
	t.Parallel()
	f := liqtest.New(liqtest.Options{Clock: simkit.NewManualClock(t0), RateLimit: -1, InteractionsPerAdvertiser: 60})
	mux := http.NewServeMux()
	mux.Handle("/localiq/", http.StripPrefix("/localiq", f.Handler()))
	b := &bundle{http: http.DefaultClient}
	srv := httptestServer(t, mux)
	a := f.Advertisers()[0]
	r := b.get(t, srv+"/localiq/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&created_after_date=2000-01-01&created_before_date=2100-01-01", f.Authorize("").Access)
	p := decode[page](t, r)
	if p.Next == nil || !strings.HasPrefix(*p.Next, srv+"/localiq/crm/contact_interactions?") {
		t.Fatalf("next_page_location %v", p.Next)
	}
}

func TestDateWindowIsCreationDateHalfOpen(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 200})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	all := b.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "")
	// Consecutive 30-day windows partition the history: each interaction exactly once.
	seen := map[int64]int{}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := start; d.Before(t0.AddDate(0, 0, 2)); d = d.AddDate(0, 0, 30) {
		for _, it := range b.fetch(t, tok, a.GMAID, d.Format("2006-01-02"), d.AddDate(0, 0, 30).Format("2006-01-02"), "") {
			seen[it.ID]++
			// The creation date in the advertiser's zone lies in [after, before).
			ct, err := time.Parse(time.RFC3339, it.CreatedAt)
			if err != nil {
				t.Fatalf("created_at %q: %v", it.CreatedAt, err)
			}
			loc := time.FixedZone("", offsetOf(t, a.TimeZone))
			day := ct.In(loc).Format("2006-01-02")
			if day < d.Format("2006-01-02") || day >= d.AddDate(0, 0, 30).Format("2006-01-02") {
				t.Fatalf("interaction %d created %s outside [%s, +30d)", it.ID, it.CreatedAt, d.Format("2006-01-02"))
			}
		}
	}
	for _, it := range all {
		if seen[it.ID] != 1 {
			t.Fatalf("interaction %d seen %d times across windows", it.ID, seen[it.ID])
		}
	}
	// An empty window (before == after) is past the end at once.
	if r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+"&created_after_date=2025-05-05&created_before_date=2025-05-05", tok); string(r.body) != "[]" {
		t.Fatalf("empty window: %s", r.body)
	}
	// event_type narrows the result to one type.
	calls := b.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "&event_type=call")
	n := 0
	for _, it := range all {
		if it.EventType == "call" {
			n++
		}
	}
	if len(calls) != n || n == 0 {
		t.Fatalf("event_type=call: %d, want %d", len(calls), n)
	}
	for _, c := range calls {
		if c.EventType != "call" {
			t.Fatalf("event_type filter leaked %s", c.EventType)
		}
	}
}

func offsetOf(t *testing.T, zone string) int {
	t.Helper()
	switch zone {
	case "America/Los_Angeles":
		return -8 * 3600
	case "America/Denver":
		return -7 * 3600
	case "America/Chicago":
		return -6 * 3600
	case "America/New_York":
		return -5 * 3600
	case "UTC":
		return 0
	}
	t.Fatalf("zone %s", zone)
	return 0
}

func TestInteractionsCarryTheDocumentedQuirks(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 300, Advertisers: 1})
	tok := b.srv.Authorize("").Access
	a := b.srv.Advertisers()[0]
	all := b.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "")
	var strDur, intDur, zulu, offset, nonLead int
	for _, it := range all {
		if strings.HasSuffix(it.CreatedAt, "Z") {
			zulu++
		} else {
			offset++
		}
		if it.Contact.Email != nil && *it.Contact.Email == liqtest.NonLeadChatEmail {
			nonLead++
		}
		if it.Call != nil {
			if len(it.Call.Duration) > 0 && it.Call.Duration[0] == '"' {
				strDur++
			} else {
				intDur++
			}
		}
	}
	if strDur == 0 || intDur == 0 || zulu == 0 || (offset == 0 && a.TimeZone != "UTC") || nonLead == 0 {
		t.Fatalf("quirks missing: string durations %d, int durations %d, Z %d, offsets %d, non-lead chats %d",
			strDur, intDur, zulu, offset, nonLead)
	}
}

// read_at and archived_at are nullable datetimes of an interaction
// (../shared/vendor-docs/localiq/_contact_interactions.md): seeded interactions have them or
// not, never before their creation nor after now, and an archived one is still listed.
func TestInteractionsAreReadAndArchived(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 300, Advertisers: 1})
	tok := b.srv.Authorize("").Access
	a := b.srv.Advertisers()[0]
	now := b.clock.Now()
	var read, unread, archived int
	for _, it := range b.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "") {
		created, err := time.Parse(time.RFC3339, it.CreatedAt)
		if err != nil {
			t.Fatalf("interaction %d: created_at %q: %v", it.ID, it.CreatedAt, err)
		}
		at := func(name string, s *string, after time.Time) time.Time {
			t.Helper()
			v, err := time.Parse(time.RFC3339, *s)
			if err != nil || v.Before(after) || v.After(now) {
				t.Fatalf("interaction %d: %s %q (%v): want a datetime from %v to now", it.ID, name, *s, err, after)
			}
			return v
		}
		if it.ReadAt == nil {
			unread++
			if it.ArchivedAt != nil {
				t.Fatalf("interaction %d archived unread", it.ID)
			}
			continue
		}
		read++
		readAt := at("read_at", it.ReadAt, created)
		if it.ArchivedAt != nil {
			archived++
			at("archived_at", it.ArchivedAt, readAt)
		}
	}
	if read == 0 || unread == 0 || archived == 0 {
		t.Fatalf("read %d, unread %d, archived %d: want some of each", read, unread, archived)
	}
	// An added interaction arrives unread.
	ids, err := b.srv.AddInteractions(liqtest.NewInteraction{GMAID: a.GMAID, EventType: "call"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode[interactionDoc](t, b.get(t, fmt.Sprintf("/crm/contact_interactions/%d", ids[0]), tok)); got.ReadAt != nil || got.ArchivedAt != nil {
		t.Fatalf("added interaction: read_at %v, archived_at %v; want both null", got.ReadAt, got.ArchivedAt)
	}
}

const notAuthorized = `{"name":"not_authorized","message":"You are not permitted to perform this action."}`

func TestHIPAAForbiddenUntilRoleGranted(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	tok := b.srv.Authorize("").Access
	h := b.find(t, func(a liqtest.Advertiser) bool { return a.HIPAAProtected && !a.AgencyCustomer })
	list := "/crm/contact_interactions?global_master_advertiser_id=" + h.GMAID + "&created_after_date=2000-01-01&created_before_date=2100-01-01"
	r := b.get(t, list, tok)
	if r.status != 403 || string(r.body) != notAuthorized {
		t.Fatalf("HIPAA without role: %d %s", r.status, r.body)
	}
	// The aggregate report is not HIPAA-gated.
	if r := b.get(t, "/client_reports/lead_detail/"+h.GMAID+"?start_date=2025-01-01&end_date=2025-01-31", tok); r.status != 200 {
		t.Fatalf("lead_detail on HIPAA advertiser: %d %s", r.status, r.body)
	}
	for _, at := range b.srv.GroundTruth() {
		if at.AccountID == h.GMAID && (!at.Restricted || len(at.Leads) != 0) {
			t.Fatalf("truth for HIPAA advertiser: %+v", at)
		}
	}
	// The admin grants the Agency Customer role: the same call now answers.
	user := url.PathEscape(b.srv.Options().SandboxUser)
	if r := b.do(t, http.MethodPut, "/_admin/users/"+user+"/role", "", map[string]bool{"agency_customer": true}); r.status != 204 {
		t.Fatalf("admin role: %d %s", r.status, r.body)
	}
	if r := b.get(t, list, tok); r.status != 200 {
		t.Fatalf("HIPAA with role: %d %s", r.status, r.body)
	}
	id := decode[identities](t, b.get(t, "/identities/v3?user="+url.QueryEscape(b.srv.Options().SandboxUser), tok))
	if id.Users[0].PrivilegeLevel != 3 {
		t.Fatalf("privilege level after role: %d", id.Users[0].PrivilegeLevel)
	}
	for _, at := range b.srv.GroundTruth() {
		if at.AccountID == h.GMAID && (at.Restricted || len(at.Leads) == 0) {
			t.Fatalf("truth after role: restricted %v, %d leads", at.Restricted, len(at.Leads))
		}
	}
}

// TestAgencyCustomerRolePerAdvertiser: the Agency Customer role is held per advertiser, and
// the identities answer reports privilege_level per authorized advertiser
// (_identity.md.erb); the lead endpoints and the ground truth follow it. By default the
// sandbox user holds it on the first HIPAA advertiser by gmaid, and on nothing else.
func TestAgencyCustomerRolePerAdvertiser(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 8, HIPAAShare: 0.4})
	tok := b.srv.Authorize("").Access
	user := b.srv.Options().SandboxUser
	var hipaa []string
	for _, a := range b.srv.Advertisers() {
		if a.HIPAAProtected {
			hipaa = append(hipaa, a.GMAID)
		}
	}
	slices.Sort(hipaa)
	if len(hipaa) < 3 {
		t.Fatalf("%d HIPAA advertisers, want 3", len(hipaa))
	}
	// check asserts that the user has the role on exactly the advertisers on, and a users
	// entry of privilege level userLevel.
	check := func(step string, userLevel int, on ...string) {
		t.Helper()
		id := decode[identities](t, b.get(t, "/identities/v3?user="+url.QueryEscape(user), tok))
		if len(id.Users) != 1 || id.Users[0].PrivilegeLevel != userLevel {
			t.Errorf("%s: users %+v, want privilege_level %d", step, id.Users, userLevel)
		}
		for _, a := range id.Advertisers {
			if want := map[bool]int{true: 3, false: 2}[slices.Contains(on, a.GMAID)]; a.PrivilegeLevel != want {
				t.Errorf("%s: %s has privilege_level %d, want %d", step, a.GMAID, a.PrivilegeLevel, want)
			}
		}
		for _, a := range b.srv.Advertisers() {
			if a.AgencyCustomer != slices.Contains(on, a.GMAID) {
				t.Errorf("%s: admin listing says role %v on %s", step, a.AgencyCustomer, a.GMAID)
			}
		}
		truth := map[string]bool{}
		for _, at := range b.srv.GroundTruth() {
			truth[at.AccountID] = at.Restricted
		}
		for _, g := range hipaa {
			readable := slices.Contains(on, g)
			want := map[bool]int{true: 200, false: 403}[readable]
			r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+g+"&created_after_date=2000-01-01&created_before_date=2100-01-01", tok)
			if r.status != want || truth[g] == readable {
				t.Errorf("%s: HIPAA advertiser %s answers %d (want %d), truth restricted %v", step, g, r.status, want, truth[g])
			}
		}
	}
	check("default", 2, hipaa[0])

	role := func(email, path string, body any, want int) {
		t.Helper()
		if r := b.do(t, http.MethodPut, "/_admin/users/"+url.PathEscape(email)+path, "", body); r.status != want {
			t.Fatalf("PUT /_admin/users/%s%s: %d %s, want %d", email, path, r.status, r.body, want)
		}
	}
	role(strings.ToUpper(user), "/role/"+hipaa[1], map[string]bool{"agency_customer": true}, 204)
	check("granted on a second", 2, hipaa[0], hipaa[1])
	role(user, "/role/"+hipaa[0], map[string]bool{"agency_customer": false}, 204)
	check("revoked on the first", 2, hipaa[1])
	role(user, "/role/USA_999999999", map[string]bool{"agency_customer": true}, 404)
	role(user, "/role/"+hipaa[0], map[string]any{}, 400)

	// The all-advertisers switch: every advertiser, and level 3 for the user.
	var all []string
	for _, a := range b.srv.Advertisers() {
		all = append(all, a.GMAID)
	}
	role(user, "/role", map[string]bool{"agency_customer": true}, 204)
	check("granted on all", 3, all...)
	if err := b.srv.SetAgencyCustomerOn(user, hipaa[2], false); err != nil {
		t.Fatal(err)
	}
	check("all but one", 2, slices.DeleteFunc(all, func(g string) bool { return g == hipaa[2] })...)
	b.srv.SetAgencyCustomer(user, false)
	check("revoked on all", 2)
}

// TestDefaultAgencyCustomerRole: whatever the seed, a default fake has one readable HIPAA
// advertiser (the first by gmaid); RestrictAllHIPAA none and AgencyCustomer all.
func TestDefaultAgencyCustomerRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts liqtest.Options
		want func(hipaa int) int
	}{
		{"default", liqtest.Options{}, func(int) int { return 1 }},
		{"RestrictAllHIPAA", liqtest.Options{RestrictAllHIPAA: true}, func(int) int { return 0 }},
		{"AgencyCustomer", liqtest.Options{AgencyCustomer: true}, func(n int) int { return n }},
	} {
		for seed := range uint64(5) {
			opts := tc.opts
			opts.Seed = seed
			f := liqtest.New(opts)
			var hipaa, readable []string
			truth := map[string]bool{}
			for _, at := range f.GroundTruth() {
				truth[at.AccountID] = !at.Restricted
			}
			for _, a := range f.Advertisers() {
				if a.HIPAAProtected {
					hipaa = append(hipaa, a.GMAID)
					if truth[a.GMAID] {
						readable = append(readable, a.GMAID)
					}
				}
			}
			slices.Sort(hipaa)
			if len(hipaa) < 2 || len(readable) != tc.want(len(hipaa)) || (len(readable) == 1 && readable[0] != hipaa[0]) {
				t.Errorf("%s, seed %d: readable HIPAA advertisers %v of %v", tc.name, seed, readable, hipaa)
			}
		}
	}
}

func TestInactiveAndUnlinkedAdvertisersAre403(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{AgencyCustomer: true})
	tok := b.srv.Authorize("").Access
	inactive := b.find(t, func(a liqtest.Advertiser) bool { return a.ActiveState == 0 })
	grace := b.find(t, func(a liqtest.Advertiser) bool { return a.ActiveState == 1 })
	q := "&created_after_date=2000-01-01&created_before_date=2100-01-01"
	for _, g := range []string{inactive.GMAID, "USA_999999999"} {
		if r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+g+q, tok); r.status != 403 || string(r.body) != notAuthorized {
			t.Errorf("%s: %d %s", g, r.status, r.body)
		}
	}
	if r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+grace.GMAID+q, tok); r.status != 200 {
		t.Errorf("grace period advertiser: %d", r.status)
	}
	if r := b.get(t, "/client_reports/lead_detail/USA_999999999?start_date=2025-01-01&end_date=2025-01-02", tok); r.status != 403 {
		t.Errorf("lead_detail of an unlinked GMAID: %d", r.status)
	}
	// Deactivating through the admin API restricts a working advertiser.
	a := b.firstPlain(t)
	if r := b.do(t, http.MethodPut, "/_admin/advertisers/"+a.GMAID, "", map[string]int{"active_state": 0}); r.status != 204 {
		t.Fatalf("admin deactivate: %d %s", r.status, r.body)
	}
	if r := b.get(t, "/crm/contact_interactions?global_master_advertiser_id="+a.GMAID+q, tok); r.status != 403 {
		t.Fatalf("deactivated: %d", r.status)
	}
}

func TestRateLimit21stRequestInASecond(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{RateLimit: liqtest.DefaultRateLimit})
	tok := b.srv.Authorize("").Access
	path := "/identities/v3?user=" + url.QueryEscape(b.srv.Options().SandboxUser)
	for i := range 20 {
		if r := b.get(t, path, tok); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	r := b.get(t, path, tok)
	if r.status != 429 || string(r.body) != `{"message":"Too Many Requests"}` {
		t.Fatalf("21st request: %d %s", r.status, r.body)
	}
	for k := range r.header {
		if strings.HasPrefix(strings.ToLower(k), "x-ratelimit") || k == "Retry-After" {
			t.Fatalf("429 carries %s", k)
		}
	}
	if got := b.srv.Counters().Get(simkit.Count429); got != 1 {
		t.Fatalf("status_429 = %d", got)
	}
	// The next one-second window is open again.
	b.clock.Advance(time.Second)
	if r := b.get(t, path, tok); r.status != 200 {
		t.Fatalf("next window: %d", r.status)
	}
}

type leadDetail struct {
	TimeZone   string `json:"time_zone"`
	StartDate  string `json:"start_date"`
	EndDate    string `json:"end_date"`
	ReportData struct {
		TotalsPerInterval []struct {
			StartDate string `json:"start_date"`
			Calls     int    `json:"calls"`
			Emails    int    `json:"emails"`
			WebEvents int    `json:"web_events"`
			Chats     int    `json:"chats"`
		} `json:"totals_per_interval"`
		Totals struct {
			Leads int `json:"leads"`
		} `json:"totals"`
	} `json:"report_data"`
}

func TestLeadDetailCountsMatchTruth(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 200})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	start, end := t0.AddDate(-3, 0, 0).Format("2006-01-02"), t0.AddDate(0, 0, 1).Format("2006-01-02")
	rep := decode[leadDetail](t, b.get(t, "/client_reports/lead_detail/"+a.GMAID+"?start_date="+start+"&end_date="+end, tok))
	counts := map[string]int{}
	for _, iv := range rep.ReportData.TotalsPerInterval {
		counts["call"] += iv.Calls
		counts["email"] += iv.Emails
		counts["form"] += iv.WebEvents
		counts["chat"] += iv.Chats
	}
	want := map[string]int{}
	total := 0
	for _, at := range b.srv.GroundTruth() {
		if at.AccountID == a.GMAID {
			for _, l := range at.Leads {
				want[l.Kind]++
				total++
			}
		}
	}
	if !reflect.DeepEqual(counts, want) || rep.ReportData.Totals.Leads != total || rep.TimeZone != a.TimeZone {
		t.Fatalf("lead_detail counts %v (total %d), truth %v (total %d)", counts, rep.ReportData.Totals.Leads, want, total)
	}
	if first := rep.ReportData.TotalsPerInterval[0].StartDate; first != start || rep.EndDate != end {
		t.Fatalf("intervals start %s end %s", first, rep.EndDate)
	}
}

func TestGroundTruthDeterministicAndExcludesNonLeadChats(t *testing.T) {
	t.Parallel()
	one := setup(t, liqtest.Options{Seed: 7, InteractionsPerAdvertiser: 150})
	two := setup(t, liqtest.Options{Seed: 7, InteractionsPerAdvertiser: 150})
	other := setup(t, liqtest.Options{Seed: 8, InteractionsPerAdvertiser: 150})
	if !reflect.DeepEqual(one.srv.GroundTruth(), two.srv.GroundTruth()) {
		t.Fatal("same seed, different truth")
	}
	if reflect.DeepEqual(one.srv.GroundTruth(), other.srv.GroundTruth()) {
		t.Fatal("different seeds, same truth")
	}
	tok := one.srv.Authorize("").Access
	a := one.firstPlain(t)
	truth := map[string]bool{}
	for _, at := range one.srv.GroundTruth() {
		if at.AccountID == a.GMAID {
			for i, l := range at.Leads {
				truth[l.ID] = true
				if i > 0 && at.Leads[i-1].ID >= l.ID {
					t.Fatal("truth not sorted by id")
				}
				if l.UpdatedAt.Location() != time.UTC || l.UpdatedAt.After(t0) {
					t.Fatalf("updated_at %v", l.UpdatedAt)
				}
			}
		}
	}
	nonLead := 0
	for _, it := range one.fetch(t, tok, a.GMAID, "2000-01-01", "2100-01-01", "") {
		isNonLead := it.Contact.Email != nil && *it.Contact.Email == liqtest.NonLeadChatEmail
		if isNonLead {
			nonLead++
		}
		if truth[fmt.Sprint(it.ID)] == isNonLead {
			t.Fatalf("interaction %d: non-lead %v, in truth %v", it.ID, isNonLead, truth[fmt.Sprint(it.ID)])
		}
	}
	if nonLead == 0 {
		t.Fatal("no non-lead chats seeded")
	}
}

func TestMutationsThroughAdminAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	tok := b.srv.Authorize("").Access
	a := b.firstPlain(t)
	r := b.do(t, http.MethodPost, "/_admin/interactions", "", map[string]any{"gmaid": a.GMAID, "event_type": "form", "sub_type": "FormEmail", "count": 3})
	added := decode[struct{ IDs []int64 }](t, r)
	if r.status != 201 || len(added.IDs) != 3 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	today := t0.Format("2006-01-02")
	got := b.fetch(t, tok, a.GMAID, t0.AddDate(0, 0, -1).Format("2006-01-02"), t0.AddDate(0, 0, 1).Format("2006-01-02"), "")
	found := 0
	for _, it := range got {
		for _, id := range added.IDs {
			if it.ID == id {
				found++
			}
		}
	}
	if found != 3 {
		t.Fatalf("added interactions in today's window (%s): %d of 3", today, found)
	}
	b.clock.Advance(time.Hour)
	if r := b.do(t, http.MethodPatch, fmt.Sprintf("/_admin/interactions/%d", added.IDs[0]), "", map[string]string{"status": "client"}); r.status != 204 {
		t.Fatalf("edit: %d %s", r.status, r.body)
	}
	var truth simkit.LeadTruth
	for _, at := range decode[[]simkit.AccountTruth](t, b.get(t, "/_admin/truth", "")) {
		for _, l := range at.Leads {
			if l.ID == fmt.Sprint(added.IDs[0]) {
				truth = l
			}
		}
	}
	if truth.Kind != "email" || !truth.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("truth of edited lead: %+v", truth)
	}
	if r := b.do(t, http.MethodPost, "/_admin/interactions", "", map[string]any{"gmaid": "NOPE_1"}); r.status != 404 {
		t.Fatalf("unknown gmaid: %d", r.status)
	}
}

func TestAdminFaultsCountersAndTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{})
	tok := b.srv.Authorize("").Access
	if r := b.do(t, http.MethodPut, "/_admin/faults", "", simkit.FaultSettings{Rate429: 1}); r.status != 200 {
		t.Fatalf("faults: %d %s", r.status, r.body)
	}
	r := b.get(t, "/identities/v3?user=x", tok)
	if r.status != 429 || string(r.body) != `{"message":"Too Many Requests"}` {
		t.Fatalf("fault 429: %d %s", r.status, r.body)
	}
	// Faults never touch the admin API.
	snap := decode[simkit.Snapshot](t, b.get(t, "/_admin/counters", ""))
	if snap.Requests["identities/v3"]["429"] != 1 || snap.Counters[simkit.Count429] != 1 {
		t.Fatalf("counters %+v", snap)
	}
	b.srv.Faults().Set(simkit.FaultSettings{})
	if r := b.do(t, http.MethodPut, "/_admin/ttl", "", map[string]string{"ttl": "90s"}); r.status != 200 {
		t.Fatalf("ttl: %d %s", r.status, r.body)
	}
	p := b.srv.Authorize("")
	if !p.Expiry.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("expiry after ttl change: %v", p.Expiry)
	}
	grants := decode[[]simkit.GrantInfo](t, b.get(t, "/_admin/grants", ""))
	if len(grants) != 2 {
		t.Fatalf("grants: %d", len(grants))
	}
	if r := b.do(t, http.MethodPost, "/_admin/grants/"+p.Grant+"/revoke", "", nil); r.status != 204 {
		t.Fatalf("revoke: %d", r.status)
	}
	if r := b.get(t, "/identities/v3?user=x", p.Access); r.status != 401 {
		t.Fatalf("revoked grant's token: %d", r.status)
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
