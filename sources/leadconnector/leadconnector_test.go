package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// memTokens is an in-memory sources.Tokens: the grant is refreshed with the Refresher when
// it expires or was invalidated; account tokens are minted likewise.
type memTokens struct {
	now       func() time.Time
	refresher Refresher
	refreshes atomic.Int64
	mints     atomic.Int64

	mu       sync.Mutex
	grant    *oauth2.Token
	stale    bool
	accounts map[string]*memAccount
}

func (m *memTokens) Grant() sources.Credentials { return grantCreds{m} }

type grantCreds struct{ m *memTokens }

func (g grantCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	m := g.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stale || !m.grant.Expiry.After(m.now().Add(time.Minute)) {
		tok, err := m.refresher.Refresh(ctx, m.grant.RefreshToken)
		if err != nil {
			return nil, err
		}
		m.refreshes.Add(1)
		m.grant, m.stale = tok, false
	}
	return m.grant, nil
}

func (g grantCreds) Invalidate(tok *oauth2.Token) {
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	if tok != nil && tok.AccessToken == g.m.grant.AccessToken {
		g.m.stale = true
	}
}

type memAccount struct {
	m    *memTokens
	mint sources.Minter
	mu   sync.Mutex
	tok  *oauth2.Token
}

func (m *memTokens) Account(id string, mint sources.Minter) sources.Credentials {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[id]
	if a == nil {
		a = &memAccount{m: m, mint: mint}
		m.accounts[id] = a
	}
	return a
}

func (a *memAccount) Token(ctx context.Context) (*oauth2.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok == nil || !a.tok.Expiry.After(a.m.now().Add(time.Minute)) {
		tok, err := a.mint(ctx)
		if err != nil {
			return nil, err
		}
		a.m.mints.Add(1)
		a.tok = tok
	}
	return a.tok, nil
}

func (a *memAccount) Invalidate(tok *oauth2.Token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok != nil && tok != nil && tok.AccessToken == a.tok.AccessToken {
		a.tok = nil
	}
}

type testBundle struct {
	srv    *lctest.Server
	clock  *simkit.ManualClock
	cfg    Config
	tokens *memTokens
	src    *Source
}

// setup starts a fake (manual clock) and a source on it, authorized through the real code
// flow. The source's waits advance the fake's clock instead of sleeping.
func setup(t testing.TB, opts lctest.Options, mod func(*Config)) *testBundle {
	t.Helper()
	clock := simkit.NewManualClock(t0)
	opts.Clock = clock
	opts.Seed = max(opts.Seed, 5)
	srv := lctest.NewServer(opts)
	t.Cleanup(srv.Close)
	cfg := Config{BaseURL: srv.URL, AuthURL: srv.URL + "/oauth/chooselocation", ClientID: lctest.DefaultClientID,
		ClientSecret: lctest.DefaultClientSecret, AppID: srv.AppID(), Clock: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	tok := authorize(t, srv, cfg)
	tokens := &memTokens{now: clock.Now, refresher: cfg.Refresher(), grant: tok, accounts: map[string]*memAccount{}}
	src, err := New(cfg, tokens, WithHTTPX(func(c *httpx.Config) {
		c.Sleep = func(ctx context.Context, d time.Duration) error { clock.Advance(d); return ctx.Err() }
	}))
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{srv: srv, clock: clock, cfg: cfg, tokens: tokens, src: src}
}

// authorize runs the authorization page and Exchange, as `leadsync auth` does.
func authorize(t testing.TB, srv *lctest.Server, cfg Config) *oauth2.Token {
	t.Helper()
	redirect := "http://127.0.0.1:41234/callback"
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Get(cfg.AuthCodeURL("state-1", redirect, ""))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "state-1" {
		t.Fatalf("authorize: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), redirect, "")
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func (b *testBundle) accounts(t *testing.T) []sources.Account {
	t.Helper()
	var out []sources.Account
	for a, err := range b.src.Accounts(context.Background()) {
		if err != nil {
			t.Fatalf("accounts: %v", err)
		}
		out = append(out, a)
	}
	return out
}

// pass runs Leads to the end (or stopAfter pages) and returns its pages.
func (b *testBundle) pass(t *testing.T, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions, stopAfter int) ([]sources.Page, error) {
	t.Helper()
	var pages []sources.Page
	for p, err := range b.src.Read(context.Background(), acct, StreamContacts, cur, opts) {
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

func truthOf(b *testBundle, id string) simkit.AccountTruth {
	for _, a := range b.srv.GroundTruth() {
		if a.AccountID == id {
			return a
		}
	}
	return simkit.AccountTruth{}
}

func TestEveryLeadArrivesExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, version := range []string{V3, V2021} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			b := setup(t, lctest.Options{Locations: 3, ContactsPerLocation: 430}, func(c *Config) {
				c.APIVersion = version
				c.PageSize = 100
			})
			if co, _ := b.tokens.grant.Extra("companyId").(string); co != b.srv.CompanyID() {
				t.Fatalf("the exchanged token must carry companyId, got %q", co)
			}
			accts := b.accounts(t)
			ids := make([]string, len(accts))
			for i, a := range accts {
				ids[i] = a.ID
			}
			if !slices.Equal(ids, b.srv.LocationIDs()) {
				t.Fatalf("accounts %v, want %v", ids, b.srv.LocationIDs())
			}
			acct := accts[1]
			pages, err := b.pass(t, acct, "", sources.ReadOptions{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]time.Time{}
			for _, p := range pages {
				for _, l := range p.Leads {
					if _, dup := got[l.ID]; dup {
						t.Fatalf("lead %s twice", l.ID)
					}
					if l.Source != sources.LeadConnector || l.AccountID != acct.ID || l.Kind != sources.KindContact || !json.Valid(l.Raw) {
						t.Fatalf("lead %v badly mapped", l)
					}
					got[l.ID] = l.UpdatedAt
				}
			}
			truth := truthOf(b, acct.ID)
			if len(got) != len(truth.Leads) || len(pages) != 5 {
				t.Fatalf("%d leads in %d pages, want %d in 5", len(got), len(pages), len(truth.Leads))
			}
			for _, l := range truth.Leads {
				if u, ok := got[l.ID]; !ok || !u.Equal(l.UpdatedAt) {
					t.Fatalf("lead %s: got %v (present %v), want %v", l.ID, u, ok, l.UpdatedAt)
				}
			}
			if n := b.tokens.mints.Load(); n != 1 {
				t.Fatalf("%d location tokens minted for one pass, want 1", n)
			}
		})
	}
}

func TestAccountsPageThroughManyLocations(t *testing.T) {
	t.Parallel()
	for _, version := range []string{V3, V2021} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			b := setup(t, lctest.Options{Locations: 230, ContactsPerLocation: 1}, func(c *Config) { c.APIVersion = version })
			accts := b.accounts(t)
			if len(accts) != 230 || accts[229].ID != b.srv.LocationIDs()[229] || accts[0].Name == "" ||
				accts[0].Meta["company_id"] != b.srv.CompanyID() || !accts[0].Active {
				t.Fatalf("%d accounts, first %+v", len(accts), accts[0])
			}
			ep := "oauth/installed-locations"
			if version == V2021 {
				ep = "oauth/installedLocations"
			}
			if n := b.srv.Counters().Requests(ep, 200); n != 3 {
				t.Fatalf("%d listing requests for 230 locations, want 3", n)
			}
		})
	}
}

func TestResumedCursorContinuesWhereItStopped(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 260}, func(c *Config) { c.PageSize = 50 })
	acct := b.accounts(t)[0]
	first, err := b.pass(t, acct, "", sources.ReadOptions{}, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("%d pages: %v", len(first), err)
	}
	var c cursor
	if err := json.Unmarshal([]byte(first[1].Next), &c); err != nil || c.Watermark == "" || len(c.After) != 2 {
		t.Fatalf("mid-pass cursor %s: %v", first[1].Next, err)
	}
	rest, err := b.pass(t, acct, first[1].Next, sources.ReadOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var order []string
	for _, p := range append(first, rest...) {
		for _, l := range p.Leads {
			seen[l.ID]++
			order = append(order, l.ID)
		}
	}
	if !slices.Equal(order, b.srv.ContactIDs(acct.ID)) {
		t.Fatalf("resumed paging: %d leads, want every contact once in (dateUpdated, id) order", len(order))
	}
	var end cursor
	_ = json.Unmarshal([]byte(rest[len(rest)-1].Next), &end)
	if end.After != nil || end.Watermark == "" {
		t.Fatalf("the final cursor must mark the pass complete: %s", rest[len(rest)-1].Next)
	}
}

func TestUpdatesDuringPagingArriveInNextPass(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 300}, func(c *Config) { c.PageSize = 50 })
	acct := b.accounts(t)[0]
	ids := b.srv.ContactIDs(acct.ID)
	latest := map[string]time.Time{}
	var cur sources.Cursor
	n := 0
	for p, err := range b.src.Read(context.Background(), acct, StreamContacts, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Leads {
			latest[l.ID] = l.UpdatedAt
		}
		cur = p.Next
		if n++; n == 2 { // one contact already read, one not yet reached
			for _, id := range []string{ids[10], ids[250]} {
				b.clock.Advance(time.Millisecond)
				if err := b.srv.UpdateContact(acct.ID, id); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	b.clock.Advance(time.Second)
	created, err := b.srv.CreateContact(acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.UpdateContact(acct.ID, ids[20]); err != nil {
		t.Fatal(err)
	}
	next, err := b.pass(t, acct, cur, sources.ReadOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range next {
		for _, l := range p.Leads {
			latest[l.ID] = l.UpdatedAt
			got[l.ID] = true
		}
	}
	for _, id := range []string{ids[10], ids[20], created} {
		if !got[id] {
			t.Errorf("contact %s changed after it was read is missing from the next pass", id)
		}
	}
	if len(got) > 10 {
		t.Errorf("the incremental pass re-read %d contacts; want only the lookback window", len(got))
	}
	truth := truthOf(b, acct.ID)
	if len(latest) != len(truth.Leads) {
		t.Fatalf("%d leads after two passes, truth has %d", len(latest), len(truth.Leads))
	}
	for _, l := range truth.Leads {
		if !latest[l.ID].Equal(l.UpdatedAt) {
			t.Fatalf("lead %s: stored %v, truth %v", l.ID, latest[l.ID], l.UpdatedAt)
		}
	}
}

func TestFullPassStartsAtBackfillStart(t *testing.T) {
	t.Parallel()
	start := t0.AddDate(0, -6, 0)
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 200}, func(c *Config) { c.BackfillStart = start })
	acct := b.accounts(t)[0]
	want := 0
	for _, l := range truthOf(b, acct.ID).Leads {
		if !l.UpdatedAt.Before(start) {
			want++
		}
	}
	for _, full := range []bool{false, true} {
		pages, err := b.pass(t, acct, `{"watermark":"2026-03-01T00:00:00.000Z"}`, sources.ReadOptions{Full: full}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range pages {
			n += len(p.Leads)
		}
		if full && (n != want || want == 0 || want == 200) {
			t.Fatalf("full pass: %d leads, want the %d updated since the backfill start", n, want)
		}
		if !full && n >= want {
			t.Fatalf("incremental pass from a recent watermark read %d leads", n)
		}
	}
}

func TestForbiddenLocationIsRestricted(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 2, ContactsPerLocation: 5, ForbiddenLocations: 1}, nil)
	accts := b.accounts(t)
	_, err := b.pass(t, accts[1], "", sources.ReadOptions{}, 0)
	var re *sources.RestrictedError
	if !errors.As(err, &re) {
		t.Fatalf("want a *sources.RestrictedError, got %v", err)
	}
	if re.AccountID != accts[1].ID || re.HIPAA || re.Access() != sources.AccessForbidden ||
		re.Message != lctest.MsgNoLocation || len(re.Fields) == 0 {
		t.Fatalf("restriction %+v", re)
	}
	accts[1].HIPAAProtected = true
	_, err = b.pass(t, accts[1], "", sources.ReadOptions{}, 0)
	if !errors.As(err, &re) || !re.HIPAA {
		t.Fatalf("a known HIPAA account: %v", err)
	}
	if _, err := b.pass(t, accts[0], "", sources.ReadOptions{}, 0); err != nil {
		t.Fatalf("the other location must still sync: %v", err)
	}
}

func TestExpiredTokensAreRefreshedAndReminted(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 120}, nil)
	acct := b.accounts(t)[0]
	if _, err := b.pass(t, acct, "", sources.ReadOptions{}, 1); err != nil {
		t.Fatal(err)
	}
	// The vendor revokes everything early (our tokens still look valid to us): the search
	// answers 401 Invalid JWT, so does the mint; one refresh and one re-mint recover.
	for _, g := range b.srv.Tokens().Grants() {
		b.srv.Tokens().RevokeGrant(g.ID)
	}
	refreshed := b.srv.Authorize("") // a new install: the store would hold its refresh token
	b.tokens.mu.Lock()
	b.tokens.grant = (&oauth2.Token{AccessToken: "lc_at_revoked", RefreshToken: refreshed.Refresh, Expiry: t0.Add(time.Hour)}).
		WithExtra(map[string]any{"companyId": b.srv.CompanyID()})
	b.tokens.mu.Unlock()
	pages, err := b.pass(t, acct, "", sources.ReadOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pages[0].Leads) + len(pages[1].Leads); n != 120 {
		t.Fatalf("%d leads after re-auth", n)
	}
	if r, m := b.tokens.refreshes.Load(), b.tokens.mints.Load(); r != 1 || m != 2 {
		t.Fatalf("refreshes %d (want 1), mints %d (want 2)", r, m)
	}
}

func TestScopeErrorDoesNotRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 5}, func(c *Config) {
		c.Scopes = []string{"oauth.readonly", "oauth.write"} // no contacts.readonly
	})
	acct := b.accounts(t)[0]
	_, err := b.pass(t, acct, "", sources.ReadOptions{}, 0)
	if httpx.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), lctest.MsgScope) {
		t.Fatalf("want the scope 401, got %v", err)
	}
	if r, m := b.tokens.refreshes.Load(), b.tokens.mints.Load(); r != 0 || m != 1 {
		t.Fatalf("a scope error must not refresh or re-mint: refreshes %d mints %d", r, m)
	}
}

func TestThrottlingIsWaitedOut(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 400, Faults: simkit.FaultSettings{Rate429: 0.3}}, nil)
	acct := sources.Account{Source: sources.LeadConnector, ID: b.srv.LocationIDs()[0]}
	stats := &httpx.Stats{}
	start := b.clock.Now()
	n := 0
	for p, err := range b.src.Read(httpx.WithStats(context.Background(), stats), acct, StreamContacts, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Leads)
	}
	if n != 400 || stats.Throttled.Load() == 0 {
		t.Fatalf("%d leads, %d throttled", n, stats.Throttled.Load())
	}
	// Each 429 waits out one 10 s interval (no Retry-After).
	if waited := b.clock.Now().Sub(start); waited < time.Duration(stats.Throttled.Load())*10*time.Second {
		t.Fatalf("waited %v for %d 429s", waited, stats.Throttled.Load())
	}
}

func TestMalformedJSONFailsTheAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 50}, nil)
	acct := b.accounts(t)[0]
	b.srv.Faults().Set(simkit.FaultSettings{RateTruncate: 1})
	pages, err := b.pass(t, acct, "", sources.ReadOptions{}, 0)
	if len(pages) != 0 || err == nil || !strings.Contains(err.Error(), "malformed JSON at offset") ||
		!strings.Contains(err.Error(), "contacts/search") {
		t.Fatalf("%d pages, err %v", len(pages), err)
	}
}

func TestRefresher(t *testing.T) {
	t.Parallel()
	for _, version := range []string{V3, V2021} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			b := setup(t, lctest.Options{Locations: 1, ContactsPerLocation: 1}, func(c *Config) { c.APIVersion = version })
			ref := b.cfg.Refresher()
			ctx := context.Background()
			old := b.tokens.grant.RefreshToken
			tok, err := ref.Refresh(ctx, old)
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == old || tok.AccessToken == "" || tok.Extra("companyId") != b.srv.CompanyID() ||
				tok.Extra("userType") != "Company" || !tok.Expiry.Equal(t0.Add(86399*time.Second)) {
				t.Fatalf("refreshed token: %+v extras %v", tok, tok.Extra("companyId"))
			}
			// Inside the grace window the same pair comes back; after it, invalid_grant.
			again, err := ref.Refresh(ctx, old)
			if err != nil || again.AccessToken != tok.AccessToken {
				t.Fatalf("inside the grace window: %v", err)
			}
			b.clock.Advance(time.Minute)
			_, err = ref.Refresh(ctx, old)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || strings.Contains(err.Error(), old) {
				t.Fatalf("reused refresh token: %v", err)
			}
			b.srv.SetInactive(true)
			_, err = ref.Refresh(ctx, tok.RefreshToken)
			if err == nil || errors.As(err, &re) || !strings.Contains(err.Error(), "not active") {
				t.Fatalf("'Location is not active' must be a plain transient error: %v", err)
			}
			b.srv.SetInactive(false)
			if _, err := ref.Refresh(ctx, tok.RefreshToken); err != nil {
				t.Fatalf("the refresh token must survive 'not active': %v", err)
			}
			if n := b.srv.Counters().Requests("oauth/token", 0); n != 6 { // exchange + 5 refreshes: never a retry
				t.Fatalf("%d token requests, want 6", n)
			}
		})
	}
}

func TestParseTokenAcceptsBothCases(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"access_token":"a","refresh_token":"r","expires_in":86399,"token_type":"Bearer","companyId":"C","userType":"Company","scope":"x y"}`,
		`{"accessToken":"a","refreshToken":"r","expiresIn":"86399","tokenType":"Bearer","companyId":"C","userType":"Company","scope":"x y"}`,
	} {
		tok, err := parseToken([]byte(body), t0)
		if err != nil || tok.AccessToken != "a" || tok.RefreshToken != "r" || !tok.Expiry.Equal(t0.Add(86399*time.Second)) ||
			tok.Extra("companyId") != "C" || tok.Extra("scope") != "x y" {
			t.Fatalf("%s: %+v %v", body, tok, err)
		}
	}
	if _, err := parseToken([]byte(`{"token_type":"Bearer"}`), t0); err == nil {
		t.Fatal("a token answer without an access token must fail")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	ok := Config{ClientID: "6578278e879ad2646715ba9c-lq1x2y3z", ClientSecret: "s"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("app id from the client id: %v", err)
	}
	if c := ok.withDefaults(); c.AppID != "6578278e879ad2646715ba9c" || c.TokenURL != DefaultBaseURL+"/oauth/token" || c.APIVersion != V3 {
		t.Fatalf("defaults: %+v", c)
	}
	for field, c := range map[string]Config{
		"api_version": {AppID: "a", APIVersion: "2022-01-01"},
		"page_size":   {AppID: "a", PageSize: 101},
		"app_id":      {ClientID: "plain"},
		"base_url":    {AppID: "a", BaseURL: "ftp://x"},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
	u, err := url.Parse(ok.AuthCodeURL("st", "http://127.0.0.1:5000/callback", "ignored"))
	if err != nil || u.Host != "marketplace.gohighlevel.com" || u.Query().Get("response_type") != "code" ||
		u.Query().Get("scope") != strings.Join(DefaultScopes, " ") || u.Query().Get("state") != "st" ||
		u.Query().Get("code_challenge") != "" || u.Query().Get("client_id") != ok.ClientID {
		t.Fatalf("auth URL %v", u)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	wm := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	c := encodeCursor(wm, []json.RawMessage{json.RawMessage(`1767225600000`), json.RawMessage(`"abc"`)})
	if string(c) != `{"watermark":"2026-01-02T03:04:05.678Z","after":[1767225600000,"abc"]}` {
		t.Fatalf("cursor %s", c)
	}
	got, after, err := parseCursor(c)
	if err != nil || !got.Equal(wm) || len(after) != 2 {
		t.Fatalf("%v %v %v", got, after, err)
	}
	for _, bad := range []sources.Cursor{"nope", `{"watermark":"yesterday"}`, `{"after":[1]}`} {
		if _, _, err := parseCursor(bad); err == nil {
			t.Errorf("cursor %s accepted", bad)
		}
	}
}

// TestRepeatingSearchAfterIsAnError: a server that keeps answering the same page must not
// make the source loop forever.
func TestRepeatingSearchAfterIsAnError(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/location-token", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"accessToken":"lc_at_loc","expiresIn":86399,"locationId":"L"}`))
	})
	searches := 0
	mux.HandleFunc("POST /contacts/search", func(w http.ResponseWriter, r *http.Request) {
		searches++
		_, _ = w.Write([]byte(`{"contacts":[{"id":"same","dateUpdated":"2026-01-01T00:00:00.000Z","searchAfter":[1767225600000,"same"]}],"total":1}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := Config{BaseURL: srv.URL, AppID: "app", CompanyID: "C", PageSize: 1}
	tokens := &memTokens{now: time.Now, accounts: map[string]*memAccount{},
		grant: &oauth2.Token{AccessToken: "lc_at_company", Expiry: time.Now().Add(time.Hour)}}
	src, err := New(cfg, tokens)
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	var last error
	for _, err := range src.Read(context.Background(), sources.Account{ID: "L"}, StreamContacts, "", sources.ReadOptions{}) {
		if err != nil {
			last = err
			break
		}
		pages++
	}
	if !errors.Is(last, sources.ErrEndlessPaging) || !strings.Contains(last.Error(), "contacts/search") || pages != 1 || searches != 2 {
		t.Fatalf("pages %d, searches %d, err %v", pages, searches, last)
	}
}
