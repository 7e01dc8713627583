package leadconnector

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
	"github.com/leadsync/leadsync/store"
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LeadConnector,
		Title:       "LeadConnector (HighLevel)",
		Concurrency: 4,
		Options:     func() config.Options { return new(Options) },
		Open:        open,
		Fake:        fake,
		Example: []vendors.Field{
			{Key: "client_id", Value: "<client id>", Help: "the client id of your HighLevel Marketplace app"},
			{Key: "client_secret", Secret: &vendors.Secret{File: "client-secret"}, Help: "the client secret of your HighLevel Marketplace app"},
			{Key: "app_id", Value: "<app id>", Help: "the Marketplace app id, to list the locations the app is installed in"},
		},
	})
}

// Auth modes of a connection (the `auth` key).
const (
	AuthOAuth = "oauth" // a Marketplace app's agency grant (the default)
	// AuthPrivateIntegration: one HighLevel Private Integration Token per location.
	AuthPrivateIntegration = "private_integration"
)

// pitPrefix starts every Private Integration Token; HighLevel refuses "Pit-" (401 Invalid JWT).
const pitPrefix = "pit-"

// PITLocation is one location of a private_integration connection and its token.
type PITLocation struct {
	LocationID string        `yaml:"location_id"`
	Name       string        `yaml:"name"`  // optional: the account name shown in status and the warehouse
	Token      config.Secret `yaml:"token"` // the location's Private Integration Token
}

// Options are a LeadConnector connection's own keys in the configuration file.
type Options struct {
	Auth       string          `yaml:"auth"`        // oauth (default) | private_integration
	Locations  []PITLocation   `yaml:"locations"`   // with auth private_integration: one token per location
	APIVersion string          `yaml:"api_version"` // v3 (default) | 2021-07-28
	CompanyID  string          `yaml:"company_id"`  // default: the companyId of the agency grant
	AppID      string          `yaml:"app_id"`      // required: the Marketplace app id
	Scopes     []string        `yaml:"scopes"`      // default DefaultScopes
	Lookback   config.Duration `yaml:"lookback"`    // re-read window of each incremental run
	PageSize   int             `yaml:"page_size"`   // contacts per request (1..100)
	MaxPages   int             `yaml:"max_pages"`   // page budget of one listing
}

// Defaults fills the zero values.
func (o *Options) Defaults() {
	o.Auth = cmp.Or(o.Auth, AuthOAuth)
	o.APIVersion = cmp.Or(o.APIVersion, V3)
	o.PageSize = cmp.Or(o.PageSize, DefaultPageSize)
	o.Lookback = cmp.Or(o.Lookback, config.Duration(DefaultLookback))
	o.MaxPages = cmp.Or(o.MaxPages, sources.DefaultMaxPages)
	if len(o.Scopes) == 0 {
		o.Scopes = append([]string(nil), DefaultScopes...)
	}
}

// Validate reports what is wrong.
func (o *Options) Validate(c *config.Checker) {
	c.OneOf("auth", o.Auth, AuthOAuth, AuthPrivateIntegration)
	c.OneOf("api_version", o.APIVersion, V3, V2021)
	switch {
	case o.StaticAuth():
		if len(o.Locations) == 0 {
			c.Fail("locations", "required with auth: %s: one {location_id, token} per location, each with that "+
				"location's Private Integration Token (an agency token cannot list installed locations: "+
				"highlevel-api-docs#226)", AuthPrivateIntegration)
		}
		seen := map[string]int{}
		for j, l := range o.Locations {
			key := fmt.Sprintf("locations[%d]", j)
			switch first, dup := seen[l.LocationID]; {
			case l.LocationID == "":
				c.Fail(key+".location_id", "required: the location (sub-account) id the token belongs to")
			case dup:
				c.Fail(key+".location_id", "duplicate location %q (also locations[%d])", l.LocationID, first)
			default:
				seen[l.LocationID] = j
			}
			c.Secret(key+".token", l.Token, true)
		}
	case len(o.Locations) > 0:
		c.Fail("locations", "only with auth: %s (an OAuth connection syncs every location the app is installed on)",
			AuthPrivateIntegration)
	case o.AppID == "":
		c.Fail("app_id", "required for leadconnector: the Marketplace app id (listing installed locations needs it)")
	}
	c.Count("page_size", o.PageSize, MaxPageSize)
	c.Within("lookback", o.Lookback, 30*24*time.Hour)
	c.Count("max_pages", o.MaxPages, sources.MaxPagesLimit)
	for j, s := range o.Scopes {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t") {
			c.Fail(fmt.Sprintf("scopes[%d]", j), "%q is not a scope (one scope per list item)", s)
		}
	}
}

// StaticAuth implements config.StaticAuthOptions: Private Integration Tokens need no OAuth
// app.
func (o *Options) StaticAuth() bool { return o.Auth == AuthPrivateIntegration }

// CheckSecret implements config.SecretChecker: a Private Integration Token starts with a
// lowercase "pit-".
func (o *Options) CheckSecret(key, value string) string {
	if strings.HasSuffix(key, ".token") && !strings.HasPrefix(value, pitPrefix) {
		return "not a Private Integration Token: it must start with a lowercase \"pit-\" (HighLevel " +
			"refuses any other with 401 Invalid JWT); copy it again from Settings → Private Integrations"
	}
	return ""
}

// pitTokens hands out each location's Private Integration Token; there is no grant.
type pitTokens map[string]sources.Credentials

func (pitTokens) Grant() sources.Credentials { return noGrant{} }

func (p pitTokens) Account(id string, _ sources.Minter) sources.Credentials {
	if c, ok := p[id]; ok {
		return c
	}
	return noGrant{}
}

// noGrant is the grant of a private_integration connection: there is none to use.
type noGrant struct{}

func (noGrant) Token(context.Context) (*oauth2.Token, error) {
	return nil, errors.New("leadconnector: a private_integration connection has no agency grant (" +
		"an agency Private Integration Token cannot list installed locations: highlevel-api-docs#226)")
}
func (noGrant) Invalidate(*oauth2.Token) {}

func open(c vendors.Conn) (vendors.Opened, error) {
	o := c.Config.Options.(*Options)
	if o.StaticAuth() {
		return openPIT(c, o)
	}
	vc := Config{BaseURL: c.Config.BaseURL, AuthURL: c.Config.AuthURL, TokenURL: c.Config.TokenURL,
		ClientID: c.Config.ClientID, ClientSecret: c.ClientSecret, APIVersion: o.APIVersion,
		CompanyID: o.CompanyID, AppID: o.AppID, BackfillStart: c.Config.BackfillStart.Time,
		Lookback: o.Lookback.D(), PageSize: o.PageSize, MaxPages: o.MaxPages, Scopes: o.Scopes,
		Logger: c.Logger}
	r := vc.Refresher()
	src, err := New(vc, c.Tokens(r), WithHTTPX(c.HTTPX))
	if err != nil {
		return vendors.Opened{}, err
	}
	return vendors.Opened{Source: src, Auth: vc, Refresher: r}, nil
}

// openPIT wires a connection of Private Integration Tokens: the configured locations, each
// read with its own token, re-read from its secret on every use.
func openPIT(c vendors.Conn, o *Options) (vendors.Opened, error) {
	vc := Config{BaseURL: c.Config.BaseURL, APIVersion: o.APIVersion, BackfillStart: c.Config.BackfillStart.Time,
		Lookback: o.Lookback.D(), PageSize: o.PageSize, MaxPages: o.MaxPages, Logger: c.Logger}
	toks := pitTokens{}
	for _, l := range o.Locations {
		vc.Locations = append(vc.Locations, Location{ID: l.LocationID, Name: l.Name})
		toks[l.LocationID] = c.Static(store.StaticToken{Conn: c.Config.Name, Credential: l.LocationID,
			Secret: l.Token.Resolve, Where: l.Token.String(),
			Fix: fmt.Sprintf("rotate the Private Integration token of location %s in HighLevel (Settings → Private Integrations)", l.LocationID)})
	}
	src, err := New(vc, toks, WithHTTPX(c.HTTPX))
	if err != nil {
		return vendors.Opened{}, err
	}
	return vendors.Opened{Source: src, Static: true}, nil
}

var fake = &vendors.FakeSpec{
	Prefix: "/leadconnector",
	Flags: func(fs *flag.FlagSet) func() any {
		locations := fs.Int("locations", 5, "LeadConnector: installed locations")
		contacts := fs.Int("contacts", 200, "LeadConnector: contacts per location")
		forbidden := fs.Int("forbidden-locations", 0, "LeadConnector: locations whose contacts answer 403")
		burst := fs.Int("lc-burst", 0, "LeadConnector: requests per interval per resource (0: the vendor's 100)")
		interval := fs.Duration("lc-interval", 0, "LeadConnector: the rate-limit interval (0: the vendor's 10s)")
		daily := fs.Int("lc-daily", 0, "LeadConnector: requests per day per resource (0: the vendor's 200000)")
		return func() any {
			return lctest.Options{Locations: *locations, ContactsPerLocation: *contacts, ForbiddenLocations: *forbidden,
				Burst: *burst, Interval: *interval, Daily: *daily}
		}
	},
	Demo: func() any {
		return lctest.Options{Locations: 5, ContactsPerLocation: 400, ForbiddenLocations: 1}
	},
	New: func(c vendors.FakeCommon, opts any) vendors.Fake {
		o, _ := opts.(lctest.Options)
		c.Apply(&o.Seed, &o.Clock, &o.TokenTTL, &o.Faults)
		return lctest.New(o)
	},
	Sandbox: func(f vendors.Fake, base string) vendors.SandboxConn {
		return vendors.SandboxConn{ClientID: lctest.DefaultClientID, ClientSecret: lctest.DefaultClientSecret,
			BaseURL: base, AuthURL: base + "/oauth/chooselocation",
			Options: []vendors.KeyValue{{Key: "app_id", Value: f.(*lctest.Fake).AppID()}}}
	},
	// One Private Integration Token per installed location: a PIT is a sub-account's own.
	Static: func(f vendors.Fake, base string) (vendors.StaticConn, error) {
		lc := f.(*lctest.Fake)
		locs := [][]vendors.Field{}
		for _, loc := range lc.LocationIDs() {
			tok, err := lc.IssuePIT(loc)
			if err != nil {
				return vendors.StaticConn{}, err
			}
			locs = append(locs, []vendors.Field{{Key: "location_id", Value: loc},
				{Key: "token", Secret: &vendors.Secret{File: "location-" + loc + ".token", Value: tok}}})
		}
		return vendors.StaticConn{Auth: "private_integration", BaseURL: base,
			Keys: []vendors.Field{{Key: "locations", List: locs}}}, nil
	},
}
