// Package lacrmtest is an in-memory fake of the Less Annoying CRM API (API-CONTRACTS.md §3),
// in the style of net/http/httptest: New gives an http.Handler, NewServer starts it on
// loopback. One root serves every vendor path:
//
//	GET  /oauth/authorize.php   response_type=code, client_id, state, redirect_url (not redirect_uri);
//	                            auto-approves the sandbox user (a non-standard sandbox_user=NAME
//	                            parameter picks another configured user)
//	POST /oauth/token.php       Basic client_id:secret, JSON {"grant_type":"authorization_code",...}
//	                            or {"grant_type":"refresh_token","refresh_token":...}
//	POST /v2/                   Authorization: Bearer <token>, or a raw API key (no Bearer), JSON
//	                            {"Function":..., "Parameters":{...}}: GetContacts, GetPipelines
//	                            (statuses nested), GetPipelineItems, GetCustomFields, GetUser
//
// Vendor quirks reproduced: refresh tokens are single-use and live 30 days, and a second use
// revokes the whole grant (every token of that authorization) with 400 invalid_grant; every
// API error, bad credentials included, is HTTP 400 {"ErrorCode","ErrorDescription"}; 120
// requests per minute per grant, then 429 with Retry-After in seconds. Custom-field values
// are extra keys of contacts and items, named after the field (§5.2); GetCustomFields lists
// the definitions: the contacts' (Lead Source, Budget), the companies' (Industry), and each
// pipeline's (Estimated Value, and Next Step in the second pipeline). API keys (IssueAPIKey,
// or Options.APIKeys) are sent as "Authorization: <key>"; "Bearer <key>" is no valid token,
// and an unknown or disabled key answers 400 "Invalid credentials" like an expired token.
//
// Admin API (JSON), never subject to faults:
//
//	GET    /_admin/counters              simkit.Snapshot; DELETE resets
//	GET    /_admin/faults                simkit.FaultSettings; PUT replaces
//	GET    /_admin/truth                 []simkit.AccountTruth
//	GET    /_admin/accounts              []User (with account ids)
//	PUT    /_admin/ttl                   {"ttl":"90s"}: lifetime of access tokens issued from now on
//	PUT    /_admin/ratelimit             {"limit":120,"interval":"1m0s"}
//	POST   /_admin/authorize             {"user":"..."} → {"access_token","refresh_token","grant",...}
//	POST   /_admin/grants/{id}/revoke
//	POST   /_admin/api_keys              optional {"user":"..."} (default the sandbox user) →
//	                                     {"api_key":"lacrmtest-key-..."}
//	POST   /_admin/api_keys/revoke       {"api_key":"..."} → 204: the key stops working now
//	POST   /_admin/contacts              {"account_id":"..."} → {"id":"..."}
//	POST   /_admin/contacts/{id}/touch   update (bumps LastUpdate)
//	DELETE /_admin/contacts/{id}
//	POST   /_admin/pipeline_items        {"account_id","pipeline_id","contact_id"} → {"id"}
//	POST   /_admin/pipeline_items/{id}/touch  moves the item to its next status
//	DELETE /_admin/pipeline_items/{id}
//	DELETE /_admin/custom_fields/{id}    the definition and its values (LastUpdate stays)
package lacrmtest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Real-world defaults.
const (
	DefaultClientID     = "lacrm-sandbox-client"
	DefaultClientSecret = "lacrm-sandbox-secret"
	DefaultSandboxUser  = "sandbox.user@lacrm.test"
	DefaultTokenTTL     = time.Hour
	DefaultRefreshTTL   = 30 * 24 * time.Hour
	codeTTL             = 10 * time.Minute
)

// DefaultRateLimit is the sandbox's per-grant limit [ours]: 120 requests per minute.
var DefaultRateLimit = simkit.Window{Limit: 120, Interval: time.Minute}

// DefaultRedirectURIs are accepted when Options.RedirectURIs is empty (any port, loopback rule).
var DefaultRedirectURIs = []string{"http://127.0.0.1/callback", "http://localhost/callback"}

// User is one LACRM user and the account (company) it belongs to: one account per grant.
type User struct {
	Name      string `json:"name"`       // login, the grant subject
	AccountID string `json:"account_id"` // "" → a 31-digit id drawn from the seed
	Company   string `json:"company"`    // "" → a drawn company name
}

// Options configure the fake. Zero values mean the vendor's real behaviour.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock  // nil → simkit.RealClock{}
	TokenTTL time.Duration // 0 → 1 h
	// RefreshTTL is how long a refresh token stays usable; 0 → 30 days.
	RefreshTTL   time.Duration
	Faults       simkit.FaultSettings
	ClientID     string   // "" → DefaultClientID
	ClientSecret string   // "" → DefaultClientSecret
	RedirectURIs []string // nil → DefaultRedirectURIs
	SandboxUser  string   // "" → DefaultSandboxUser
	// Users are the users (and so accounts) the fake knows; SandboxUser is added when missing.
	Users []User
	// APIKeys maps raw API keys (sent without "Bearer") to user names.
	APIKeys map[string]string
	// Contacts and PipelineItems per account (0 → 120 and 60; negative → none). Each account
	// also holds Contacts/10 company records, which are not leads.
	Contacts, PipelineItems int
	// RateLimit per grant; zero → DefaultRateLimit; Limit < 0 disables it.
	RateLimit simkit.Window
	// DataEnd is the newest generated LastUpdate; zero → the clock's time at New.
	DataEnd time.Time
}

// Fake is the in-memory LACRM. Safe for concurrent use.
type Fake struct {
	opts     Options
	clock    simkit.Clock
	counters *simkit.Counters
	faults   *simkit.Faults
	tokens   *simkit.Registry
	codes    *simkit.AuthCodes
	limiter  *simkit.Limiter
	handler  http.Handler

	refreshMu sync.Mutex // serializes refreshes (reuse detection)
	mu        sync.Mutex
	accounts  map[string]*account // by account id
	users     map[string]User     // by name
	refreshAt map[string]time.Time
	apiKeys   map[string]*apiKey // by key
	rnd       *rand.Rand         // for ids of created records
}

// New builds a fake (not listening).
func New(opts Options) *Fake {
	if opts.Clock == nil {
		opts.Clock = simkit.RealClock{}
	}
	opts.TokenTTL = cmpOr(opts.TokenTTL, DefaultTokenTTL)
	opts.RefreshTTL = cmpOr(opts.RefreshTTL, DefaultRefreshTTL)
	opts.ClientID = cmpOr(opts.ClientID, DefaultClientID)
	opts.ClientSecret = cmpOr(opts.ClientSecret, DefaultClientSecret)
	opts.SandboxUser = cmpOr(opts.SandboxUser, DefaultSandboxUser)
	if opts.RedirectURIs == nil {
		opts.RedirectURIs = DefaultRedirectURIs
	}
	if opts.RateLimit == (simkit.Window{}) {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.Contacts == 0 {
		opts.Contacts = 120
	}
	if opts.PipelineItems == 0 {
		opts.PipelineItems = 60
	}
	if opts.DataEnd.IsZero() {
		opts.DataEnd = opts.Clock.Now()
	}
	opts.DataEnd = opts.DataEnd.Truncate(time.Second)
	if !slices.ContainsFunc(opts.Users, func(u User) bool { return u.Name == opts.SandboxUser }) {
		opts.Users = append([]User{{Name: opts.SandboxUser}}, opts.Users...)
	}

	f := &Fake{
		opts:      opts,
		clock:     opts.Clock,
		counters:  simkit.NewCounters(),
		faults:    simkit.NewFaults(opts.Seed, opts.Faults),
		tokens:    simkit.NewRegistry(opts.Clock, "lacrm", opts.TokenTTL),
		codes:     simkit.NewAuthCodes(opts.Clock),
		limiter:   simkit.NewLimiter(opts.Clock, opts.RateLimit),
		accounts:  map[string]*account{},
		users:     map[string]User{},
		refreshAt: map[string]time.Time{},
		apiKeys:   map[string]*apiKey{},
		rnd:       simkit.RandFor(opts.Seed, "lacrm/mutations"),
	}
	for _, u := range opts.Users {
		r := simkit.RandFor(opts.Seed, "lacrm/user/"+u.Name)
		if u.AccountID == "" {
			u.AccountID = newID(r)
		}
		if u.Company == "" {
			u.Company = simkit.CompanyName(r)
		}
		f.users[u.Name] = u
		if f.accounts[u.AccountID] == nil {
			f.accounts[u.AccountID] = generateAccount(opts, u)
		}
	}
	for key, user := range opts.APIKeys {
		f.apiKeys[key] = &apiKey{user: user}
	}
	f.handler = f.routes()
	return f
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Server is a Fake listening on 127.0.0.1.
type Server struct {
	*Fake
	*simkit.Listener
}

// NewServer starts a fake on a loopback port.
func NewServer(opts Options) *Server {
	f := New(opts)
	return &Server{Fake: f, Listener: simkit.Serve(f.Handler())}
}

// Handler serves the vendor paths and /_admin/.
func (f *Fake) Handler() http.Handler { return f.handler }

// Counters are the fake's request and event counters.
func (f *Fake) Counters() *simkit.Counters { return f.counters }

// Faults are the injected faults, changeable at run time.
func (f *Fake) Faults() *simkit.Faults { return f.faults }

// Tokens is the token registry (tests change the TTL with SetTTL).
func (f *Fake) Tokens() *simkit.Registry { return f.tokens }

// Limiter is the per-grant rate limiter (tests change the window with Set).
func (f *Fake) Limiter() *simkit.Limiter { return f.limiter }

// ClientID and ClientSecret are the registered app's credentials.
func (f *Fake) ClientID() string     { return f.opts.ClientID }
func (f *Fake) ClientSecret() string { return f.opts.ClientSecret }

// SandboxUser is the user the authorization page approves.
func (f *Fake) SandboxUser() string { return f.opts.SandboxUser }

// Users lists the configured users with their account ids and company names.
func (f *Fake) Users() []User {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]User, 0, len(f.users))
	for _, u := range f.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AccountOf returns the account id of a user ("" when unknown).
func (f *Fake) AccountOf(user string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.users[user].AccountID
}

// Authorize is a test shortcut for the code flow: a fresh grant for user ("" → the sandbox
// user). It panics on an unknown user, a programming error in the test.
func (f *Fake) Authorize(user string) simkit.Pair {
	if user == "" {
		user = f.opts.SandboxUser
	}
	p, ok := f.newGrant(user)
	if !ok {
		panic(fmt.Sprintf("lacrmtest: Authorize: unknown user %q", user))
	}
	return p
}

func (f *Fake) newGrant(user string) (simkit.Pair, bool) {
	f.mu.Lock()
	u, ok := f.users[user]
	f.mu.Unlock()
	if !ok {
		return simkit.Pair{}, false
	}
	_, p := f.tokens.NewGrant(u.Name, map[string]string{"account_id": u.AccountID})
	f.noteRefresh(p)
	f.counters.Inc(simkit.CountTokenGrants)
	return p, true
}

// noteRefresh records when a refresh token was issued, for its 30-day lifetime.
func (f *Fake) noteRefresh(p simkit.Pair) {
	if p.Refresh == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshAt[p.Refresh] = f.clock.Now()
}

// RevokeGrant revokes a grant and all its tokens.
func (f *Fake) RevokeGrant(grant string) {
	f.tokens.RevokeGrant(grant)
	f.counters.Inc(simkit.CountRevokedGrants)
}
