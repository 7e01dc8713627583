package app_test

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/conformance"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/store"
)

// The toy vendor lives in this file alone. A shipped vendor splits the same parts over its
// package: the registration (sources/<vendor>/vendor.go), the source and its OAuth calls
// (sources/<vendor>/*.go), the fake (sources/<vendor>/<vendor>test) and the conformance test
// (sources/<vendor>/conformance_test.go), plus one import line in sources/all/all.go. The
// toy is registered, configured with keys of its own, served by the sandbox, authorized
// through the loopback code flow, read over HTTP through httpx, synced by the worker into
// SQLite and PostgreSQL and run through the conformance suite, with no change to any other
// file: that is what adding a vendor takes.
//
// The Toy CRM API. This comment is its document; the fake follows it and TestToyFakeAPI
// checks the fake against it.
//
//	GET  /oauth/authorize     response_type=code, client_id, redirect_uri (a loopback URL of
//	                          the registered one, any port), state; optional code_challenge with
//	                          code_challenge_method=S256. Approves at once: 302 to redirect_uri
//	                          with code and state.
//	POST /oauth/token         form: client_id, client_secret and grant_type=authorization_code
//	                          (code, redirect_uri, code_verifier if a challenge was sent) or
//	                          grant_type=refresh_token (refresh_token). 200
//	                          {"access_token","token_type":"Bearer","expires_in","refresh_token"};
//	                          400 {"error":"invalid_grant"} for a spent code or refresh token
//	                          (refresh tokens are single-use), 401 {"error":"invalid_client"}.
//	GET  /api/v1/accounts     {"accounts":[{"id","name"}]}: every account the grant sees.
//	GET  /api/v1/accounts/{id}/contacts
//	                          updated_since (RFC 3339, inclusive), limit (1..500, default 100),
//	                          page_token (continues a listing; it holds the position and the
//	                          filter). Contacts in (updated_at, id) order: {"contacts":[{"id",
//	                          "first_name","last_name","email","created_at","updated_at"}],
//	                          "next_page_token":"..."} ("" on the last page). The token is a
//	                          position, not an offset: a contact deleted or updated during a
//	                          listing moves no other. 403 {"error":"forbidden","message"} for
//	                          a restricted account, 404 for an unknown one.
//
// API calls carry Authorization: Bearer <access token>; an unknown, expired or revoked one is
// 401 {"error":"invalid_token"}. Deleted contacts are simply gone (no tombstones): only a full
// pass notices them. Injected faults apply to the token and API endpoints; a 429 says
// Retry-After in seconds.

// ----- The registration (sources/toy/vendor.go) -----

const toyName = "toy"

// The toy's defaults, used by its options and its source alike.
const (
	toyDefaultPageSize = 100
	toyMaxPageSize     = 500
	toyDefaultLookback = time.Minute // re-read window of an incremental pass: clock skew
	toyDefaultTokenTTL = time.Hour
)

type toyOptions struct {
	PageSize int             `yaml:"page_size"` // contacts per request (limit)
	Lookback config.Duration `yaml:"lookback"`  // re-read window of each incremental pass
	MaxPages int             `yaml:"max_pages"` // page budget of one pass
}

func (o *toyOptions) Defaults() {
	o.PageSize = cmp.Or(o.PageSize, toyDefaultPageSize)
	o.Lookback = cmp.Or(o.Lookback, config.Duration(toyDefaultLookback))
	o.MaxPages = cmp.Or(o.MaxPages, sources.DefaultMaxPages)
}

func (o *toyOptions) Validate(c *config.Checker) {
	c.Count("page_size", o.PageSize, toyMaxPageSize)
	c.Within("lookback", o.Lookback, 24*time.Hour)
	c.Count("max_pages", o.MaxPages, sources.MaxPagesLimit)
}

func init() {
	vendors.Register(vendors.Vendor{
		Name: toyName, Title: "Toy CRM", Concurrency: 2,
		Options: func() config.Options { return new(toyOptions) },
		Open:    openToy,
		Fake:    toyFakeSpec,
	})
}

func openToy(c vendors.Conn) (vendors.Opened, error) {
	cc := c.Config
	for _, u := range []struct{ key, url string }{{"base_url", cc.BaseURL}, {"auth_url", cc.AuthURL}, {"token_url", cc.TokenURL}} {
		if p, err := url.Parse(u.url); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return vendors.Opened{}, fmt.Errorf("toy: %s must be an http(s) URL (the toy CRM has no public one)", u.key)
		}
	}
	newClient := func(hc httpx.Config) *httpx.Client {
		hc.Vendor, hc.Logger = toyName, c.Logger
		if c.HTTPX != nil {
			c.HTTPX(&hc)
		}
		return httpx.New(hc)
	}
	auth := &toyAuth{clientID: cc.ClientID, secret: c.ClientSecret, authURL: cc.AuthURL, tokenURL: cc.TokenURL,
		http: newClient(httpx.Config{MaxAttempts: 1})}
	o := cc.Options.(*toyOptions)
	src := &toySource{api: newClient(httpx.Config{BaseURL: cc.BaseURL}), tokens: c.Tokens(auth),
		since: cc.BackfillStart.Time, pageSize: o.PageSize, lookback: o.Lookback.D(), maxPages: o.MaxPages, log: c.Logger}
	return vendors.Opened{Source: src, Auth: auth, Refresher: auth}, nil
}

var toyFakeSpec = &vendors.FakeSpec{
	Prefix: "/toy",
	Flags: func(fs *flag.FlagSet) func() any {
		contacts := fs.Int("toy-contacts", 40, "Toy CRM: contacts per account")
		return func() any { return toyFakeOptions{Contacts: *contacts} }
	},
	New: func(c vendors.FakeCommon, opts any) vendors.Fake {
		o, _ := opts.(toyFakeOptions)
		c.Apply(&o.Seed, &o.Clock, &o.TokenTTL, &o.Faults)
		return newToyFake(o)
	},
	Sandbox: func(_ vendors.Fake, base string) vendors.SandboxConn {
		return vendors.SandboxConn{ClientID: toyClientID, ClientSecret: toyClientSecret,
			BaseURL: base + "/api/v1/", AuthURL: base + "/oauth/authorize", TokenURL: base + "/oauth/token"}
	},
}

// ----- OAuth (sources/toy/oauth.go) -----

// toyAuth is the code flow and the refresh call. Codes and refresh tokens are single-use, so
// every token request is one HTTP request, never re-sent.
type toyAuth struct {
	clientID, secret  string
	authURL, tokenURL string
	http              *httpx.Client
}

func (a *toyAuth) AuthCodeURL(state, redirectURI, pkceChallenge string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {a.clientID}, "redirect_uri": {redirectURI}, "state": {state}}
	if pkceChallenge != "" {
		q.Set("code_challenge", pkceChallenge)
		q.Set("code_challenge_method", "S256")
	}
	return a.authURL + "?" + q.Encode()
}

func (a *toyAuth) Exchange(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error) {
	p := map[string]string{"grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI}
	if pkceVerifier != "" {
		p["code_verifier"] = pkceVerifier
	}
	return a.token(ctx, "oauth/token:code", p)
}

// Refresh implements store.Refresher.
func (a *toyAuth) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return a.token(ctx, "oauth/token:refresh", map[string]string{"grant_type": "refresh_token", "refresh_token": refreshToken})
}

func (a *toyAuth) token(ctx context.Context, endpoint string, params map[string]string) (*oauth2.Token, error) {
	tok, err := a.http.Token(ctx, httpx.TokenStyle{Endpoint: endpoint}, a.tokenURL, a.clientID, a.secret, params)
	return tok, httpx.TokenFailure(err, "toy: token request")
}

var _ store.Refresher = (*toyAuth)(nil)

// ----- The source (sources/toy/toy.go) -----

type toySource struct {
	api      *httpx.Client
	tokens   sources.Tokens
	since    time.Time // backfill start (zero: everything)
	pageSize int
	lookback time.Duration
	maxPages int
	log      *slog.Logger
}

func (s *toySource) Name() string { return toyName }

func (s *toySource) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		var list struct {
			Accounts []struct{ ID, Name string } `json:"accounts"`
		}
		if err := s.api.JSON(ctx, httpx.Request{Path: "accounts", Endpoint: "accounts", Bucket: "grant",
			Auth: s.tokens.Grant()}, &list); err != nil {
			yield(sources.Account{}, err) // the worker says which connection and what it was doing
			return
		}
		for _, a := range list.Accounts {
			if !yield(sources.Account{Source: toyName, ID: a.ID, Name: a.Name, Active: true}, nil) {
				return
			}
		}
	}
}

// toyCursor is a position in an account's contacts. The listing is in updated_at order, so
// everything before the last contact read has been read: Since may move with every page.
// A contact updated since moves past it, where this pass or the next one reads it.
type toyCursor struct {
	// Since is the updated_at of the last contact read; a new pass starts at it, less the
	// lookback.
	Since time.Time `json:"since,omitzero"`
	// PageToken is the next page of the pass under way ("" between passes).
	PageToken string `json:"page_token,omitempty"`
}

// Streams implements sources.Source: the toy has one stream, its contacts.
func (s *toySource) Streams() []sources.Stream {
	return []sources.Stream{{Name: "contacts", Mode: sources.Incremental, Table: sources.TableLeads}}
}

// Read pages an account's contacts from cur: a pass under way resumes at its page token, a
// new one starts at the cursor's time less the lookback (a full pass or an empty cursor: at
// the backfill start).
func (s *toySource) Read(ctx context.Context, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if stream != "contacts" {
			yield(sources.Page{}, fmt.Errorf("toy: no stream %q", stream))
			return
		}
		var c toyCursor
		if cur != "" {
			if err := json.Unmarshal([]byte(cur), &c); err != nil {
				yield(sources.Page{}, fmt.Errorf("toy: unreadable cursor: %w", err))
				return
			}
		}
		q := url.Values{"limit": {strconv.Itoa(s.pageSize)}}
		switch since := cmp.Or(opts.Since, s.since); {
		case c.PageToken != "":
			q.Set("page_token", c.PageToken)
		case !c.Since.IsZero():
			q.Set("updated_since", c.Since.Add(-s.lookback).Format(time.RFC3339Nano))
		case !since.IsZero():
			q.Set("updated_since", since.Format(time.RFC3339Nano))
		}
		guard := sources.PageGuard{What: "toy: account " + acct.ID + ": contacts", Max: s.maxPages}
		for {
			var page toyPage
			_, err := s.api.Decode(ctx, httpx.Request{Path: "accounts/" + url.PathEscape(acct.ID) + "/contacts",
				Endpoint: "contacts", Query: q, Bucket: "grant", Auth: s.tokens.Grant()}, func(b []byte) (err error) {
				page, err = decodeToyPage(acct.ID, b)
				return err
			})
			if err != nil {
				yield(sources.Page{}, s.leadsError(acct, err))
				return
			}
			if err := guard.Check(page.next, page.keys); err != nil {
				yield(sources.Page{}, err)
				return
			}
			for _, r := range page.rejected {
				s.log.WarnContext(ctx, "toy: quarantined a record", slog.String("account", acct.ID), slog.Any("rejected", r))
			}
			for _, l := range page.leads {
				if l.UpdatedAt.After(c.Since) { // the newest, whatever the page's order
					c.Since = l.UpdatedAt
				}
			}
			c.PageToken = page.next
			next, err := json.Marshal(c)
			if err != nil {
				yield(sources.Page{}, err)
				return
			}
			if !yield(sources.Page{Leads: page.leads, Rejected: page.rejected, Next: sources.Cursor(next)}, nil) || page.next == "" {
				return
			}
			q = url.Values{"limit": {strconv.Itoa(s.pageSize)}, "page_token": {page.next}}
		}
	}
}

// leadsError makes a 403 the typed restriction; other errors go as they are (the worker
// names the account).
func (s *toySource) leadsError(acct sources.Account, err error) error {
	if he, ok := errors.AsType[*httpx.Error](err); ok && he.Status == http.StatusForbidden {
		return &sources.RestrictedError{Vendor: toyName, AccountID: acct.ID, Stream: "contacts", Message: he.Message, Fields: sources.PIIFields}
	}
	return err
}

type toyPage struct {
	leads    []sources.Lead
	rejected []sources.Rejected
	keys     []string // for the page guard
	next     string
}

// decodeToyPage reads one contacts answer record by record: a bad record is quarantined, a
// truncated answer is a *json.SyntaxError (retried by httpx).
func decodeToyPage(account string, body []byte) (toyPage, error) {
	var p toyPage
	env, recs, found, err := sources.SplitRecords(body, "contacts")
	if err != nil {
		return p, err
	}
	var e struct {
		Next string `json:"next_page_token"`
	}
	if err := json.Unmarshal(env, &e); err != nil || !found {
		return p, errors.New("toy: a contacts answer without a contacts array")
	}
	p.next = e.Next
	for _, r := range recs {
		var c struct {
			ID        sources.FlexString `json:"id"`
			FirstName sources.FlexString `json:"first_name"`
			LastName  sources.FlexString `json:"last_name"`
			Email     sources.FlexString `json:"email"`
			CreatedAt time.Time          `json:"created_at"`
			UpdatedAt time.Time          `json:"updated_at"`
		}
		switch {
		case r.TooDeep():
			p.rejected = append(p.rejected, r.Reject("", sources.TooDeepReason))
		default:
			if err := json.Unmarshal(r.Raw, &c); err != nil {
				p.rejected = append(p.rejected, r.Reject("", sources.DecodeReason(err)))
			} else if c.ID == "" {
				p.rejected = append(p.rejected, r.Reject("", "no id"))
			} else {
				p.leads = append(p.leads, sources.Lead{Source: toyName, AccountID: account, ID: string(c.ID),
					Kind: sources.KindContact, FirstName: string(c.FirstName), LastName: string(c.LastName),
					Email: string(c.Email), CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(), Raw: r.Raw})
			}
		}
		p.keys = append(p.keys, r.Key(string(c.ID)))
	}
	return p, nil
}

// ----- The fake (sources/toy/toytest) -----

const (
	toyClientID     = "toy-sandbox-client"
	toyClientSecret = "toy-sandbox-secret"
	toyRedirectURI  = "http://127.0.0.1/callback" // registered; any port on loopback (RFC 8252)
)

// toyFakeOptions configure the fake; zero values are its defaults.
type toyFakeOptions struct {
	Seed     uint64
	Clock    simkit.Clock  // nil: the real clock
	TokenTTL time.Duration // 0: toyDefaultTokenTTL
	Faults   simkit.FaultSettings
	// Accounts (0: 3), of which the last Restricted answer 403 (0: 1; negative: none), each
	// with Contacts (0: 40).
	Accounts, Restricted, Contacts int
}

type toyContact struct {
	ID        string    `json:"id"`
	FirstName string    `json:"first_name"`
	LastName  string    `json:"last_name"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type toyAccount struct {
	id, name   string
	restricted bool
	contacts   map[string]*toyContact
}

// toyFake is the Toy CRM in memory. Safe for concurrent use.
type toyFake struct {
	clock    simkit.Clock
	counters *simkit.Counters
	faults   *simkit.Faults
	tokens   *simkit.Registry
	codes    *simkit.AuthCodes
	handler  http.Handler

	mu       sync.Mutex
	accounts []*toyAccount
	rnd      *rand.Rand // names of created contacts
	created  int
}

var _ vendors.Fake = (*toyFake)(nil)

func newToyFake(o toyFakeOptions) *toyFake {
	o.Clock = cmp.Or[simkit.Clock](o.Clock, simkit.RealClock{})
	o.Accounts, o.Restricted, o.Contacts = cmp.Or(o.Accounts, 3), cmp.Or(o.Restricted, 1), cmp.Or(o.Contacts, 40)
	f := &toyFake{clock: o.Clock, counters: simkit.NewCounters(), faults: simkit.NewFaults(o.Seed, o.Faults),
		tokens: simkit.NewRegistry(o.Clock, toyName, cmp.Or(o.TokenTTL, toyDefaultTokenTTL)),
		codes:  simkit.NewAuthCodes(o.Clock), rnd: simkit.RandFor(o.Seed, "toy/mutations")}
	end := o.Clock.Now().Truncate(time.Millisecond)
	for i := range o.Accounts {
		r := simkit.RandFor(o.Seed, fmt.Sprintf("toy/account/%d", i))
		a := &toyAccount{id: fmt.Sprintf("acct-%d", i+1), name: simkit.CompanyName(r),
			restricted: i >= o.Accounts-o.Restricted, contacts: map[string]*toyContact{}}
		for j := range o.Contacts {
			created := end.Add(-time.Duration(r.Int64N(int64(90 * 24 * time.Hour)))).Truncate(time.Millisecond)
			updated := created.Add(time.Duration(r.Int64N(int64(end.Sub(created)) + 1))).Truncate(time.Millisecond)
			a.contacts[fmt.Sprintf("c%04d", j+1)] = newToyContact(r, fmt.Sprintf("c%04d", j+1), created, updated)
		}
		f.accounts = append(f.accounts, a)
	}
	api := http.NewServeMux()
	api.HandleFunc("POST /oauth/token", f.token)
	api.HandleFunc("GET /api/v1/accounts", f.authorized(f.listAccounts))
	api.HandleFunc("GET /api/v1/accounts/{id}/contacts", f.authorized(f.listContacts))
	on429 := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		simkit.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate_limited"})
	}
	faulty := simkit.CountRequests(f.faults.Middleware(api, f.counters, on429), f.counters, func(r *http.Request) string {
		if strings.HasSuffix(r.URL.Path, "/contacts") {
			return "contacts"
		}
		return strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1"), "/")
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", f.authorize)
	mux.Handle("/oauth/token", faulty)
	mux.Handle("/api/", faulty)
	mux.Handle("/_admin/counters", simkit.AdminCounters(f.counters))
	mux.Handle("/_admin/faults", simkit.AdminFaults(f.faults))
	mux.HandleFunc("GET /_admin/truth", func(w http.ResponseWriter, _ *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.GroundTruth())
	})
	f.handler = mux
	return f
}

func newToyContact(r *rand.Rand, id string, created, updated time.Time) *toyContact {
	p := simkit.NewPerson(r)
	return &toyContact{ID: id, FirstName: p.FirstName, LastName: p.LastName, Email: p.Email,
		CreatedAt: created.UTC(), UpdatedAt: updated.UTC()}
}

func (f *toyFake) Handler() http.Handler      { return f.handler }
func (f *toyFake) Counters() *simkit.Counters { return f.counters }
func (f *toyFake) Faults() *simkit.Faults     { return f.faults }

func (f *toyFake) GroundTruth() []simkit.AccountTruth {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []simkit.AccountTruth
	for _, a := range f.accounts {
		at := simkit.AccountTruth{Source: toyName, AccountID: a.id, Restricted: a.restricted}
		for _, c := range a.contacts {
			at.Leads = append(at.Leads, simkit.LeadTruth{ID: c.ID, Kind: sources.KindContact, UpdatedAt: c.UpdatedAt})
		}
		slices.SortFunc(at.Leads, func(x, y simkit.LeadTruth) int { return strings.Compare(x.ID, y.ID) })
		out = append(out, at)
	}
	return out
}

// account is the account named id (nil if none); f.mu is held.
func (f *toyFake) account(id string) *toyAccount {
	for _, a := range f.accounts {
		if a.id == id {
			return a
		}
	}
	return nil
}

// CreateContact adds a contact to account, updated now.
func (f *toyFake) CreateContact(account string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.account(account)
	if a == nil {
		return "", fmt.Errorf("toy fake: no account %s", account)
	}
	f.created++
	id := fmt.Sprintf("n%04d", f.created)
	now := f.clock.Now().Truncate(time.Millisecond)
	a.contacts[id] = newToyContact(f.rnd, id, now, now)
	return id, nil
}

// UpdateContact edits a contact: its updated_at becomes now (and always moves forward).
func (f *toyFake) UpdateContact(account, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.account(account)
	if a == nil || a.contacts[id] == nil {
		return fmt.Errorf("toy fake: no contact %s/%s", account, id)
	}
	c := a.contacts[id]
	c.Email = strings.Replace(c.Email, "@", "+1@", 1)
	now := f.clock.Now().Truncate(time.Millisecond).UTC()
	if !now.After(c.UpdatedAt) {
		now = c.UpdatedAt.Add(time.Millisecond)
	}
	c.UpdatedAt = now
	return nil
}

// DeleteContact deletes a contact for good.
func (f *toyFake) DeleteContact(account, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.account(account)
	if a == nil || a.contacts[id] == nil {
		return fmt.Errorf("toy fake: no contact %s/%s", account, id)
	}
	delete(a.contacts, id)
	return nil
}

// ContactIDs are an account's contact ids, sorted.
func (f *toyFake) ContactIDs(account string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	if a := f.account(account); a != nil {
		for id := range a.contacts {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (f *toyFake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != toyClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case err != nil || !toyRedirectAllowed(redirect):
		http.Error(w, "redirect_uri is not registered", http.StatusBadRequest) // never redirect to it
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256":
		http.Error(w, "code_challenge_method must be S256", http.StatusBadRequest)
		return
	}
	code := f.codes.Issue(toyClientID, redirect.String(), "sandbox", q.Get("code_challenge"), "S256", 10*time.Minute)
	rq := redirect.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func toyRedirectAllowed(u *url.URL) bool {
	reg, _ := url.Parse(toyRedirectURI)
	return u.Scheme == reg.Scheme && u.Hostname() == reg.Hostname() && u.Path == reg.Path && u.RawQuery == ""
}

func (f *toyFake) token(w http.ResponseWriter, r *http.Request) {
	oauthError := func(status int, code string) { simkit.WriteJSON(w, status, map[string]string{"error": code}) }
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request")
		return
	}
	if r.PostForm.Get("client_id") != toyClientID ||
		subtle.ConstantTimeCompare([]byte(r.PostForm.Get("client_secret")), []byte(toyClientSecret)) != 1 {
		oauthError(http.StatusUnauthorized, "invalid_client")
		return
	}
	var p simkit.Pair
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		subject, challenge, _, ok := f.codes.Redeem(r.PostForm.Get("code"), toyClientID, r.PostForm.Get("redirect_uri"))
		if !ok || (challenge != "" && oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != challenge) {
			oauthError(http.StatusBadRequest, "invalid_grant")
			return
		}
		_, p = f.tokens.NewGrant(subject, nil)
		f.counters.Inc(simkit.CountTokenGrants)
	case "refresh_token":
		res := f.tokens.Refresh(r.PostForm.Get("refresh_token"), false)
		if res.Outcome != simkit.RefreshOK {
			if res.Outcome == simkit.RefreshReused {
				f.counters.Inc(simkit.CountRefreshReuse)
			}
			oauthError(http.StatusBadRequest, "invalid_grant")
			return
		}
		f.counters.Inc(simkit.CountRefreshes)
		if f.faults.TakeDropRefresh() {
			simkit.DropResponse()
		}
		p = res.Pair
	default:
		oauthError(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"access_token": p.Access, "token_type": "Bearer",
		"expires_in": int64(p.TTL / time.Second), "refresh_token": p.Refresh})
}

func (f *toyFake) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if st, _, _ := f.tokens.Check(tok); !ok || st != simkit.AccessValid {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			simkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
			return
		}
		next(w, r)
	}
}

func (f *toyFake) listAccounts(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	out := []map[string]string{}
	for _, a := range f.accounts {
		out = append(out, map[string]string{"id": a.id, "name": a.name})
	}
	f.mu.Unlock()
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"accounts": out})
}

// toyPosition is what a page token holds: the last contact listed, in (updated_at, id) order.
type toyPosition struct {
	UpdatedAt time.Time `json:"u"`
	ID        string    `json:"id"`
}

func (p toyPosition) before(c *toyContact) bool {
	return p.UpdatedAt.Before(c.UpdatedAt) || (p.UpdatedAt.Equal(c.UpdatedAt) && p.ID < c.ID)
}

func (f *toyFake) listContacts(w http.ResponseWriter, r *http.Request) {
	bad := func(msg string) {
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "message": msg})
	}
	q := r.URL.Query()
	limit := toyDefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > toyMaxPageSize {
			bad("limit must be 1..500")
			return
		}
		limit = n
	}
	var from *toyPosition // list contacts after it
	var since time.Time
	if s := q.Get("page_token"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		from = new(toyPosition)
		if err != nil || json.Unmarshal(b, from) != nil {
			bad("invalid page_token")
			return
		}
	} else if s := q.Get("updated_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			bad("updated_since must be RFC 3339")
			return
		}
		since = t
	}
	f.mu.Lock()
	a := f.account(r.PathValue("id"))
	var list []toyContact
	if a != nil && !a.restricted {
		for _, c := range a.contacts {
			if (from == nil && !c.UpdatedAt.Before(since)) || (from != nil && from.before(c)) {
				list = append(list, *c)
			}
		}
	}
	f.mu.Unlock()
	switch {
	case a == nil:
		simkit.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "no such account"})
		return
	case a.restricted:
		simkit.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden",
			"message": "this account's contacts are restricted"})
		return
	}
	slices.SortFunc(list, func(x, y toyContact) int {
		return cmp.Or(x.UpdatedAt.Compare(y.UpdatedAt), strings.Compare(x.ID, y.ID))
	})
	next := ""
	if len(list) > limit {
		list = list[:limit]
		b, _ := json.Marshal(toyPosition{UpdatedAt: list[limit-1].UpdatedAt, ID: list[limit-1].ID})
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"contacts": list, "next_page_token": next})
}

// ----- The tests -----

// The toy's own keys are checked like every vendor's: a typo, another vendor's key, a bound.
func TestToyVendorConfig(t *testing.T) {
	t.Parallel()
	yaml := fmt.Sprintf(`state_dir: %q
http:
  listen: "off"
concurrency:
  toy: 3
connections:
  - name: toy-1
    source: toy
    client_id: toy-client
    client_secret: {env: TOY_SECRET}
    page_size: 25
    lookback: 5m
`, t.TempDir())
	for _, bad := range []struct{ from, to, want string }{
		{"    lookback: 5m\n", "    lookbak: 5m\n", `connections[0].lookbak (line 12): unknown field (did you mean "lookback"?)`},
		{"    lookback: 5m\n", "    app_id: x\n", `connections[0].app_id (line 12): is a leadconnector option; this connection's source is toy`},
		{"page_size: 25", "page_size: 501", `connections[0].page_size (line 11): must be between 1 and 500, got 501`},
	} {
		_, err := config.Parse([]byte(strings.Replace(yaml, bad.from, bad.to, 1)), "toy.yaml")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.to, err, bad.want)
		}
	}
	cfg, err := config.Parse([]byte(yaml), "toy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Connections[0].Options.(*toyOptions)
	if o.PageSize != 25 || o.Lookback.D() != 5*time.Minute || o.MaxPages != sources.DefaultMaxPages || cfg.Connections[0].Concurrency != 3 {
		t.Fatalf("options %+v, concurrency %d", o, cfg.Connections[0].Concurrency)
	}
}

// The fake against its document (the comment at the top of this file), with plain net/http.
func TestToyFakeAPI(t *testing.T) {
	t.Parallel()
	f := newToyFake(toyFakeOptions{Seed: 7, Contacts: 23})
	srv := simkit.Serve(f.Handler())
	t.Cleanup(srv.Close)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, bearer string, out any) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatalf("%s %s: %d: %v", method, path, resp.StatusCode, err)
			}
		}
		return resp
	}

	// The code flow, with PKCE, to a loopback port of the client's choosing.
	const redirect = "http://127.0.0.1:5555/callback"
	authorize := func(redirect, challenge string) *http.Response {
		q := url.Values{"response_type": {"code"}, "client_id": {toyClientID}, "redirect_uri": {redirect}, "state": {"s1"}}
		if challenge != "" {
			q.Set("code_challenge", challenge)
			q.Set("code_challenge_method", "S256")
		}
		return do("GET", "/oauth/authorize?"+q.Encode(), nil, "", nil)
	}
	if resp := authorize("http://evil.example/callback", ""); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("an unregistered redirect_uri: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	verifier := oauth2.GenerateVerifier()
	code := func() string {
		t.Helper()
		resp := authorize(redirect, oauth2.S256ChallengeFromVerifier(verifier))
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || loc.Host != "127.0.0.1:5555" || loc.Query().Get("state") != "s1" {
			t.Fatalf("authorize: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		return loc.Query().Get("code")
	}
	type tokenAnswer struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
		Error        string `json:"error"`
	}
	token := func(form url.Values) (int, tokenAnswer) {
		t.Helper()
		form.Set("client_id", toyClientID)
		form.Set("client_secret", toyClientSecret)
		var a tokenAnswer
		return do("POST", "/oauth/token", form, "", &a).StatusCode, a
	}
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code()}, "redirect_uri": {redirect},
		"code_verifier": {"not-the-verifier-not-the-verifier-not-the-verifier"}}
	if st, a := token(exchange); st != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("a code with the wrong PKCE verifier: %d %+v", st, a)
	}
	exchange.Set("code", code())
	exchange.Set("code_verifier", verifier)
	st, tok := token(exchange)
	if st != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
		t.Fatalf("exchange: %d %+v", st, tok)
	}
	if st, a := token(exchange); st != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("a code used twice: %d %+v", st, a)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
	if st, a := token(refresh); st != http.StatusOK || a.AccessToken == "" || a.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %d %+v", st, a)
	}
	if st, a := token(refresh); st != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("a refresh token used twice: %d %+v", st, a)
	}
	at := tok.AccessToken // still valid: a refresh does not revoke it

	var accounts struct{ Accounts []struct{ ID, Name string } }
	if st := do("GET", "/api/v1/accounts", nil, at, &accounts).StatusCode; st != http.StatusOK || len(accounts.Accounts) != 3 {
		t.Fatalf("accounts: %d %+v", st, accounts)
	}
	if st := do("GET", "/api/v1/accounts/acct-1/contacts", nil, "toy_at_forged", nil).StatusCode; st != http.StatusUnauthorized {
		t.Fatalf("a forged token: %d", st)
	}
	var refusal struct{ Error, Message string }
	if st := do("GET", "/api/v1/accounts/acct-3/contacts", nil, at, &refusal).StatusCode; st != http.StatusForbidden || refusal.Error != "forbidden" {
		t.Fatalf("the restricted account: %d %+v", st, refusal)
	}
	if st := do("GET", "/api/v1/accounts/acct-1/contacts?limit=501", nil, at, nil).StatusCode; st != http.StatusBadRequest {
		t.Fatalf("limit 501: %d", st)
	}

	// A listing in pages of 5; after the first page, one contact of it is deleted and another
	// updated. No other contact is skipped or listed twice: the updated one comes again last.
	type page struct {
		Contacts []toyContact `json:"contacts"`
		Next     *string      `json:"next_page_token"`
	}
	var listed []toyContact
	q := url.Values{"limit": {"5"}}
	for pages := 0; ; pages++ {
		var p page
		if st := do("GET", "/api/v1/accounts/acct-1/contacts?"+q.Encode(), nil, at, &p).StatusCode; st != http.StatusOK || p.Next == nil || pages > 10 {
			t.Fatalf("page %d: %d, next_page_token %v", pages, st, p.Next)
		}
		listed = append(listed, p.Contacts...)
		if pages == 0 {
			if err := f.DeleteContact("acct-1", p.Contacts[1].ID); err != nil {
				t.Fatal(err)
			}
			if err := f.UpdateContact("acct-1", p.Contacts[2].ID); err != nil {
				t.Fatal(err)
			}
		}
		if *p.Next == "" {
			break
		}
		q.Set("page_token", *p.Next)
	}
	ids := map[string]int{}
	for i, c := range listed {
		ids[c.ID]++
		if i > 0 && i != len(listed)-1 && cmp.Or(c.UpdatedAt.Compare(listed[i-1].UpdatedAt), strings.Compare(c.ID, listed[i-1].ID)) <= 0 {
			t.Fatalf("contact %d (%s) is out of (updated_at, id) order", i, c.ID)
		}
	}
	updated := listed[2].ID
	if len(ids) != 23 || ids[updated] != 2 || listed[len(listed)-1].ID != updated || len(listed) != 24 {
		t.Fatalf("listed %d contacts (%d distinct); %s %d times, last %s", len(listed), len(ids), updated, ids[updated], listed[len(listed)-1].ID)
	}
	// updated_since is inclusive: the updated contact's own time lists it, and it alone.
	var p page
	since := listed[len(listed)-1].UpdatedAt.Format(time.RFC3339Nano)
	if do("GET", "/api/v1/accounts/acct-1/contacts?updated_since="+url.QueryEscape(since), nil, at, &p); len(p.Contacts) != 1 || p.Contacts[0].ID != updated {
		t.Fatalf("updated_since %s: %+v", since, p.Contacts)
	}
}

// The toy's own OAuth calls against the fake: the code flow with PKCE, then a refresh token
// spent twice, which the token store must read as a grant needing a new login.
func TestToyOAuth(t *testing.T) {
	t.Parallel()
	srv := simkit.Serve(newToyFake(toyFakeOptions{Seed: 3}).Handler())
	t.Cleanup(srv.Close)
	auth := &toyAuth{clientID: toyClientID, secret: toyClientSecret, authURL: srv.URL + "/oauth/authorize",
		tokenURL: srv.URL + "/oauth/token", http: httpx.New(httpx.Config{Vendor: toyName, MaxAttempts: 1})}
	verifier := oauth2.GenerateVerifier()
	const redirect = "http://127.0.0.1:4321/callback"
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(auth.AuthCodeURL("st", redirect, oauth2.S256ChallengeFromVerifier(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "st" {
		t.Fatalf("authorize: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ctx := context.Background()
	tok, err := auth.Exchange(ctx, loc.Query().Get("code"), redirect, verifier)
	if err != nil || tok.RefreshToken == "" || time.Until(tok.Expiry) < 59*time.Minute {
		t.Fatalf("exchange: %+v, %v", tok, err)
	}
	if _, err := auth.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, err = auth.Refresh(ctx, tok.RefreshToken)
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); !ok || re.ErrorCode != "invalid_grant" {
		t.Fatalf("a spent refresh token: %v, want an invalid_grant refusal", err)
	}
}

func TestToyConformance(t *testing.T) {
	t.Parallel()
	fake := func(s *testenv.Sandbox) *toyFake { return s.Fake(toyName).(*toyFake) }
	conformance.Run(t, toyName, conformance.Vendor{
		Mutate: func(s *testenv.Sandbox, account string) error {
			if _, err := fake(s).CreateContact(account); err != nil {
				return err
			}
			return fake(s).UpdateContact(account, fake(s).ContactIDs(account)[0])
		},
		Delete: func(s *testenv.Sandbox, account string) error {
			return fake(s).DeleteContact(account, fake(s).ContactIDs(account)[1])
		},
		// Small pages, so that a backfill crosses several page boundaries.
		Configure: func(o config.Options) { o.(*toyOptions).PageSize = 10 },
	})
}
