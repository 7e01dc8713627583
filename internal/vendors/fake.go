package vendors

import (
	"flag"
	"net/http"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Fake is a vendor's stand-in for crmsim: its <vendor>test package's fake, which behaves as
// the vendor's own documents say.
type Fake interface {
	Handler() http.Handler
	Counters() *simkit.Counters
	Faults() *simkit.Faults
	GroundTruth() []simkit.AccountTruth
}

// FakeSpec is how crmsim serves a vendor's fake.
type FakeSpec struct {
	// Prefix is the fake's path under crmsim ("/leadconnector").
	Prefix string
	// Flags registers the fake's own crmsim flags (data sizes, limits) on fs. The function it
	// returns, called after parsing, gives the options they set, for New.
	Flags func(fs *flag.FlagSet) func() any
	// Demo is the fake's options for `leadsync demo` (nil: its defaults).
	Demo func() any
	// New builds the fake from the settings every fake shares and its own options: nil for
	// its defaults, else a value of its options type (what Flags returned, or set by a
	// caller that knows the vendor: tests).
	New func(c FakeCommon, opts any) Fake
	// Sandbox is how a leadsync configuration connects to the fake served at base (crmsim's
	// URL and Prefix).
	Sandbox func(f Fake, base string) SandboxConn
	// Static, when set, issues static tokens on the fake now (API keys, one token per account
	// where the vendor has no agency-wide one) and describes the connection that uses them
	// instead of OAuth, for a sandbox configuration written with static authentication. Nil:
	// the vendor has no static tokens.
	Static func(f Fake, base string) (StaticConn, error)
}

// FakeCommon are the settings every fake takes from crmsim.
type FakeCommon struct {
	Seed     uint64
	Clock    simkit.Clock  // nil: the real clock
	TokenTTL time.Duration // 0: the vendor's real access-token lifetime
	Faults   simkit.FaultSettings
}

// SandboxConn is one connection of a sandbox configuration: the common keys, and the
// vendor's own, in order. Secrets are written to files (mode 0600) and referenced.
type SandboxConn struct {
	ClientID, ClientSecret     string
	BaseURL, AuthURL, TokenURL string // "" leaves the key out
	Options                    []KeyValue
	Secrets                    []KeyValue // the vendor's own secret keys (a password)
	PasswordGrant              bool       // authorized with `leadsync auth password`
	Note                       string     // for crmsim's description: users, passwords
}

// StaticConn is one connection of a sandbox configuration authenticated by static tokens
// the fake issued: it needs no `leadsync auth` command.
type StaticConn struct {
	Auth    string  // the connection's auth key ("api_key", ...)
	BaseURL string  // "" leaves the key out
	Keys    []Field // the vendor's own keys, in order
}

// Field is one YAML key of a static connection or of a vendor's Example: a plain Value, a
// Secret (written to a file of mode 0600 and referenced by path, never inline), or a List of
// entries.
type Field struct {
	Key    string
	Value  string
	Secret *Secret
	List   [][]Field
	// Help says what the key holds, for the comments and prompts of `leadsync init`.
	Help string
}

// Secret is a secret value and its file's name under the configuration's secrets directory,
// after the vendor's name and a dash ("location-LOC.token" → secrets/leadconnector-location-LOC.token).
type Secret struct{ File, Value string }

// KeyValue is one YAML key and its value.
type KeyValue struct{ Key, Value string }

// Apply sets the shared settings on the matching fields of a fake's own options: the seed
// when the options have none, the clock when one is given, crmsim's token lifetime over the
// fake's, and crmsim's faults when any are set.
func (c FakeCommon) Apply(seed *uint64, clock *simkit.Clock, ttl *time.Duration, faults *simkit.FaultSettings) {
	if *seed == 0 {
		*seed = c.Seed
	}
	if c.Clock != nil {
		*clock = c.Clock
	}
	if c.TokenTTL != 0 {
		*ttl = c.TokenTTL
	}
	if c.Faults != (simkit.FaultSettings{}) {
		*faults = c.Faults
	}
}
