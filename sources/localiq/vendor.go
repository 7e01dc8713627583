package localiq

import (
	"cmp"
	"flag"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

func init() {
	vendors.Register(vendors.Vendor{
		Name:        sources.LocaliQ,
		Title:       "LocaliQ",
		Concurrency: 4,
		Options:     func() config.Options { return new(Options) },
		Open:        open,
		Fake:        fake,
		Example: []vendors.Field{
			{Key: "client_id", Value: "<client id>", Help: "the OAuth client id LocaliQ issued to you"},
			{Key: "client_secret", Secret: &vendors.Secret{File: "client-secret"}, Help: "the OAuth client secret LocaliQ issued to you"},
			{Key: "user", Value: "reports@agency.example", Help: "the email of the business user whose advertisers are synced"},
		},
	})
}

// Options are a LocaliQ connection's own keys in the configuration file.
type Options struct {
	User       string        `yaml:"user"`     // the business user's email (identities listing)
	Username   string        `yaml:"username"` // password grant ("direct access")
	Password   config.Secret `yaml:"password"`
	RereadDays int           `yaml:"reread_days"` // whole days re-read each run (default 3)
	MaxPages   int           `yaml:"max_pages"`   // page budget of one listing
}

// Defaults fills the zero values.
func (o *Options) Defaults() {
	o.RereadDays = cmp.Or(o.RereadDays, int(DefaultReRead/(24*time.Hour)))
	o.MaxPages = cmp.Or(o.MaxPages, sources.DefaultMaxPages)
}

// Validate reports what is wrong.
func (o *Options) Validate(c *config.Checker) {
	if o.User == "" {
		c.Fail("user", "required for localiq: the business user's email (lists the advertisers)")
	} else if !strings.Contains(o.User, "@") {
		c.Fail("user", "%q is not an email address", o.User)
	}
	// A username without a password is fine: `leadsync auth password` then reads the password
	// from --password-file or a prompt.
	if o.Username == "" && !o.Password.IsZero() {
		c.Fail("username", "required with password (the password grant needs both)")
	}
	c.Secret("password", o.Password, false)
	c.Count("reread_days", o.RereadDays, 31)
	c.Count("max_pages", o.MaxPages, sources.MaxPagesLimit)
}

// PasswordGrant is the configured password-grant login, if any.
func (o *Options) PasswordGrant() (username string, password config.Secret, ok bool) {
	return o.Username, o.Password, o.Username != "" && !o.Password.IsZero()
}

func open(c vendors.Conn) (vendors.Opened, error) {
	o := c.Config.Options.(*Options)
	vc := Config{BaseURL: c.Config.BaseURL, AuthURL: c.Config.AuthURL, TokenURL: c.Config.TokenURL,
		ClientID: c.Config.ClientID, ClientSecret: c.ClientSecret, User: o.User,
		BackfillStart: c.Config.BackfillStart.Time, ReRead: time.Duration(o.RereadDays) * 24 * time.Hour,
		MaxPages: o.MaxPages, Logger: c.Logger}
	r := vc.Refresher()
	src, err := New(vc, c.Tokens(r), WithHTTPX(c.HTTPX))
	if err != nil {
		return vendors.Opened{}, err
	}
	return vendors.Opened{Source: src, Auth: vc, Refresher: r}, nil
}

var fake = &vendors.FakeSpec{
	Prefix: "/localiq",
	Flags: func(fs *flag.FlagSet) func() any {
		advertisers := fs.Int("advertisers", 6, "LocaliQ: advertisers (about a quarter HIPAA-protected)")
		interactions := fs.Int("interactions", 120, "LocaliQ: contact interactions per advertiser")
		return func() any {
			return liqtest.Options{Advertisers: *advertisers, InteractionsPerAdvertiser: *interactions}
		}
	},
	Demo: func() any { return liqtest.Options{Advertisers: 6, InteractionsPerAdvertiser: 150} },
	New: func(c vendors.FakeCommon, opts any) vendors.Fake {
		o, _ := opts.(liqtest.Options)
		c.Apply(&o.Seed, &o.Clock, &o.TokenTTL, &o.Faults)
		return liqtest.New(o)
	},
	Sandbox: func(_ vendors.Fake, base string) vendors.SandboxConn {
		return vendors.SandboxConn{ClientID: liqtest.DefaultClientID, ClientSecret: liqtest.DefaultClientSecret,
			BaseURL: base, PasswordGrant: true,
			Options: []vendors.KeyValue{{Key: "user", Value: liqtest.DefaultSandboxUser}, {Key: "username", Value: liqtest.DefaultSandboxUser}},
			Secrets: []vendors.KeyValue{{Key: "password", Value: liqtest.DefaultSandboxPassword}},
			Note:    "user " + liqtest.DefaultSandboxUser + " / " + liqtest.DefaultSandboxPassword}
	},
}
