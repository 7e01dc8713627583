package leadconnector

import (
	"cmp"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LeadConnector,
		Title:       "LeadConnector (HighLevel)",
		Concurrency: 4,
		Options:     func() config.Options { return new(Options) },
		Open:        open,
		Fake:        fake,
	})
}

// Options are a LeadConnector connection's own keys in the configuration file.
type Options struct {
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
	c.OneOf("api_version", o.APIVersion, V3, V2021)
	if o.AppID == "" {
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

func open(c vendors.Conn) (vendors.Opened, error) {
	o := c.Config.Options.(*Options)
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
				{Key: "token", Secret: &vendors.Secret{File: "pit-" + loc, Value: tok}}})
		}
		return vendors.StaticConn{Auth: "private_integration", BaseURL: base,
			Keys: []vendors.Field{{Key: "locations", List: locs}}}, nil
	},
}
