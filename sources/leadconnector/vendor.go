package leadconnector

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LeadConnector,
		Title:       "LeadConnector (HighLevel)",
		Concurrency: 4,
		Options:     func() config.Options { return new(Options) },
		Open:        open,
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
