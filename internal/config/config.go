// Package config loads leadsync's YAML configuration strictly: an unknown or misspelled key,
// a value of the wrong type, or an option that cannot work is an error naming the key path
// and its line, so a typo never silently falls back to a default. Zero values mean the
// defaults; Parse and Load return a validated configuration with the defaults filled in.
//
// Secrets are never written inline: a secret field names a file, an environment variable or
// a systemd credential, and Secret.Resolve reads it when needed.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/dburl"
)

// Defaults. Exported so docs, the CLI and tests can refer to them.
const (
	DefaultStateDir        = "./leadsync-state"
	DefaultSchedule        = "*/15 * * * *"
	DefaultFullSchedule    = "0 3 * * 0" // Sundays 03:00: a weekly full pass that notices deletions
	DefaultRunOnStart      = true        // a fresh install syncs at once, not at the first tick
	DefaultShutdownTimeout = 60 * time.Second
	DefaultListen          = "127.0.0.1:9464"
	DefaultTokenSchema     = "leadsync_tokens"
	DefaultKeyCredential   = "token-key" // the systemd credential name of the token encryption key
	GeneratedKeyName       = "token.key" // the key the token store generates in the state directory

	// Off disables an optional address or schedule (http.listen, full_schedule).
	Off = "off"
)

// Config is the whole configuration file.
type Config struct {
	// StateDir holds the SQLite databases and the generated token key.
	// Default: $STATE_DIRECTORY (set by systemd's StateDirectory=), else ./leadsync-state.
	StateDir   string     `yaml:"state_dir"`
	Warehouse  Warehouse  `yaml:"warehouse"`
	TokenStore TokenStore `yaml:"token_store"`
	// Schedule is the cron spec of incremental runs (robfig/cron standard syntax,
	// descriptors like "@every 15m" allowed).
	Schedule string `yaml:"schedule"`
	// FullSchedule is the cron spec of full passes (which soft-delete vanished leads);
	// "off" disables them.
	FullSchedule string `yaml:"full_schedule"`
	// RunOnStart runs each connection once (incremental) when the daemon starts, and when a
	// reload adds it, rather than at its first tick (default true; a connection may override).
	RunOnStart  *bool       `yaml:"run_on_start"`
	Concurrency Concurrency `yaml:"concurrency"`
	// ShutdownTimeout bounds the soft stop: after it the page in flight is abandoned.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	HTTP            HTTP     `yaml:"http"`
	// Webhooks is the webhook endpoint; off unless webhooks.listen is set.
	Webhooks Webhooks `yaml:"webhooks"`
	Log      Log      `yaml:"log"`
	// Worker names this process among several sharing one PostgreSQL warehouse.
	Worker      Worker       `yaml:"worker"`
	Connections []Connection `yaml:"connections"`

	file  string         // the name given to Parse, for errors
	lines map[string]int // key path → line, for validation errors
}

// Warehouse is the leads database.
type Warehouse struct {
	// URL is sqlite:///abs/path.db, sqlite://relative.db or postgres://...
	// Default: sqlite in the state directory (leads.db).
	URL string `yaml:"url"`
	// Schema is the PostgreSQL schema of the warehouse's tables and views (created by the
	// first migration when missing). Empty: the first schema of the URL's search_path, else
	// the role's default (public).
	Schema string `yaml:"schema"`
}

// OpenURL is the URL the warehouse is opened with: URL, with search_path set to Schema when
// one is configured.
func (w Warehouse) OpenURL() string {
	if w.Schema == "" {
		return w.URL
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		return w.URL // validation has reported it
	}
	q := u.Query()
	q.Set("search_path", w.Schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TokenStore is the encrypted token database, kept apart from the warehouse so analysts
// never see tokens.
type TokenStore struct {
	// URL is sqlite:///abs/path.db or postgres://... Default: sqlite in the state
	// directory (tokens.db).
	URL string `yaml:"url"`
	// Schema is the PostgreSQL schema of the token tables (default leadsync_tokens).
	Schema string `yaml:"schema"`
	// KeyFile holds the 32-byte AES-256-GCM key. Default: $CREDENTIALS_DIRECTORY/token-key
	// when that file exists; else it stays empty, which tells the token store to use (and
	// create on first use) token.key in the state directory. See KeyPath.
	KeyFile string `yaml:"key_file"`
	// KeyAutoCreate is set by the defaults when KeyFile was left empty: the key is the
	// generated one in the state directory. An explicit key file is never created.
	KeyAutoCreate bool `yaml:"-"`
}

// Concurrency is the default number of accounts synced at once per connection, by vendor
// name (each vendor declares its own default).
type Concurrency map[string]int

// HTTP is the metrics and health endpoint.
type HTTP struct {
	// Listen is host:port; "off" (or an explicit "") disables the server.
	Listen string `yaml:"listen"`
}

// Enabled reports whether the server should run.
func (h HTTP) Enabled() bool { return h.Listen != "" && h.Listen != Off }

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error (default info)
	Format string `yaml:"format"` // auto | text | json (default auto)
}

// SlogLevel is Level as a slog.Level (info when unset or unknown).
func (l Log) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Worker is this process's identity in account leases (PostgreSQL, several workers). The
// environment ($LEADSYNC_WORKER_ID, $LEADSYNC_LEASE_DURATION) overrides it, so several
// processes may share one configuration file.
type Worker struct {
	ID            string   `yaml:"id"`             // default host:pid:random
	LeaseDuration Duration `yaml:"lease_duration"` // default 60s
}

// Connection is one vendor grant and its options. The keys every vendor has are fields
// here; a vendor's own keys are written next to them, flat, and decoded into Options (the
// vendor's type): setting one on another vendor's connection is an error.
type Connection struct {
	Name   string `yaml:"name"`   // unique, [a-z0-9_-]; used in commands and the token store
	Source string `yaml:"source"` // a registered vendor's name (internal/vendors)
	// Enabled defaults to true; a disabled connection is kept (and its grant) but not synced.
	Enabled     *bool  `yaml:"enabled"`
	Schedule    string `yaml:"schedule"`     // overrides the global schedule
	RunOnStart  *bool  `yaml:"run_on_start"` // overrides the global run_on_start
	Concurrency int    `yaml:"concurrency"`  // overrides the vendor default

	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// Endpoint overrides, for the sandbox (crmsim); empty means the vendor's real URLs.
	BaseURL     string `yaml:"base_url"`
	AuthURL     string `yaml:"auth_url"`
	TokenURL    string `yaml:"token_url"`
	RedirectURI string `yaml:"redirect_uri"`

	// BackfillStart is where an empty cursor starts (all vendors); zero: the source's default.
	BackfillStart Date `yaml:"backfill_start"`

	// Accounts chooses which of the connection's accounts are synced (default: all).
	Accounts AccountSelection `yaml:"accounts"`

	// Streams chooses which of the source's streams are synced, by name (default: all of
	// them, in the source's order). Names are checked against the source when it is built.
	Streams []string `yaml:"streams"`

	// Options are the vendor's own options (nil for a source no vendor registered).
	Options Options `yaml:"-"`
}

// AccountSelection chooses accounts by id: those Include matches (every account when it is
// empty), less those Exclude matches. Each entry is an account id or a path.Match pattern
// (loc_*). Accounts left out are not synced, and are not listed in the metrics; their rows
// already in the warehouse stay.
type AccountSelection struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Selects reports whether the account with id is synced. The patterns were validated.
func (s AccountSelection) Selects(id string) bool {
	match := func(patterns []string) bool {
		for _, p := range patterns {
			if ok, _ := path.Match(p, id); ok {
				return true
			}
		}
		return false
	}
	return (len(s.Include) == 0 || match(s.Include)) && !match(s.Exclude)
}

// IsZero reports whether every account is selected.
func (s AccountSelection) IsZero() bool { return len(s.Include) == 0 && len(s.Exclude) == 0 }

// Secrets are the connection's configured secret references: the client secret and any of
// its vendor's options (a LocaliQ password), for `config check` to resolve and inspect.
func (c *Connection) Secrets() []Secret {
	var out []Secret
	if !c.ClientSecret.IsZero() || !c.StaticAuth() {
		out = append(out, c.ClientSecret)
	}
	_, secrets := optionSecrets(c.Options)
	for _, s := range secrets {
		if !s.IsZero() {
			out = append(out, *s)
		}
	}
	return out
}

// PasswordGrant is the connection's password-grant login, when its vendor has one and both
// the username and the password are configured.
func (c *Connection) PasswordGrant() (username string, password Secret, ok bool) {
	if pg, is := c.Options.(PasswordGrantOptions); is {
		return pg.PasswordGrant()
	}
	return "", Secret{}, false
}

// CheckSecrets resolves every secret of the connection and checks the form of those its
// vendor knows (SecretChecker). The errors are *Error values naming the field; they never
// contain a secret.
func (c *Connection) CheckSecrets() error {
	var errs []error
	for _, s := range c.Secrets() {
		if _, err := s.Resolve(); err != nil {
			errs = append(errs, err)
		}
	}
	sc, ok := c.Options.(SecretChecker)
	if !ok {
		return errors.Join(errs...)
	}
	keys, secrets := optionSecrets(c.Options)
	for i, s := range secrets {
		if s.IsZero() {
			continue
		}
		v, err := s.Resolve()
		if err != nil {
			continue // reported above
		}
		if msg := sc.CheckSecret(keys[i], v); msg != "" {
			errs = append(errs, &Error{Field: s.field, Line: s.line, Msg: msg})
		}
	}
	return errors.Join(errs...)
}

// StaticAuth reports whether the connection authenticates with static tokens from its
// secrets (see StaticAuthOptions) rather than an OAuth grant.
func (c *Connection) StaticAuth() bool {
	sa, ok := c.Options.(StaticAuthOptions)
	return ok && sa.StaticAuth()
}

// IsEnabled reports whether the connection is synced (default true).
func (c *Connection) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// RunsOnStart reports whether the daemon runs the connection once at start: its
// run_on_start, which WithDefaults fills from the global one (default true).
func (c *Connection) RunsOnStart() bool { return c.RunOnStart == nil || *c.RunOnStart }

// Connection returns the named connection, or nil.
func (c *Config) Connection(name string) *Connection {
	for i := range c.Connections {
		if c.Connections[i].Name == name {
			return &c.Connections[i]
		}
	}
	return nil
}

// File is the name the configuration was parsed from.
func (c *Config) File() string { return c.file }

// Load reads, decodes, validates and completes a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("read: %v", unwrapPathError(err))}
	}
	return Parse(data, path)
}

// Parse decodes, validates and completes a configuration; name is used in errors. Errors
// are a *Error, or Errors when there are several (errors.As finds the first *Error).
func Parse(data []byte, name string) (*Config, error) {
	c, err := decodeConfig(data, name)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c.WithDefaults(), nil
}

// WithDefaults returns a copy with every zero value replaced by its default, read from the
// environment where the default depends on it ($STATE_DIRECTORY, $CREDENTIALS_DIRECTORY).
// It is idempotent.
func (c *Config) WithDefaults() *Config { return c.withDefaults(os.Getenv) }

func (c *Config) withDefaults(getenv func(string) string) *Config {
	d := *c
	d.Connections = make([]Connection, len(c.Connections))
	copy(d.Connections, c.Connections)

	stateDir := getenv("STATE_DIRECTORY")
	if i := strings.IndexByte(stateDir, ':'); i >= 0 { // several StateDirectory= entries
		stateDir = stateDir[:i]
	}
	d.StateDir = cmp.Or(d.StateDir, stateDir, DefaultStateDir)
	if abs, err := filepath.Abs(d.StateDir); err == nil {
		d.StateDir = abs
	}
	d.Warehouse.URL = cmp.Or(d.Warehouse.URL, "sqlite://"+filepath.Join(d.StateDir, "leads.db"))
	d.TokenStore.URL = cmp.Or(d.TokenStore.URL, "sqlite://"+filepath.Join(d.StateDir, "tokens.db"))
	if dialect, _, _ := SplitURL(d.TokenStore.URL); dialect == DialectPostgres {
		d.TokenStore.Schema = cmp.Or(d.TokenStore.Schema, DefaultTokenSchema)
	}
	if d.TokenStore.KeyFile == "" {
		d.TokenStore.KeyFile, d.TokenStore.KeyAutoCreate = defaultKeyFile(getenv)
	}
	d.Schedule = cmp.Or(d.Schedule, DefaultSchedule)
	d.FullSchedule = cmp.Or(d.FullSchedule, DefaultFullSchedule)
	if d.RunOnStart == nil {
		d.RunOnStart = ptr(DefaultRunOnStart)
	}
	d.Concurrency = maps.Clone(c.Concurrency)
	if d.Concurrency == nil {
		d.Concurrency = Concurrency{}
	}
	for _, name := range VendorNames() {
		s, _ := section(name)
		d.Concurrency[name] = cmp.Or(d.Concurrency[name], s.Concurrency, 1)
	}
	d.ShutdownTimeout = cmp.Or(d.ShutdownTimeout, Duration(DefaultShutdownTimeout))
	_, listenSet := c.lines["http.listen"]
	switch {
	case d.HTTP.Listen == "" && listenSet: // an explicit `listen: ""` disables
		d.HTTP.Listen = Off
	case d.HTTP.Listen == "":
		d.HTTP.Listen = DefaultListen
	}
	d.Webhooks = d.Webhooks.withDefaults()
	d.Log.Level = strings.ToLower(cmp.Or(d.Log.Level, "info"))
	d.Log.Format = strings.ToLower(cmp.Or(d.Log.Format, "auto"))

	for i := range d.Connections {
		conn := &d.Connections[i]
		if conn.Enabled == nil {
			t := true
			conn.Enabled = &t
		}
		conn.Schedule = cmp.Or(conn.Schedule, d.Schedule)
		if conn.RunOnStart == nil {
			conn.RunOnStart = ptr(*d.RunOnStart)
		}
		conn.Concurrency = cmp.Or(conn.Concurrency, d.Concurrency[conn.Source], 1)
		conn.ClientSecret.setField(fmt.Sprintf("connections[%d].client_secret", i), 0)
		if sec, ok := section(conn.Source); ok && conn.Options == nil {
			conn.Options = sec.NewOptions()
		}
		if conn.Options != nil {
			conn.Options = cloneOptions(conn.Options)
			conn.Options.Defaults()
			keys, secrets := optionSecrets(conn.Options)
			for j, s := range secrets {
				s.setField(fmt.Sprintf("connections[%d].%s", i, keys[j]), 0)
			}
		}
	}
	return &d
}

func ptr[T any](v T) *T { return &v }

// defaultKeyFile prefers a systemd credential. Without one it leaves the path empty: the
// token store then generates GeneratedKeyName in the state directory (store.LoadKey).
func defaultKeyFile(getenv func(string) string) (path string, autoCreate bool) {
	if dir := getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, DefaultKeyCredential)
		if _, err := os.Stat(p); err == nil {
			return p, false
		}
	}
	return "", true
}

// KeyPath is where the token key is read from: KeyFile, or the generated key in the state
// directory (for messages and `config check`).
func (c *Config) KeyPath() string {
	if c.TokenStore.KeyFile != "" {
		return c.TokenStore.KeyFile
	}
	return filepath.Join(c.StateDir, GeneratedKeyName)
}

// Database dialects returned by SplitURL.
const (
	DialectSQLite   = string(dburl.SQLite)
	DialectPostgres = string(dburl.Postgres)
)

// SplitURL splits a database URL into its dialect and the DSN its driver takes (for SQLite
// the file path, with any ?query kept; for PostgreSQL the URL itself), by the one grammar of
// internal/dburl that the warehouse and the token store read their URLs with.
func SplitURL(u string) (dialect, dsn string, err error) {
	p, err := dburl.Parse(u)
	if err != nil {
		return "", "", err
	}
	return string(p.Dialect), p.DSN(), nil
}

// sqlitePath is the SQLite file a database URL names ("" for PostgreSQL or a bad URL).
func sqlitePath(u string) string {
	p, err := dburl.Parse(u)
	if err != nil || p.Dialect != dburl.SQLite {
		return ""
	}
	return p.Path
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
