package lacrm

import (
	"cmp"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
	"github.com/leadsync/leadsync/store"
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LACRM,
		Title:       "Less Annoying CRM",
		Concurrency: 1, // one account per grant
		Options:     func() config.Options { return new(Options) },
		Open:        open,
		Fake:        fake,
		Example: []vendors.Field{
			{Key: "client_id", Value: "<client id>", Help: "the client id of your Less Annoying CRM OAuth app"},
			{Key: "client_secret", Secret: &vendors.Secret{File: "client-secret"}, Help: "the client secret of your Less Annoying CRM OAuth app"},
		},
	})
}

// Auth modes of a connection (the `auth` key).
const (
	AuthOAuth  = "oauth"   // a partner app's grant (the default)
	AuthAPIKey = "api_key" // a user's API key (Settings → API)
)

// Options are a Less Annoying CRM connection's own keys in the configuration file.
type Options struct {
	Auth      string          `yaml:"auth"`      // oauth (default) | api_key
	APIKey    config.Secret   `yaml:"api_key"`   // with auth api_key
	Lookback  config.Duration `yaml:"lookback"`  // re-read window of each incremental run
	PageSize  int             `yaml:"page_size"` // records per request (1..10,000)
	MaxPages  int             `yaml:"max_pages"` // page budget of one stream's pass
	Pipelines []string        `yaml:"pipelines"` // pipeline ids or names; empty: all pipelines
}

// Defaults fills the zero values.
func (o *Options) Defaults() {
	o.Auth = cmp.Or(o.Auth, AuthOAuth)
	o.Lookback = cmp.Or(o.Lookback, config.Duration(DefaultLookback))
	o.PageSize = cmp.Or(o.PageSize, DefaultPageSize)
	o.MaxPages = cmp.Or(o.MaxPages, sources.DefaultMaxPages)
}

// Validate reports what is wrong.
func (o *Options) Validate(c *config.Checker) {
	c.OneOf("auth", o.Auth, AuthOAuth, AuthAPIKey)
	switch {
	case o.StaticAuth():
		c.Secret("api_key", o.APIKey, true)
	case !o.APIKey.IsZero():
		c.Fail("api_key", "only with auth: %s", AuthAPIKey)
	}
	c.Count("page_size", o.PageSize, MaxPageSize)
	c.Within("lookback", o.Lookback, 30*24*time.Hour)
	c.Count("max_pages", o.MaxPages, sources.MaxPagesLimit)
	for j, s := range o.Pipelines {
		if strings.TrimSpace(s) == "" {
			c.Fail(fmt.Sprintf("pipelines[%d]", j), "empty pipeline")
		}
	}
}

// StaticAuth implements config.StaticAuthOptions: an API key needs no OAuth app.
func (o *Options) StaticAuth() bool { return o.Auth == AuthAPIKey }

// apiKeyTokens hands out the API key as the connection's grant.
type apiKeyTokens struct{ key sources.Credentials }

func (t apiKeyTokens) Grant() sources.Credentials                         { return t.key }
func (t apiKeyTokens) Account(string, sources.Minter) sources.Credentials { return t.key }

func open(c vendors.Conn) (vendors.Opened, error) {
	o := c.Config.Options.(*Options)
	vc := Config{BaseURL: c.Config.BaseURL, AuthURL: c.Config.AuthURL, TokenURL: c.Config.TokenURL,
		ClientID: c.Config.ClientID, ClientSecret: c.ClientSecret, Since: c.Config.BackfillStart.Time,
		Lookback: o.Lookback.D(), PageSize: o.PageSize, MaxPages: o.MaxPages, PipelineIDs: o.Pipelines,
		Logger: c.Logger}
	if o.StaticAuth() {
		vc.APIKey = true
		key := c.Static(store.StaticToken{Conn: c.Config.Name, Secret: o.APIKey.Resolve, Where: o.APIKey.String(),
			Fix: "make a new API key in Less Annoying CRM (Settings → API)"})
		src, err := New(vc, apiKeyTokens{key}, WithHTTPX(c.HTTPX))
		if err != nil {
			return vendors.Opened{}, err
		}
		return vendors.Opened{Source: src, Static: true}, nil
	}
	r := vc.Refresher()
	src, err := New(vc, c.Tokens(r), WithHTTPX(c.HTTPX))
	if err != nil {
		return vendors.Opened{}, err
	}
	return vendors.Opened{Source: src, Auth: vc, Refresher: r}, nil
}

var fake = &vendors.FakeSpec{
	Prefix: "/lacrm",
	Flags: func(fs *flag.FlagSet) func() any {
		contacts := fs.Int("lacrm-contacts", 120, "LACRM: contacts")
		items := fs.Int("lacrm-pipeline-items", 60, "LACRM: pipeline items")
		return func() any { return lacrmtest.Options{Contacts: *contacts, PipelineItems: *items} }
	},
	Demo: func() any { return lacrmtest.Options{Contacts: 200, PipelineItems: 80} },
	New: func(c vendors.FakeCommon, opts any) vendors.Fake {
		o, _ := opts.(lacrmtest.Options)
		c.Apply(&o.Seed, &o.Clock, &o.TokenTTL, &o.Faults)
		return lacrmtest.New(o)
	},
	Sandbox: func(_ vendors.Fake, base string) vendors.SandboxConn {
		return vendors.SandboxConn{ClientID: lacrmtest.DefaultClientID, ClientSecret: lacrmtest.DefaultClientSecret,
			BaseURL: base + "/v2/", AuthURL: base + "/oauth/authorize.php", TokenURL: base + "/oauth/token.php",
			Note: "user " + lacrmtest.DefaultSandboxUser}
	},
	Static: func(f vendors.Fake, base string) (vendors.StaticConn, error) {
		key, err := f.(*lacrmtest.Fake).IssueAPIKey()
		if err != nil {
			return vendors.StaticConn{}, err
		}
		return vendors.StaticConn{Auth: "api_key", BaseURL: base + "/v2/",
			Keys: []vendors.Field{{Key: "api_key", Secret: &vendors.Secret{File: "api-key", Value: key}}}}, nil
	},
}
