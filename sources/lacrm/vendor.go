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
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LACRM,
		Title:       "Less Annoying CRM",
		Concurrency: 1, // one account per grant
		Options:     func() config.Options { return new(Options) },
		Open:        open,
		Fake:        fake,
	})
}

// Options are a Less Annoying CRM connection's own keys in the configuration file.
type Options struct {
	Lookback  config.Duration `yaml:"lookback"`  // re-read window of each incremental run
	PageSize  int             `yaml:"page_size"` // records per request (1..10,000)
	MaxPages  int             `yaml:"max_pages"` // page budget of one stream's pass
	Pipelines []string        `yaml:"pipelines"` // pipeline ids or names; empty: all pipelines
}

// Defaults fills the zero values.
func (o *Options) Defaults() {
	o.Lookback = cmp.Or(o.Lookback, config.Duration(DefaultLookback))
	o.PageSize = cmp.Or(o.PageSize, DefaultPageSize)
	o.MaxPages = cmp.Or(o.MaxPages, sources.DefaultMaxPages)
}

// Validate reports what is wrong.
func (o *Options) Validate(c *config.Checker) {
	c.Count("page_size", o.PageSize, MaxPageSize)
	c.Within("lookback", o.Lookback, 30*24*time.Hour)
	c.Count("max_pages", o.MaxPages, sources.MaxPagesLimit)
	for j, s := range o.Pipelines {
		if strings.TrimSpace(s) == "" {
			c.Fail(fmt.Sprintf("pipelines[%d]", j), "empty pipeline")
		}
	}
}

func open(c vendors.Conn) (vendors.Opened, error) {
	o := c.Config.Options.(*Options)
	vc := Config{BaseURL: c.Config.BaseURL, AuthURL: c.Config.AuthURL, TokenURL: c.Config.TokenURL,
		ClientID: c.Config.ClientID, ClientSecret: c.ClientSecret, Since: c.Config.BackfillStart.Time,
		Lookback: o.Lookback.D(), PageSize: o.PageSize, MaxPages: o.MaxPages, PipelineIDs: o.Pipelines,
		Logger: c.Logger}
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
