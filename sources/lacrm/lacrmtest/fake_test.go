package lacrmtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

var epoch = time.Date(2026, 3, 2, 15, 4, 5, 0, time.UTC)

type bundle struct {
	srv   *lacrmtest.Server
	clock *simkit.ManualClock
	hc    *http.Client
}

func setup(t *testing.T, opts lacrmtest.Options) *bundle {
	t.Helper()
	clock := simkit.NewManualClock(epoch)
	opts.Clock = clock
	if opts.Seed == 0 {
		opts.Seed = 7
	}
	srv := lacrmtest.NewServer(opts)
	t.Cleanup(srv.Close)
	hc := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &bundle{srv: srv, clock: clock, hc: hc}
}

// call invokes an API function with auth sent as given ("Bearer x" or a raw key).
func (b *bundle) call(t *testing.T, auth, fn string, params map[string]any) (int, http.Header, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"Function": fn, "Parameters": params})
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v2/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatalf("call %s: %v", fn, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

func (b *bundle) token(t *testing.T, user, pass string, body map[string]any) (int, map[string]any, error) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/oauth/token.php", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func (b *bundle) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	st, out, err := b.token(t, lacrmtest.DefaultClientID, lacrmtest.DefaultClientSecret,
		map[string]any{"grant_type": "refresh_token", "refresh_token": rt})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return st, out
}

func decodeErr(t *testing.T, body []byte) lacrmtest.APIError {
	t.Helper()
	var e lacrmtest.APIError
	if err := json.Unmarshal(body, &e); err != nil || e.ErrorCode == "" {
		t.Fatalf("not an LACRM error body: %s", body)
	}
	return e
}

func wantInvalidCredentials(t *testing.T, st int, body []byte) {
	t.Helper()
	if st != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400 (LACRM answers bad credentials with 400): %s", st, body)
	}
	if e := decodeErr(t, body); !strings.Contains(e.ErrorDescription, "Invalid credentials") {
		t.Fatalf("ErrorDescription = %q, want it to mention Invalid credentials", e.ErrorDescription)
	}
}

func TestCodeFlowUsesRedirectURLAndBasicAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{})
	redirect := "http://127.0.0.1:49152/callback" // registered without a port: loopback rule
	q := url.Values{"response_type": {"code"}, "client_id": {lacrmtest.DefaultClientID},
		"state": {"st-1"}, "redirect_url": {redirect}}
	resp, err := b.hc.Get(b.srv.URL + "/oauth/authorize.php?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize status = %d, want 302", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect || loc.Query().Get("state") != "st-1" {
		t.Fatalf("redirected to %s, want %s with state echoed", loc, redirect)
	}
	code := loc.Query().Get("code")

	// Without Basic auth (client credentials in the body) the token endpoint refuses.
	st, out, _ := b.token(t, "", "", map[string]any{"grant_type": "authorization_code", "code": code,
		"redirect_url": redirect, "client_id": lacrmtest.DefaultClientID, "client_secret": lacrmtest.DefaultClientSecret})
	if st != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("no Basic auth: %d %v, want 401 invalid_client", st, out)
	}
	st, out, _ = b.token(t, lacrmtest.DefaultClientID, "wrong", map[string]any{"grant_type": "authorization_code",
		"code": code, "redirect_url": redirect})
	if st != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d %v, want 401", st, out)
	}
	st, out, _ = b.token(t, lacrmtest.DefaultClientID, lacrmtest.DefaultClientSecret,
		map[string]any{"grant_type": "authorization_code", "code": code, "redirect_url": redirect})
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, out)
	}
	if out["token_type"] != "Bearer" || out["expires_in"] != float64(3600) ||
		!strings.HasPrefix(out["access_token"].(string), "lacrm_") || !strings.HasPrefix(out["refresh_token"].(string), "lacrm_") {
		t.Fatalf("token response = %v", out)
	}
	st, _, body := b.call(t, "Bearer "+out["access_token"].(string), "GetUser", nil)
	if st != http.StatusOK || !strings.Contains(string(body), b.srv.AccountOf(b.srv.SandboxUser())) {
		t.Fatalf("GetUser with the new token: %d %s", st, body)
	}
	// A code is single-use.
	st, out, _ = b.token(t, lacrmtest.DefaultClientID, lacrmtest.DefaultClientSecret,
		map[string]any{"grant_type": "authorization_code", "code": code, "redirect_url": redirect})
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("second exchange: %d %v, want 400 invalid_grant", st, out)
	}
}

func TestAuthorizeValidatesClientAndRedirectURL(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{})
	base := url.Values{"response_type": {"code"}, "client_id": {lacrmtest.DefaultClientID}, "state": {"s"}}
	for name, mod := range map[string]func(url.Values){
		"redirect_uri instead of redirect_url": func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/callback") },
		"unregistered redirect_url":            func(q url.Values) { q.Set("redirect_url", "https://evil.example/callback") },
		"loopback but other path":              func(q url.Values) { q.Set("redirect_url", "http://127.0.0.1:5000/other") },
		"unknown client_id": func(q url.Values) {
			q.Set("redirect_url", "http://127.0.0.1/callback")
			q.Set("client_id", "someone-else")
		},
		"response_type token": func(q url.Values) {
			q.Set("redirect_url", "http://127.0.0.1/callback")
			q.Set("response_type", "token")
		},
	} {
		q := url.Values{}
		for k, v := range base {
			q[k] = slices.Clone(v)
		}
		mod(q)
		resp, err := b.hc.Get(b.srv.URL + "/oauth/authorize.php?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: status %d location %q, want a 400 page and no redirect", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// The code is bound to the redirect_url it was issued for.
	q := url.Values{"response_type": {"code"}, "client_id": {lacrmtest.DefaultClientID}, "redirect_url": {"http://localhost:8080/callback"}}
	resp, err := b.hc.Get(b.srv.URL + "/oauth/authorize.php?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	st, out, _ := b.token(t, lacrmtest.DefaultClientID, lacrmtest.DefaultClientSecret, map[string]any{
		"grant_type": "authorization_code", "code": loc.Query().Get("code"), "redirect_url": "http://localhost:9090/callback"})
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("exchange with another redirect_url: %d %v, want 400 invalid_grant", st, out)
	}
}

func TestRefreshReuseRevokesWholeGrant(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{})
	p1 := b.srv.Authorize("")
	other := b.srv.Authorize("")

	st, out := b.refresh(t, p1.Refresh)
	if st != http.StatusOK {
		t.Fatalf("first refresh: %d %v", st, out)
	}
	at2, rt2 := out["access_token"].(string), out["refresh_token"].(string)
	if rt2 == p1.Refresh {
		t.Fatal("refresh token did not rotate")
	}
	if st, _, body := b.call(t, "Bearer "+at2, "GetPipelines", nil); st != http.StatusOK {
		t.Fatalf("new access token: %d %s", st, body)
	}

	// Second use of p1's refresh token: a man-in-the-middle signal.
	st, out = b.refresh(t, p1.Refresh)
	if st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v, want 400 invalid_grant", st, out)
	}
	c := b.srv.Counters()
	if c.Get(simkit.CountRefreshReuse) != 1 || c.Get(simkit.CountRevokedGrants) != 1 {
		t.Fatalf("refresh_reuse=%d revoked_grants=%d, want 1 and 1", c.Get(simkit.CountRefreshReuse), c.Get(simkit.CountRevokedGrants))
	}
	// Every token of that authorization is dead: both access tokens and the fresh refresh token.
	for _, at := range []string{p1.Access, at2} {
		st, _, body := b.call(t, "Bearer "+at, "GetPipelines", nil)
		wantInvalidCredentials(t, st, body)
	}
	if st, out := b.refresh(t, rt2); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("refresh token issued before the reuse: %d %v, want invalid_grant", st, out)
	}
	// Another authorization of the same user is untouched.
	if st, _, body := b.call(t, "Bearer "+other.Access, "GetPipelines", nil); st != http.StatusOK {
		t.Fatalf("other grant: %d %s", st, body)
	}
}

func TestExpiredTokensAreInvalidCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{})
	p := b.srv.Authorize("")
	b.clock.Advance(time.Hour)
	st, _, body := b.call(t, "Bearer "+p.Access, "GetContacts", nil)
	wantInvalidCredentials(t, st, body)
	st, _, body = b.call(t, "Bearer lacrm_at_bogus", "GetContacts", nil)
	wantInvalidCredentials(t, st, body)
	st, _, body = b.call(t, "", "GetContacts", nil)
	wantInvalidCredentials(t, st, body)

	// The refresh token still works after an hour, but not after 30 days.
	st2, out := b.refresh(t, p.Refresh)
	if st2 != http.StatusOK {
		t.Fatalf("refresh after 1h: %d %v", st2, out)
	}
	b.clock.Advance(30 * 24 * time.Hour)
	if st2, out = b.refresh(t, out["refresh_token"].(string)); st2 != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("refresh after 30 days: %d %v, want invalid_grant", st2, out)
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshReuse); n != 0 {
		t.Fatalf("an expired refresh token counted as reuse (%d)", n)
	}
}

type contactsPage struct {
	HasMoreResults bool
	Results        []map[string]any
}

func TestGetContactsPagesOverLastUpdateDescending(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 90})
	auth := "Bearer " + b.srv.Authorize("").Access
	var all []map[string]any
	pages := 0
	for page := 1; ; page++ {
		st, _, body := b.call(t, auth, "GetContacts", map[string]any{"SortBy": "LastUpdate", "SortDirection": "Descending",
			"MaxNumberOfResults": 25, "Page": page, "RecordTypeFilter": "Contacts"})
		if st != http.StatusOK {
			t.Fatalf("page %d: %d %s", page, st, body)
		}
		var p contactsPage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, p.Results...)
		if !p.HasMoreResults {
			break
		}
	}
	if pages != 4 || len(all) != 90 {
		t.Fatalf("got %d contacts in %d pages, want 90 in 4", len(all), pages)
	}
	idRE := regexp.MustCompile(`^[1-9][0-9]{30}$`)
	var prev time.Time
	seen := map[string]bool{}
	for i, c := range all {
		id, ok := c["ContactId"].(string)
		if !ok || !idRE.MatchString(id) {
			t.Fatalf("ContactId %v is not a 31-digit string", c["ContactId"])
		}
		seen[id] = true
		lu, err := time.Parse(time.RFC3339, c["LastUpdate"].(string))
		if err != nil || !strings.ContainsAny(c["LastUpdate"].(string)[19:], "+-") {
			t.Fatalf("LastUpdate %q is not ISO-8601 with an offset", c["LastUpdate"])
		}
		if i > 0 && lu.After(prev) {
			t.Fatalf("result %d is newer than the one before: not LastUpdate descending", i)
		}
		prev = lu
		for _, k := range []string{"Name", "Email", "Phone", "Address", "Company Name", "Job Title", "Background Info", "Lead Source", "DateCreated"} {
			if _, ok := c[k]; !ok {
				t.Fatalf("contact lacks %q", k)
			}
		}
	}
	truth := b.srv.GroundTruth()[0]
	n := 0
	for _, l := range truth.Leads {
		if l.Kind == "contact" {
			n++
			if !seen[l.ID] {
				t.Fatalf("ground-truth contact %s not returned", l.ID)
			}
		}
	}
	if n != 90 {
		t.Fatalf("ground truth has %d contacts, want 90", n)
	}

	// Defaults and limits: 500 per page by default, at most 10,000, pages from 1.
	st, _, body := b.call(t, auth, "GetContacts", nil)
	var p contactsPage
	if err := json.Unmarshal(body, &p); st != http.StatusOK || err != nil || len(p.Results) != 99 || p.HasMoreResults {
		t.Fatalf("default call: %d, %d results (want people + companies = 99)", st, len(p.Results))
	}
	for _, bad := range []map[string]any{{"MaxNumberOfResults": 10001}, {"Page": 0}, {"SortDirection": "Up"}, {"SortBy": "Color"}} {
		st, _, body := b.call(t, auth, "GetContacts", bad)
		if st != http.StatusBadRequest || decodeErr(t, body).ErrorCode != "InvalidParameter" {
			t.Errorf("GetContacts %v: %d %s, want 400 InvalidParameter", bad, st, body)
		}
	}
	if st, _, body := b.call(t, auth, "GetContacts", map[string]any{"MaxNumberOfResults": "10000"}); st != http.StatusOK {
		t.Errorf("MaxNumberOfResults 10000: %d %s", st, body)
	}
}

func TestRateLimitPerGrantWithRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 5, PipelineItems: 2})
	// Start at a window boundary so the expected Retry-After is exact.
	b.clock.Advance(epoch.Truncate(time.Minute).Add(time.Minute).Sub(epoch))
	a1 := "Bearer " + b.srv.Authorize("").Access
	a2 := "Bearer " + b.srv.Authorize("").Access
	for i := range 120 {
		if st, _, body := b.call(t, a1, "GetPipelines", nil); st != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, st, body)
		}
	}
	b.clock.Advance(15 * time.Second)
	st, h, body := b.call(t, a1, "GetPipelines", nil)
	if st != http.StatusTooManyRequests || h.Get("Retry-After") != "45" {
		t.Fatalf("121st request: %d Retry-After %q %s, want 429 with Retry-After 45", st, h.Get("Retry-After"), body)
	}
	if st, _, _ := b.call(t, a2, "GetPipelines", nil); st != http.StatusOK {
		t.Fatalf("another grant was throttled too (%d): limits are per grant", st)
	}
	if n := b.srv.Counters().Get(simkit.Count429); n != 1 {
		t.Fatalf("status_429 = %d, want 1", n)
	}
	b.clock.Advance(45 * time.Second)
	if st, _, _ := b.call(t, a1, "GetPipelines", nil); st != http.StatusOK {
		t.Fatalf("after the window: %d", st)
	}
}

func TestPipelineItems(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 20, PipelineItems: 30})
	auth := "Bearer " + b.srv.Authorize("").Access
	st, _, body := b.call(t, auth, "GetPipelineItems", map[string]any{"SortBy": "LastUpdate"})
	if st != http.StatusBadRequest || decodeErr(t, body).ErrorCode != "MissingParameter" {
		t.Fatalf("without PipelineId: %d %s, want 400 MissingParameter", st, body)
	}
	st, _, body = b.call(t, auth, "GetPipelines", nil)
	var pls []struct {
		PipelineId, Name string
		Statuses         []struct{ StatusId, Name string }
	}
	if err := json.Unmarshal(body, &pls); st != http.StatusOK || err != nil || len(pls) == 0 {
		t.Fatalf("GetPipelines: %d %s", st, body)
	}
	total := 0
	for _, pl := range pls {
		st, _, body := b.call(t, auth, "GetPipelineItems", map[string]any{"PipelineId": pl.PipelineId,
			"SortBy": "LastUpdate", "SortDirection": "Descending", "MaxNumberOfResults": 100, "Page": 1})
		var p contactsPage
		if err := json.Unmarshal(body, &p); st != http.StatusOK || err != nil {
			t.Fatalf("GetPipelineItems: %d %s", st, body)
		}
		for _, it := range p.Results {
			if it["PipelineId"] != pl.PipelineId || it["ContactId"] == "" ||
				it["StatusMetaData"].(map[string]any)["Name"] == "" || it["PipelineMetaData"].(map[string]any)["Name"] != pl.Name {
				t.Fatalf("item shape: %v", it)
			}
		}
		total += len(p.Results)
	}
	if total != 30 {
		t.Fatalf("got %d items over all pipelines, want 30", total)
	}
}

func TestMutationsAndGroundTruth(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 10, PipelineItems: 5})
	auth := "Bearer " + b.srv.Authorize("").Access
	truth := b.srv.GroundTruth()[0]
	if len(truth.Leads) != 10 {
		t.Fatalf("ground truth has %d leads, want the 10 people (items are deals)", len(truth.Leads))
	}
	if d := records(truth, sources.TableDeals); len(d) != 5 || !slices.Equal(slices.Sorted(maps.Keys(d)), b.srv.PipelineItemIDs("")) {
		t.Fatalf("ground truth has deals %v, want the 5 items %v", d, b.srv.PipelineItemIDs(""))
	}
	var oldest simkit.LeadTruth
	for _, l := range truth.Leads {
		if l.Kind == "contact" && (oldest.ID == "" || l.UpdatedAt.Before(oldest.UpdatedAt)) {
			oldest = l
		}
	}
	b.clock.Advance(time.Minute)
	// Update through the admin API: the contact jumps to the top of LastUpdate desc.
	resp, err := b.hc.Post(b.srv.URL+"/_admin/contacts/"+oldest.ID+"/touch", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("touch: %v %v", err, resp)
	}
	resp.Body.Close()
	st, _, body := b.call(t, auth, "GetContacts", map[string]any{"SortBy": "LastUpdate", "MaxNumberOfResults": 1, "RecordTypeFilter": "Contacts"})
	var p contactsPage
	_ = json.Unmarshal(body, &p)
	if st != http.StatusOK || len(p.Results) != 1 || p.Results[0]["ContactId"] != oldest.ID {
		t.Fatalf("updated contact is not first by LastUpdate: %s", body)
	}
	if lu, _ := time.Parse(time.RFC3339, p.Results[0]["LastUpdate"].(string)); !lu.Equal(b.clock.Now()) {
		t.Fatalf("LastUpdate = %v, want the mutation time %v", lu, b.clock.Now())
	}
	id, err := b.srv.CreateContact("")
	if err != nil {
		t.Fatal(err)
	}
	itemID, err := b.srv.CreatePipelineItem("", "", id)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.UpdatePipelineItem(itemID); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.DeleteContact(oldest.ID); err != nil {
		t.Fatal(err)
	}
	truth = b.srv.GroundTruth()[0]
	ids := map[string]string{}
	for _, l := range truth.Leads {
		ids[l.ID] = l.Kind
	}
	deals := records(truth, sources.TableDeals)
	if _, ok := ids[oldest.ID]; ok || ids[id] != "contact" || deals[itemID].IsZero() {
		t.Fatalf("ground truth after mutations: deleted present=%v, created=%q, item present=%v", ids[oldest.ID] != "", ids[id], !deals[itemID].IsZero())
	}
	// The moved item's deal is updated at its new LastUpdate, as GetPipelineItems says.
	if !deals[itemID].Equal(b.clock.Now().Truncate(time.Second)) {
		t.Fatalf("moved item updated %v in the truth, want the mutation time %v", deals[itemID], b.clock.Now())
	}
	if err := b.srv.UpdateContact("404"); err == nil {
		t.Fatal("updating an unknown contact succeeded")
	}
	// The admin truth endpoint serves the same.
	resp, err = b.hc.Get(b.srv.URL + "/_admin/truth")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var served []simkit.AccountTruth
	if err := json.NewDecoder(resp.Body).Decode(&served); err != nil || len(served) != 1 || len(served[0].Leads) != len(truth.Leads) ||
		len(served[0].Records) != len(truth.Records) {
		t.Fatalf("/_admin/truth: %v %v", err, served)
	}
}

// records are an account truth's records of a table, by id: their updated times.
func records(at simkit.AccountTruth, table string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range at.Records {
		if r.Table == table {
			out[r.ID] = r.Updated
		}
	}
	return out
}

type fieldJSON struct {
	FieldId, Name, Type, RecordType string
	PipelineId                      *string
	Options                         []struct{ OptionId, Name string }
}

// TestCustomFields: GetCustomFields lists the definitions by RecordType and PipelineId, in
// pages; the records carry values under the names of their own fields only, and the ground
// truth holds the fields, pipelines and statuses the source syncs.
func TestCustomFields(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 30, PipelineItems: 40})
	auth := "Bearer " + b.srv.Authorize("").Access
	list := func(params map[string]any) []fieldJSON {
		t.Helper()
		var all []fieldJSON
		for page := 1; ; page++ {
			params["Page"], params["MaxNumberOfResults"] = page, 1
			st, _, body := b.call(t, auth, "GetCustomFields", params)
			var p struct {
				HasMoreResults bool
				Results        []fieldJSON
			}
			if err := json.Unmarshal(body, &p); st != http.StatusOK || err != nil || len(p.Results) > 1 {
				t.Fatalf("GetCustomFields %v: %d %s", params, st, body)
			}
			all = append(all, p.Results...)
			if !p.HasMoreResults {
				return all
			}
		}
	}
	byName := func(fs []fieldJSON) map[string]fieldJSON {
		out := map[string]fieldJSON{}
		for _, f := range fs {
			if f.FieldId == "" || out[f.Name].FieldId != "" {
				t.Fatalf("field %+v: no id, or a name twice", f)
			}
			out[f.Name] = f
		}
		return out
	}
	contactFields := list(map[string]any{"RecordType": "Contact"})
	contact := byName(contactFields)
	if ls := contact["Lead Source"]; ls.Type != "Dropdown" || len(ls.Options) != len(simkit.Channels) || ls.PipelineId != nil ||
		contact["Budget"].Type != "Currency" || len(contact) != 2 {
		t.Fatalf("contact fields %+v", contact)
	}
	if company := list(map[string]any{"RecordType": "Company"}); len(company) != 1 || company[0].Name != "Industry" {
		t.Fatalf("company fields %+v", company)
	}
	all := list(map[string]any{})
	pipelineFields := map[string]map[string]fieldJSON{}
	var synced []string // the contacts' and pipelines' fields
	for _, f := range contactFields {
		synced = append(synced, f.FieldId)
	}
	for _, pl := range b.srv.PipelineIDs("") {
		fs := byName(list(map[string]any{"RecordType": "Pipeline", "PipelineId": pl}))
		if ev := fs["Estimated Value"]; ev.Type != "Currency" || ev.PipelineId == nil || *ev.PipelineId != pl {
			t.Fatalf("pipeline %s fields %+v", pl, fs)
		}
		pipelineFields[pl] = fs
		for _, f := range fs {
			synced = append(synced, f.FieldId)
		}
	}
	slices.Sort(synced)
	if len(all) != len(synced)+1 || !slices.Equal(slices.Sorted(slices.Values(b.srv.CustomFieldIDs(""))), synced) {
		t.Fatalf("%d fields in all, %d synced; CustomFieldIDs %v", len(all), len(synced), b.srv.CustomFieldIDs(""))
	}
	for _, bad := range []map[string]any{{"RecordType": "Deal"}, {"RecordType": "Contact", "PipelineId": b.srv.PipelineIDs("")[0]},
		{"PipelineId": "404"}, {"MaxNumberOfResults": 0}} {
		if st, _, body := b.call(t, auth, "GetCustomFields", bad); st != http.StatusBadRequest || decodeErr(t, body).ErrorCode != "InvalidParameter" {
			t.Errorf("GetCustomFields %v: %d %s, want 400 InvalidParameter", bad, st, body)
		}
	}

	// Every custom key of an item is a field of its pipeline; of a contact, a contact field.
	builtIn := regexp.MustCompile(`^(PipelineItemId|PipelineId|StatusId|ContactId|DateCreated|LastUpdate|StatusMetaData|PipelineMetaData)$`)
	for _, pl := range b.srv.PipelineIDs("") {
		st, _, body := b.call(t, auth, "GetPipelineItems", map[string]any{"PipelineId": pl, "MaxNumberOfResults": 100})
		var p contactsPage
		if err := json.Unmarshal(body, &p); st != http.StatusOK || err != nil || len(p.Results) == 0 {
			t.Fatalf("GetPipelineItems: %d %s", st, body)
		}
		for _, it := range p.Results {
			for k := range it {
				if _, ok := pipelineFields[pl][k]; !ok && !builtIn.MatchString(k) {
					t.Fatalf("item key %q is neither built in nor a field of pipeline %s", k, pl)
				}
			}
			if _, ok := it["Estimated Value"].(float64); !ok {
				t.Fatalf("item without an Estimated Value: %v", it)
			}
		}
	}
	st, _, body := b.call(t, auth, "GetContacts", map[string]any{"MaxNumberOfResults": 100, "RecordTypeFilter": "Contacts"})
	var cp contactsPage
	if err := json.Unmarshal(body, &cp); st != http.StatusOK || err != nil {
		t.Fatalf("GetContacts: %d %s", st, body)
	}
	for _, c := range cp.Results {
		ls, _ := c["Lead Source"].(string)
		if !slices.Contains(simkit.Channels, ls) {
			t.Fatalf("contact Lead Source %q is not an option of the field", ls)
		}
		if v, ok := c["Budget"]; ok {
			if _, num := v.(float64); !num {
				t.Fatalf("contact Budget %v is not a number", v)
			}
		}
	}

	// The truth's dictionary: the pipelines, their statuses and the synced fields.
	dict := records(b.srv.GroundTruth()[0], sources.TableDictionary)
	kinds := map[string]int{}
	for id := range dict {
		kind, _, _ := strings.Cut(id, ":")
		kinds[kind]++
	}
	if kinds["pipeline"] != 2 || kinds["stage"] != 9 || kinds["custom_field"] != len(synced) || len(kinds) != 3 {
		t.Fatalf("dictionary truth by kind %v, want 2 pipelines, 9 stages, %d fields", kinds, len(synced))
	}

	// Deleting a field removes it from the listing and its values from the records.
	ev := pipelineFields[b.srv.PipelineIDs("")[0]]["Estimated Value"]
	if err := b.srv.DeleteCustomField(ev.FieldId); err != nil {
		t.Fatal(err)
	}
	if _, ok := records(b.srv.GroundTruth()[0], sources.TableDictionary)["custom_field:"+ev.FieldId]; ok {
		t.Fatal("a deleted field is still in the ground truth")
	}
	_, _, body = b.call(t, auth, "GetPipelineItems", map[string]any{"PipelineId": b.srv.PipelineIDs("")[0], "MaxNumberOfResults": 100})
	if strings.Contains(string(body), "Estimated Value") {
		t.Fatal("the items of the pipeline still carry the deleted field")
	}
	if slices.Contains(b.srv.CustomFieldIDs(""), ev.FieldId) {
		t.Fatal("CustomFieldIDs lists a deleted field")
	}
	if err := b.srv.DeleteCustomField(ev.FieldId); err == nil {
		t.Fatal("deleting a deleted field succeeded")
	}
}

func TestDroppedRefreshResponseRotatesAnyway(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Faults: simkit.FaultSettings{DropRefreshResponses: 1}})
	p := b.srv.Authorize("")
	if _, _, err := b.token(t, lacrmtest.DefaultClientID, lacrmtest.DefaultClientSecret,
		map[string]any{"grant_type": "refresh_token", "refresh_token": p.Refresh}); err == nil {
		t.Fatal("the refresh response was not dropped")
	}
	if n := b.srv.Counters().Get(simkit.CountRefreshes); n != 1 {
		t.Fatalf("refreshes = %d, want 1 (rotated before the drop)", n)
	}
	// A client that blindly retries with the old token loses the grant.
	if st, out := b.refresh(t, p.Refresh); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("retry after drop: %d %v", st, out)
	}
	if n := b.srv.Counters().Get(simkit.CountRevokedGrants); n != 1 {
		t.Fatalf("revoked_grants = %d, want 1", n)
	}
}

func TestAPIKeyAndSeveralAccounts(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 3, PipelineItems: 1,
		Users:   []lacrmtest.User{{Name: "second@lacrm.test"}},
		APIKeys: map[string]string{"raw-key-1": "second@lacrm.test"}})
	if len(b.srv.GroundTruth()) != 2 {
		t.Fatalf("want two accounts")
	}
	second := b.srv.AccountOf("second@lacrm.test")
	st, _, body := b.call(t, "raw-key-1", "GetUser", nil)
	if st != http.StatusOK || !strings.Contains(string(body), second) {
		t.Fatalf("raw API key: %d %s", st, body)
	}
	st, _, body = b.call(t, "Bearer "+b.srv.Authorize("").Access, "GetUser", nil)
	if st != http.StatusOK || strings.Contains(string(body), second) {
		t.Fatalf("sandbox grant sees the other account: %s", body)
	}
	st, _, body = b.call(t, "wrong-key", "GetUser", nil)
	wantInvalidCredentials(t, st, body)
}

func TestDeterministicFromSeed(t *testing.T) {
	t.Parallel()
	a := setup(t, lacrmtest.Options{Seed: 42, Contacts: 20, PipelineItems: 10}).srv.GroundTruth()
	b := setup(t, lacrmtest.Options{Seed: 42, Contacts: 20, PipelineItems: 10}).srv.GroundTruth()
	c := setup(t, lacrmtest.Options{Seed: 43, Contacts: 20, PipelineItems: 10}).srv.GroundTruth()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	jc, _ := json.Marshal(c)
	if !bytes.Equal(ja, jb) || bytes.Equal(ja, jc) {
		t.Fatal("ground truth is not determined by the seed")
	}
}

func TestAdminAndFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 2, PipelineItems: 1})
	put := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPut, b.srv.URL+path, strings.NewReader(body))
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := put("/_admin/ttl", `{"ttl":"90s"}`); st != http.StatusOK {
		t.Fatalf("PUT ttl: %d", st)
	}
	resp, err := b.hc.Post(b.srv.URL+"/_admin/authorize", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var pair map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()
	if pair["expires_in"] != float64(90) || !strings.HasPrefix(pair["access_token"].(string), "lacrm_at_") {
		t.Fatalf("admin authorize after ttl change: %v", pair)
	}
	if st := put("/_admin/ratelimit", `{"limit":1,"interval":"1h"}`); st != http.StatusOK {
		t.Fatalf("PUT ratelimit: %d", st)
	}
	auth := "Bearer " + pair["access_token"].(string)
	if st, _, _ := b.call(t, auth, "GetPipelines", nil); st != http.StatusOK {
		t.Fatalf("first call: %d", st)
	}
	if st, h, _ := b.call(t, auth, "GetPipelines", nil); st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("second call under a 1/h limit: %d", st)
	}
	b.srv.Limiter().Set(simkit.Window{Limit: -1})

	// Every API answer fails, but the authorization page and the admin API never do.
	if st := put("/_admin/faults", `{"rate_5xx":1}`); st != http.StatusOK {
		t.Fatalf("PUT faults: %d", st)
	}
	if st, _, _ := b.call(t, auth, "GetPipelines", nil); st != http.StatusBadGateway {
		t.Fatalf("API under rate_5xx=1: %d, want 502", st)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {lacrmtest.DefaultClientID}, "redirect_url": {"http://127.0.0.1/callback"}}
	resp, err = b.hc.Get(b.srv.URL + "/oauth/authorize.php?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize page under faults: %d", resp.StatusCode)
	}
	resp, err = b.hc.Get(b.srv.URL + "/_admin/counters")
	if err != nil {
		t.Fatal(err)
	}
	var snap simkit.Snapshot
	_ = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if snap.Requests["v2/GetPipelines"]["502"] != 1 || snap.Requests["v2/GetPipelines"]["429"] != 1 || snap.Counters[simkit.Count429] != 1 {
		t.Fatalf("counters: %+v", snap)
	}
}
