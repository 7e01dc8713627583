// Package liqtest is an in-memory fake of the LocaliQ API, in the spirit of net/http/httptest:
// OAuth (authorization code, password and rotating single-use refresh tokens), the identities
// listing, contact interactions paged by creation-date window, the PII-free lead_detail and
// campaigns_overview reports, HIPAA 403s, and the 20 requests/second limit. Data is deterministic from Options.Seed.
//
// Vendor paths (mountable under a prefix with http.StripPrefix):
//
//	GET  /oauth/authorize                       auto-approves Options.SandboxUser
//	POST /oauth/token                           JSON body: authorization_code, password, refresh_token
//	GET  /identities/v3?user=&page=&page_size=
//	GET  /crm/contact_interactions?global_master_advertiser_id=&created_after_date=&created_before_date=&page=&event_type=
//	GET  /crm/contact_interactions/{id}
//	GET  /client_reports/lead_detail/{gmaid}?start_date=&end_date=
//	GET  /client_reports/campaigns_overview/{gmaid}  campaign spend per cycle (campaigns.go)
//
// Admin API (JSON, never faulted or rate limited):
//
//	GET    /_admin/counters                  DELETE resets
//	GET    /_admin/faults                    PUT replaces (simkit.FaultSettings)
//	GET    /_admin/truth                     []simkit.AccountTruth
//	PUT    /_admin/ttl                       {"ttl":"90s"} or {"ttl_seconds":90}
//	PUT    /_admin/rate_limit                {"per_second":20} (<0 disables)
//	GET    /_admin/advertisers               []Advertiser
//	PUT    /_admin/advertisers/{gmaid}       {"active_state":0,"hipaa_protected":true} (fields optional)
//	PUT    /_admin/users/{email}/role        {"agency_customer":true}: on every advertiser (false: on none)
//	PUT    /_admin/users/{email}/role/{gmaid} {"agency_customer":true}: on one advertiser (404 if unknown)
//	POST   /_admin/interactions              NewInteraction plus {"count":N} → {"ids":[...]}
//	PATCH  /_admin/interactions/{id}         {"status":"client"} (marks it read at the mutation time)
//	GET    /_admin/campaigns/{gmaid}         []Campaign (those the report leaves out included)
//	POST   /_admin/campaigns/{gmaid}/{campaign}/cycles  NewCycle → {"campaign_cycle":id}
//	PUT    /_admin/cycles/{gmaid}/{cycle}/spend         {"spend":512.5}
//	GET    /_admin/grants                    []simkit.GrantInfo
//	POST   /_admin/grants/{id}/revoke
//
// Choices where the vendor is silent ([ours]): a page past the end is a bare JSON array "[]";
// date windows are the advertiser's local dates (its report time_zone, fixed offsets);
// the token endpoint accepts JSON bodies only; the limit applies per OAuth client to the
// API endpoints (not to /oauth/*); seven in ten seeded interactions were read (read_at) by
// the time the fake starts and a fifth of those archived (archived_at, still listed, as the
// documented example lists one), while added interactions arrive unread; an edit sets
// read_at, and a lead's update time is the latest of created_at, read_at, archived_at and
// important_at.
//
// The Agency Customer role (privilege level 3, which HIPAA-protected data needs) is held per
// advertiser, as the identities answer reports privilege_level per authorized advertiser
// (../shared/vendor-docs/localiq/_identity.md.erb). By default the sandbox user holds it on
// one HIPAA advertiser, the first by gmaid, so a sandbox has HIPAA leads to sync and HIPAA
// advertisers that answer 403. [ours]: the users entry reports level 3 only when the role
// covers every advertiser.
package liqtest

import (
	"cmp"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Vendor defaults.
const (
	DefaultClientID        = "localiq-sandbox-client"
	DefaultClientSecret    = "localiq-sandbox-secret"
	DefaultSandboxUser     = "sandbox.user@agency.example"
	DefaultSandboxPassword = "localiq-sandbox-password"
	DefaultRedirectURI     = "http://127.0.0.1/callback"
	// DefaultTokenTTL is the vendor's access token lifetime (expires_in 7200).
	DefaultTokenTTL = 2 * time.Hour
	// DefaultRateLimit is the vendor's 20 requests/second per client.
	DefaultRateLimit = 20
	// DefaultPageSize is the interactions page size; the vendor does not document it.
	DefaultPageSize = 25
	// CodeTTL is how long an authorization code lives.
	CodeTTL = 10 * time.Minute
	// NonLeadChatEmail marks mock contacts of non-lead chats.
	NonLeadChatEmail = "nonleadchat@reachlocal.com"
)

// Options configure a Fake. Zero values mean the defaults.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock  // nil → simkit.RealClock{}
	TokenTTL time.Duration // 0 → 2 h
	Faults   simkit.FaultSettings

	ClientID, ClientSecret string
	// RedirectURIs are the registered redirect URIs; loopback URIs match ignoring the port.
	RedirectURIs []string
	// SandboxUser is the business user the authorization page approves and the password
	// grant accepts (with SandboxPassword).
	SandboxUser, SandboxPassword string
	// AgencyCustomer gives the sandbox user the Agency Customer role (privilege level 3) on
	// every advertiser from the start. Without it the user has the role on one HIPAA
	// advertiser (the first by gmaid) and the other HIPAA advertisers answer 403 on lead
	// endpoints.
	AgencyCustomer bool
	// RestrictAllHIPAA withholds that one default role: every HIPAA advertiser answers 403
	// until the role is granted.
	RestrictAllHIPAA bool

	Advertisers               int           // 0 → 6
	InteractionsPerAdvertiser int           // 0 → 120
	HIPAAShare                float64       // share of HIPAA-protected advertisers: 0 → 0.25, <0 → none
	InactiveShare             float64       // share of inactive (active_state 0) advertisers: 0 → 0.15, <0 → none
	History                   time.Duration // seeded interactions span [now-History, now): 0 → 2 years

	RateLimit int // requests per second per client: 0 → 20, <0 → unlimited
	PageSize  int // interactions per page: 0 → 25
}

// Fake is the LocaliQ API state. Safe for concurrent use.
type Fake struct {
	opts     Options
	clock    simkit.Clock
	counters *simkit.Counters
	faults   *simkit.Faults
	tokens   *simkit.Registry
	codes    *simkit.AuthCodes
	limiter  *simkit.Limiter

	mu          sync.RWMutex
	advertisers []*advertiser              // in listing order
	byGMAID     map[string]*advertiser     // gmaid → advertiser
	byID        map[int64]*interaction     // interaction id → interaction
	agencyRole  map[string]map[string]bool // user email → gmaids it has the Agency Customer role on
	nextID      int64                      // id of the next added interaction
	campaigns   campaignBook               // campaigns and their cycles (campaigns.go)
	handler     http.Handler
}

// New builds a fake; it does not listen. Serve fake.Handler() or use NewServer.
func New(opts Options) *Fake {
	opts.ClientID = cmp.Or(opts.ClientID, DefaultClientID)
	opts.ClientSecret = cmp.Or(opts.ClientSecret, DefaultClientSecret)
	opts.SandboxUser = cmp.Or(opts.SandboxUser, DefaultSandboxUser)
	opts.SandboxPassword = cmp.Or(opts.SandboxPassword, DefaultSandboxPassword)
	if len(opts.RedirectURIs) == 0 {
		opts.RedirectURIs = []string{DefaultRedirectURI}
	}
	opts.TokenTTL = cmp.Or(opts.TokenTTL, DefaultTokenTTL)
	opts.Advertisers = cmp.Or(opts.Advertisers, 6)
	opts.InteractionsPerAdvertiser = cmp.Or(opts.InteractionsPerAdvertiser, 120)
	opts.HIPAAShare = cmp.Or(opts.HIPAAShare, 0.25)
	opts.InactiveShare = cmp.Or(opts.InactiveShare, 0.15)
	opts.History = cmp.Or(opts.History, 730*24*time.Hour)
	opts.RateLimit = cmp.Or(opts.RateLimit, DefaultRateLimit)
	opts.PageSize = cmp.Or(opts.PageSize, DefaultPageSize)
	clock := opts.Clock
	if clock == nil {
		clock = simkit.RealClock{}
	}
	f := &Fake{
		opts:       opts,
		clock:      clock,
		counters:   simkit.NewCounters(),
		faults:     simkit.NewFaults(opts.Seed, opts.Faults),
		tokens:     simkit.NewRegistry(clock, "liq", opts.TokenTTL),
		codes:      simkit.NewAuthCodes(clock),
		limiter:    simkit.NewLimiter(clock, window(opts.RateLimit)),
		byGMAID:    map[string]*advertiser{},
		byID:       map[int64]*interaction{},
		agencyRole: map[string]map[string]bool{},
	}
	f.seed()
	f.seedCampaigns()
	f.grantDefaultRole()
	f.handler = f.routes()
	return f
}

func window(perSecond int) simkit.Window {
	if perSecond < 0 {
		return simkit.Window{}
	}
	return simkit.Window{Limit: perSecond, Interval: time.Second}
}

// Handler serves the vendor paths and /_admin/.
func (f *Fake) Handler() http.Handler { return f.handler }

// Counters are the request and event counters.
func (f *Fake) Counters() *simkit.Counters { return f.counters }

// Faults are the injected faults, changeable at run time.
func (f *Fake) Faults() *simkit.Faults { return f.faults }

// Tokens is the grant registry (tests change the TTL with SetTTL).
func (f *Fake) Tokens() *simkit.Registry { return f.tokens }

// Options returns the options after defaults were applied.
func (f *Fake) Options() Options { return f.opts }

// SetRateLimit changes the per-client limit (requests per second; <0 disables).
func (f *Fake) SetRateLimit(perSecond int) { f.limiter.Set(window(perSecond)) }

// Authorize is a test shortcut for the code flow: a fresh grant for subject (the sandbox
// user when empty) under the configured client.
func (f *Fake) Authorize(subject string) simkit.Pair {
	subject = cmp.Or(subject, f.opts.SandboxUser)
	_, p := f.tokens.NewGrant(strings.ToLower(subject), map[string]string{"client_id": f.opts.ClientID})
	f.counters.Inc(simkit.CountTokenGrants)
	return p
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
