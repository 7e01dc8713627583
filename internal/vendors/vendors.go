// Package vendors is the registry of CRM vendors. A vendor is one package (sources/<name>)
// that registers itself from an init function, as database/sql drivers do: its name, its
// section of the configuration (options, defaults, validation), how it opens a connection
// (its source, its OAuth endpoints and its refresh call), and its fake for crmsim. Nothing
// outside that package names the vendor: internal/config, internal/app, internal/sandbox
// and cmd/ go through this registry. Import sources/all to register every vendor.
package vendors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/store"
)

// Vendor is what a vendor package registers.
type Vendor struct {
	// Name is the `source` value in the configuration and the warehouse: lowercase.
	Name string
	// Title names the vendor for people ("LeadConnector (HighLevel)").
	Title string
	// Concurrency is how many of a connection's accounts sync at once by default.
	Concurrency int
	// Options returns a new zero value of the vendor's connection options: a pointer to a
	// struct whose yaml-tagged fields are the vendor's keys on a connection.
	Options func() config.Options
	// Open wires one connection of this vendor.
	Open func(c Conn) (Opened, error)
	// Fake serves the vendor in crmsim (nil: crmsim does not have it).
	Fake *FakeSpec
	// Example is the connection `leadsync init` writes: every key a new connection sets
	// besides name and source, in order, each a Value (an example the operator replaces, or
	// an answer to init's prompt) or a Secret (whose Value init leaves out: it writes an
	// empty file for the operator to fill in); init writes no List. Nil: init does not offer
	// the vendor.
	Example []Field
}

// Conn is what Open gets: one configured connection and the services around it.
type Conn struct {
	// Config has the defaults applied; Config.Options is the vendor's own type.
	Config config.Connection
	// ClientSecret is Config.ClientSecret, resolved.
	ClientSecret string
	// Logger carries the connection's name.
	Logger *slog.Logger
	// HTTPX is applied to every HTTP client the source builds (metrics, logger; tests).
	HTTPX func(*httpx.Config)
	// Tokens hands out the connection's tokens from the token store, refreshed by r.
	Tokens func(r store.Refresher) sources.Tokens
	// Static hands out a static token (an API key, a private integration token) read from
	// its secret on every use, whose refusal by the vendor the token store records.
	Static func(t store.StaticToken) sources.Credentials
}

// Opened is a wired connection.
type Opened struct {
	Source    sources.Source
	Auth      Auth
	Refresher store.Refresher
	// Static is set for a connection that authenticates with static tokens from its secrets
	// (Auth and Refresher are nil): it has no grant and no `auth login`, and a refused
	// token makes it need a rotation instead.
	Static bool
}

// Auth is a vendor's OAuth authorization-code flow, for `leadsync auth login`.
type Auth interface {
	AuthCodeURL(state, redirectURI, pkceChallenge string) string
	Exchange(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error)
}

// PasswordGranter is an Auth with a password grant (LocaliQ "direct access").
type PasswordGranter interface {
	PasswordGrant(ctx context.Context, username, password string) (*oauth2.Token, error)
}

var (
	mu      sync.RWMutex
	vendors = map[string]Vendor{}
)

// Register makes a vendor available. It panics when the name is taken or a part is
// missing: both are programming errors, found at start-up.
func Register(v Vendor) {
	mu.Lock()
	defer mu.Unlock()
	if v.Name == "" || v.Options == nil || v.Open == nil {
		panic(fmt.Sprintf("vendors: vendor %q registered without a name, options or Open", v.Name))
	}
	if _, dup := vendors[v.Name]; dup {
		panic(fmt.Sprintf("vendors: vendor %q registered twice", v.Name))
	}
	vendors[v.Name] = v
	config.RegisterVendor(config.VendorSection{Name: v.Name, Concurrency: v.Concurrency, NewOptions: v.Options})
}

// Lookup returns the vendor named name.
func Lookup(name string) (Vendor, bool) {
	mu.RLock()
	defer mu.RUnlock()
	v, ok := vendors[name]
	return v, ok
}

// All lists the registered vendors by name.
func All() []Vendor {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Vendor, 0, len(vendors))
	for _, v := range vendors {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Vendor) int { return strings.Compare(a.Name, b.Name) })
	return out
}
