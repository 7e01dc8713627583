// Package lctest is an in-memory fake of the LeadConnector (HighLevel) API, for tests,
// benchmarks and crmsim: what API-CONTRACTS.md §1 says the real service does, stateful and
// deterministic from a seed.
//
// Vendor paths (under the fake's root):
//
//	GET  /oauth/chooselocation            authorization page (auto-approves; also /v2/oauth/chooselocation)
//	POST /oauth/token                     code and refresh grants; Version: v3 → camelCase (form or JSON),
//	                                      otherwise 2021-07-28 snake_case form
//	POST /oauth/locationToken             2021-07-28 location token   (v3: 400 "not available")
//	POST /oauth/location-token            v3 location token           (2021: 404)
//	GET  /oauth/installedLocations        2021-07-28, skip/limit      (v3: 400 "not available")
//	GET  /oauth/installed-locations       v3, pageSize/pageToken       (2021: 404)
//	POST /contacts/search                 searchAfter paging, dateUpdated/dateAdded range filters
//
// Resource calls take a grant's or a minted location token, or a location's Private
// Integration Token (Bearer pit-…, see PITPrefix): a PIT acts as a location token of its own
// location (same rate-limit bucket; 403 for another location; 401 on the agency-only oauth
// calls); revoked, expired and unknown ones answer 401 "Invalid JWT".
//
// Admin API (JSON, never subject to faults or limits):
//
//	GET    /_admin/counters               simkit.Snapshot; DELETE resets
//	GET    /_admin/faults                 simkit.FaultSettings; PUT replaces
//	GET    /_admin/truth                  []simkit.AccountTruth
//	GET    /_admin/grants                 []simkit.GrantInfo
//	POST   /_admin/grants/{id}/revoke     revoke a grant and its tokens
//	GET    /_admin/pits                   []PIT: the Private Integration Tokens that work now
//	POST   /_admin/pits                   {"location_id":"..."} → 201 {"token":"pit-..."}
//	POST   /_admin/pits/revoke            {"token":"pit-..."} → 204: it stops working now
//	POST   /_admin/pits/rotate            {"token":"pit-...","expire":"now"|"later"} → {"token",
//	                                      "old_token_expires_at"}: a new PIT of the same location;
//	                                      "later" keeps the old one working for 7 days (PITOverlap)
//	PUT    /_admin/ttl                    {"ttl":"90s"}: lifetime of tokens issued from now on
//	PUT    /_admin/limits                 {"max":100,"interval_ms":10000,"daily":200000}
//	PUT    /_admin/inactive               {"inactive":true}: refreshes answer 400 "Location is not active"
//	PUT    /_admin/index-lag              {"lag":"5s"}: search shows writes this much later
//	PUT    /_admin/locations/{loc}/forbidden   {"forbidden":true}: contact search answers 403
//	POST   /_admin/locations/{loc}/contacts    create a contact → {"id":...}
//	PATCH  /_admin/locations/{loc}/contacts/{id}  update a contact (bumps dateUpdated)
//	DELETE /_admin/locations/{loc}/contacts/{id}  delete a contact
package lctest

import (
	"cmp"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Real values of the vendor, used as defaults.
const (
	DefaultTokenTTL     = 86399 * time.Second
	DefaultBurst        = 100
	DefaultInterval     = 10 * time.Second
	DefaultDaily        = 200000
	DefaultClientID     = "leadconnector-sandbox-client"
	DefaultClientSecret = "leadconnector-sandbox-secret"
	DefaultSandboxUser  = "agency-admin@sandbox.example.com"
	// DefaultScopes are what the sandbox app is configured with.
	DefaultScopes = "contacts.readonly oauth.readonly oauth.write locations.readonly opportunities.readonly"
	// GraceWindow is how long a used refresh token still returns the pair it produced.
	GraceWindow = 30 * time.Second
)

// Versions of the API, as sent in the Version header.
const (
	V2021 = "2021-07-28"
	V3    = "v3"
)

// Options configure a fake. Zero values mean the defaults.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock  // nil → simkit.RealClock{}
	TokenTTL time.Duration // 0 → 86399 s
	Faults   simkit.FaultSettings

	ClientID, ClientSecret string
	// RedirectURIs are the registered redirect URIs (loopback ones match on any port).
	// Default: http://127.0.0.1/callback and http://localhost/callback.
	RedirectURIs []string
	SandboxUser  string // the agency admin the authorization page approves as
	Scopes       string // the app's scopes; default DefaultScopes

	// CompanyID and AppID default to ids derived from Seed.
	CompanyID, AppID string
	// Locations is how many locations have the app installed (default 3).
	Locations int
	// ContactsPerLocation is how many contacts each location starts with (default 250).
	ContactsPerLocation int
	// ForbiddenLocations: the last N locations answer 403 on contact search.
	ForbiddenLocations int
	// DataEnd is when the seeded history ends: contacts are added and updated during the
	// two years before it. Default: the start of the clock's current UTC day.
	DataEnd time.Time

	// IndexLag delays what search sees of writes (the vendor's is a few seconds; default 0).
	IndexLag time.Duration
	// LocationToken201 answers location-token requests with 201 Created, as some deployments do.
	LocationToken201 bool

	// Real limits, changeable by tests: Burst requests per Interval and Daily per resource.
	Burst    int
	Interval time.Duration
	Daily    int
}

// Fake is the LeadConnector fake. Safe for concurrent use.
type Fake struct {
	opts     Options
	clock    simkit.Clock
	tokens   *simkit.Registry
	codes    *simkit.AuthCodes
	counters *simkit.Counters
	faults   *simkit.Faults
	handler  http.Handler

	limits *limiter

	mu         sync.Mutex
	companyID  string
	appID      string
	userID     string
	locs       []*location
	byID       map[string]*location
	codeScopes map[string]string
	pits       map[string]*pit // by token
	inactive   bool
	lag        time.Duration
	rng        *rand.Rand
}

// New builds a fake (not listening). Serve Handler().
func New(opts Options) *Fake {
	opts.Clock = cmp.Or[simkit.Clock](opts.Clock, simkit.RealClock{})
	opts.TokenTTL = cmp.Or(opts.TokenTTL, DefaultTokenTTL)
	opts.ClientID = cmp.Or(opts.ClientID, DefaultClientID)
	opts.ClientSecret = cmp.Or(opts.ClientSecret, DefaultClientSecret)
	opts.SandboxUser = cmp.Or(opts.SandboxUser, DefaultSandboxUser)
	opts.Scopes = cmp.Or(opts.Scopes, DefaultScopes)
	if len(opts.RedirectURIs) == 0 {
		opts.RedirectURIs = []string{"http://127.0.0.1/callback", "http://localhost/callback"}
	}
	opts.Locations = cmp.Or(opts.Locations, 3)
	opts.ContactsPerLocation = cmp.Or(opts.ContactsPerLocation, 250)
	opts.Burst = cmp.Or(opts.Burst, DefaultBurst)
	opts.Interval = cmp.Or(opts.Interval, DefaultInterval)
	opts.Daily = cmp.Or(opts.Daily, DefaultDaily)
	if opts.DataEnd.IsZero() {
		opts.DataEnd = opts.Clock.Now().UTC().Truncate(24 * time.Hour)
	}
	f := &Fake{
		opts:       opts,
		clock:      opts.Clock,
		tokens:     simkit.NewRegistry(opts.Clock, "lc", opts.TokenTTL),
		codes:      simkit.NewAuthCodes(opts.Clock),
		counters:   simkit.NewCounters(),
		faults:     simkit.NewFaults(opts.Seed, opts.Faults),
		limits:     newLimiter(opts.Clock, opts.Burst, opts.Interval, opts.Daily),
		codeScopes: map[string]string{},
		pits:       map[string]*pit{},
		lag:        opts.IndexLag,
		rng:        simkit.RandFor(opts.Seed, "lc/mutations"),
	}
	f.seed()
	f.handler = f.routes()
	return f
}

// Server is a fake listening on loopback, like httptest.Server.
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

// Options returns the effective options (defaults filled in).
func (f *Fake) Options() Options { return f.opts }

// CompanyID is the agency's company id.
func (f *Fake) CompanyID() string { return f.companyID }

// AppID is the marketplace app's id.
func (f *Fake) AppID() string { return f.appID }

// LocationIDs lists the installed locations in listing order.
func (f *Fake) LocationIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.locs))
	for i, l := range f.locs {
		out[i] = l.ID
	}
	return out
}

// SetLimits changes the per-resource limits at run time.
func (f *Fake) SetLimits(burst int, interval time.Duration, daily int) {
	f.limits.set(burst, interval, daily)
}

// SetInactive makes every refresh answer 400 "Location is not active" (the refresh token is
// kept) until cleared.
func (f *Fake) SetInactive(inactive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inactive = inactive
}

// SetIndexLag changes how late search sees writes.
func (f *Fake) SetIndexLag(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lag = d
}

// RevokeGrant revokes an authorization and every token issued under it.
func (f *Fake) RevokeGrant(grantID string) {
	f.tokens.RevokeGrant(grantID)
	f.counters.Inc(simkit.CountRevokedGrants)
}

// Authorize is a test shortcut for the code flow: a fresh Company grant for subject (""
// means the sandbox user), with the app's scopes.
func (f *Fake) Authorize(subject string) simkit.Pair {
	subject = cmp.Or(subject, f.opts.SandboxUser)
	_, p := f.tokens.NewGrant(subject, f.companyMeta(f.opts.Scopes))
	f.counters.Inc(simkit.CountTokenGrants)
	return p
}

func (f *Fake) companyMeta(scope string) map[string]string {
	return map[string]string{"userType": "Company", "companyId": f.companyID, "userId": f.userID, "scope": scope}
}

// redirectAllowed applies exact match, or the loopback rule (RFC 8252: any port).
func (f *Fake) redirectAllowed(uri string) bool {
	for _, r := range f.opts.RedirectURIs {
		if uri == r || (isLoopback(uri) && stripPort(uri) == stripPort(r)) {
			return true
		}
	}
	return false
}

func isLoopback(uri string) bool {
	h := hostOf(uri)
	return h == "127.0.0.1" || h == "localhost" || h == "::1"
}

func hostOf(uri string) string {
	rest, ok := strings.CutPrefix(uri, "http://")
	if !ok {
		return ""
	}
	hostport, _, _ := strings.Cut(rest, "/")
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func stripPort(uri string) string {
	rest, ok := strings.CutPrefix(uri, "http://")
	if !ok {
		return uri
	}
	hostport, path, _ := strings.Cut(rest, "/")
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	return "http://" + strings.Trim(h, "[]") + "/" + path
}
