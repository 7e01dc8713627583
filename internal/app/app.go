// Package app wires a configuration into the running parts: the warehouse sink, the token
// store, one source per connection, the worker and the metrics. The CLI, the demo and the
// end-to-end tests all build leadsync through it, so they exercise the same code path.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/store"
	"github.com/leadsync/leadsync/store/login"
	"github.com/leadsync/leadsync/worker"
)

// Conn is one configured connection, wired.
type Conn struct {
	Config    config.Connection
	Source    sources.Source
	Vendor    vendors.Auth // its OAuth endpoints, for `leadsync auth`; nil when Static
	Refresher store.Refresher
	// Static: the connection authenticates with static tokens from its secrets (no grant).
	Static bool
}

// App is leadsync, wired from a configuration.
type App struct {
	Config  *config.Config
	Logger  *slog.Logger
	Sink    sink.Sink
	Store   *store.Store
	Metrics *ops.Metrics
	Conns   []Conn
	Worker  *worker.Worker

	opts Options
	mu   sync.RWMutex // Conns, which a reload (Apply) replaces while /readyz and /metrics read them
}

// Options tune Open.
type Options struct {
	// NoSink skips opening the warehouse (auth commands need only the token store).
	NoSink bool
	// Version labels the build in metrics.
	Version string
	// HTTPX adjusts every source's HTTP layer (tests, `leadsync doctor`).
	HTTPX func(*httpx.Config)
	// RefreshMargin is how long before its expiry a grant's access token is refreshed
	// (default store.DefaultRefreshMargin). `leadsync doctor` makes it tiny, so that it
	// spends a single-use refresh token only on an access token that has expired.
	RefreshMargin time.Duration
}

// ConfigError marks errors that come from the configuration (the CLI exits 2 on them).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Open wires cfg (already validated, with defaults). Close the App when done.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (_ *App, err error) {
	a := &App{Config: cfg, Logger: log, Metrics: ops.NewMetrics(opts.Version), opts: opts}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	key, err := store.LoadKey(cfg.TokenStore.KeyFile, cfg.StateDir, log)
	if err != nil {
		return nil, fmt.Errorf("token store key: %w", err)
	}
	a.Store, err = store.Open(ctx, cfg.TokenStore.URL, store.Options{Key: key, Logger: log,
		PostgresSchema: cfg.TokenStore.Schema, RecoveryDir: cfg.StateDir, RefreshMargin: opts.RefreshMargin,
		OnRefresh: func(conn string, err error) {
			source := a.sourceOf(conn)
			a.Metrics.TokenRefreshed(source, err)
			if ops.RefreshResult(err) == ops.RefreshInvalidGrant {
				a.Metrics.SetNeedsReauth(conn, source, true)
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	wired, err := a.Rewire(cfg)
	if err != nil {
		return nil, err
	}
	a.Conns = wired.conns
	wconns := wired.wconns
	// The warehouse opens (and migrates) last, so a configuration mistake leaves nothing behind.
	if !opts.NoSink {
		// The worker identity and lease duration matter only to a PostgreSQL warehouse shared
		// by several workers (worker/lease.go); SQLite ignores them.
		wid, lease, werr := worker.Identity(cfg.Worker.ID, cfg.Worker.LeaseDuration.D())
		if werr != nil {
			return nil, &ConfigError{werr}
		}
		a.Sink, err = sink.Open(ctx, cfg.Warehouse.OpenURL(), sink.Options{Logger: log, Worker: wid, LeaseDuration: lease})
		if err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
	}
	a.Worker = &worker.Worker{Sink: a.Sink, Connections: wconns, Logger: log, Observer: observer{a.Metrics}}
	a.Metrics.WatchGrants(a.Grants)
	a.watchRotations()
	return a, nil
}

// Wiring is a configuration's connections, wired on an App's token store and metrics but
// not yet in use: Rewire builds it, Apply puts it in use.
type Wiring struct {
	Config *config.Config
	conns  []Conn
	wconns []worker.Connection
}

// Rewire wires cfg's enabled connections on a's token store and metrics (a reload): their
// secrets are read and their options checked against their sources, without changing a.
// The warehouse, the token store, the metrics and the logger stay as they are, whatever
// cfg says of them.
func (a *App) Rewire(cfg *config.Config) (*Wiring, error) {
	w := &Wiring{Config: cfg}
	for i, cc := range cfg.Connections {
		if !cc.IsEnabled() {
			continue
		}
		c, err := a.connection(i, cc, a.opts)
		if err != nil {
			return nil, err
		}
		wc := worker.Connection{Name: cc.Name, Source: c.Source, Concurrency: cc.Concurrency, Schedule: cc.Schedule}
		if !cc.Accounts.IsZero() {
			wc.Selects = cc.Accounts.Selects
		}
		if wc.Streams, err = selectStreams(i, cc, c.Source); err != nil {
			return nil, err
		}
		w.conns = append(w.conns, c)
		w.wconns = append(w.wconns, wc)
	}
	return w, nil
}

// Apply puts w in use: a's configuration, connections and worker's connections become w's.
// No run may be in flight (the daemon stops its scheduler first).
func (a *App) Apply(w *Wiring) {
	a.mu.Lock()
	a.Config, a.Conns = w.Config, w.conns
	a.mu.Unlock()
	a.Worker.Connections = w.wconns
	a.watchRotations()
}

// CurrentConfig is Config, safe against a concurrent Apply (the status page reads it while
// a reload may replace it).
func (a *App) CurrentConfig() *config.Config {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.Config
}

// conns is Conns, safe against a concurrent Apply.
func (a *App) conns() []Conn {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.Conns
}

// sourceOf is the source of the connection named conn ("" when none is enabled).
func (a *App) sourceOf(conn string) string {
	for _, c := range a.conns() {
		if c.Config.Name == conn {
			return c.Config.Source
		}
	}
	return ""
}

func (a *App) watchRotations() {
	conns := a.conns()
	rotations := make([]ops.GrantState, len(conns))
	for i, c := range conns {
		rotations[i] = ops.GrantState{Connection: c.Config.Name, Source: c.Config.Source}
	}
	a.Metrics.WatchRotations(rotations, a.Store.PendingRotations)
}

// Conn returns the wired connection named name.
func (a *App) Conn(name string) (*Conn, error) {
	for i := range a.Conns {
		if a.Conns[i].Config.Name == name {
			return &a.Conns[i], nil
		}
	}
	return nil, &ConfigError{fmt.Errorf("no enabled connection named %q in %s", name, a.Config.File())}
}

func (a *App) connection(i int, cc config.Connection, opts Options) (Conn, error) {
	if err := cc.CheckSecrets(); err != nil {
		return Conn{}, &ConfigError{err}
	}
	var secret string
	if !cc.ClientSecret.IsZero() || !cc.StaticAuth() {
		var err error
		if secret, err = cc.ClientSecret.Resolve(); err != nil {
			return Conn{}, &ConfigError{err}
		}
	}
	log := a.Logger.With(slog.String("connection", cc.Name))
	hx := func(h *httpx.Config) {
		h.Observer = a.Metrics
		h.Logger = log
		if opts.HTTPX != nil {
			opts.HTTPX(h)
		}
	}
	v, ok := vendors.Lookup(cc.Source)
	if !ok {
		return Conn{}, &ConfigError{&config.Error{Field: fmt.Sprintf("connections[%d].source", i),
			Msg: fmt.Sprintf("unknown source %q", cc.Source)}}
	}
	o, err := v.Open(vendors.Conn{Config: cc, ClientSecret: secret, Logger: log, HTTPX: hx,
		Tokens: func(r store.Refresher) sources.Tokens { return a.Store.Tokens(cc.Name, r) },
		Static: a.Store.Static})
	if err != nil {
		return Conn{}, &ConfigError{fmt.Errorf("connections[%d] (%s): %w", i, cc.Name, err)}
	}
	return Conn{Config: cc, Source: o.Source, Vendor: o.Auth, Refresher: o.Refresher, Static: o.Static}, nil
}

// Close releases everything Open acquired, waiting up to store.DefaultCloseTimeout for
// rotated tokens not yet durable (see Shutdown).
func (a *App) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), store.DefaultCloseTimeout)
	defer cancel()
	a.Shutdown(ctx)
}

// Shutdown is Close within ctx's deadline: a rotated token pair that the token store could
// not write yet is retried until then, and what is still unwritten goes to the recovery
// file in the state directory, which the next start applies first.
func (a *App) Shutdown(ctx context.Context) {
	var errs []error
	if a.Sink != nil {
		errs = append(errs, a.Sink.Close())
	}
	if a.Store != nil {
		errs = append(errs, a.Store.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil && a.Logger != nil {
		a.Logger.Warn("closing", slog.String("error", err.Error()))
	}
}

// Ready checks that the warehouse and the token store answer and that every enabled
// connection has a usable grant (the /readyz check). A grant that needs `auth login` makes
// leadsync not ready even though the other connections keep syncing: the degraded state
// an operator must act on. The error names every such connection.
func (a *App) Ready(ctx context.Context) error {
	if a.Sink != nil {
		if _, err := a.Sink.Cursor(ctx, "", "", ""); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
	}
	// From the store's memory, so it is said even while the store's database is down.
	var bad []string
	for _, conn := range a.Store.PendingRotations() {
		bad = append(bad, fmt.Sprintf("connection %s: its rotated token is not yet durable in the token store (retrying the write; check the token store's disk or database)", conn))
	}
	gs, err := a.grantStatus(ctx)
	if err != nil {
		bad = append(bad, err.Error())
	}
	for _, g := range gs {
		switch {
		case g.missing:
			bad = append(bad, fmt.Sprintf("connection %s is not authorized: run `leadsync auth login %s`", g.conn, g.conn))
		case g.NeedsReauth:
			bad = append(bad, fmt.Sprintf("connection %s needs re-authorization (%s): run `leadsync auth login %s`",
				g.conn, g.Reason, g.conn))
		}
		for _, r := range g.rotations {
			bad = append(bad, NeedsRotationText(r))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// NeedsRotationText says which static token of a connection the vendor refused, and the fix.
func NeedsRotationText(r store.StaticRejection) string {
	what := "its static token"
	if r.Credential != "" {
		what = "the static token of " + r.Credential
	}
	return fmt.Sprintf("connection %s needs rotation: the vendor refused %s (%s): %s, then update the secret at %s",
		r.Connection, what, r.Reason, cmp.Or(r.Fix, "make a new token"), r.Secret)
}

// Grants is each enabled connection's grant state, for the leadsync_grant_needs_reauth
// gauge: a connection without a grant needs `auth login` as much as a rejected one.
func (a *App) Grants(ctx context.Context) ([]ops.GrantState, error) {
	gs, err := a.grantStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ops.GrantState, len(gs))
	for i, g := range gs {
		out[i] = ops.GrantState{Connection: g.conn, Source: g.source, NeedsReauth: g.missing || g.NeedsReauth,
			NeedsRotation: len(g.rotations) > 0}
	}
	return out, nil
}

type grantState struct {
	store.GrantStatus
	conn, source string
	missing      bool
	static       bool                    // static tokens: no grant
	rotations    []store.StaticRejection // refused static tokens still in their secrets
}

func (a *App) grantStatus(ctx context.Context) ([]grantState, error) {
	st, err := a.Store.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	byConn := make(map[string]store.GrantStatus, len(st))
	for _, g := range st {
		byConn[g.Connection] = g
	}
	rejected, err := a.Store.StaticRejections(ctx)
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	rotations := map[string][]store.StaticRejection{}
	for _, r := range rejected {
		rotations[r.Connection] = append(rotations[r.Connection], r)
	}
	conns := a.conns()
	out := make([]grantState, 0, len(conns))
	for _, c := range conns {
		g, ok := byConn[c.Config.Name]
		out = append(out, grantState{GrantStatus: g, conn: c.Config.Name, source: c.Config.Source,
			static: c.Static, missing: !ok && !c.Static, rotations: rotations[c.Config.Name]})
	}
	return out, nil
}

// SeedMetrics registers every known account with the metrics and sets its last success
// from the warehouse, so leadsync_account_lag_seconds survives restarts. The warehouse does
// not record the connection: accounts of a source with several connections are left to
// their first sync.
func (a *App) SeedMetrics(ctx context.Context) error {
	if a.Sink == nil {
		return nil
	}
	conns := map[string][]string{}
	for _, c := range a.conns() {
		conns[c.Config.Source] = append(conns[c.Config.Source], c.Config.Name)
	}
	st, err := a.Sink.Status(ctx)
	if err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	for _, s := range st {
		if cs := conns[s.Source]; len(cs) == 1 {
			a.Metrics.SeedAccount(cs[0], s.Source, s.AccountID, s.LastSyncedAt)
		}
	}
	return nil
}

// observer feeds the worker's events to the Prometheus metrics.
type observer struct{ m *ops.Metrics }

func (o observer) AccountSynced(conn, source, account, outcome string, leads int64, d time.Duration) {
	o.m.AccountSynced(conn, source, account, outcome, d)
	o.m.LeadsWritten(conn, source, int(leads))
}

func (o observer) RecordsRejected(_, source string, n int) { o.m.RecordsRejected(source, n) }

func (o observer) AccountsListed(conn, source string, accounts []string) {
	o.m.AccountsListed(conn, source, accounts)
}

// RunStarted counts a connection's run in progress until RunFinished.
func (o observer) RunStarted(trigger, conn string) { o.m.RunStarted(trigger, conn) }

func (o observer) RunFinished(trigger, conn, status string, _ sink.RunStats, d time.Duration) {
	o.m.RunFinished(trigger, conn, status, d)
}

// Login authorizes c with the authorization-code flow (open plays the browser; nil only
// prints the URL to out; paste, when set, is read for the redirected address a person pastes
// from a browser on another machine) and stores the grant.
func (a *App) Login(ctx context.Context, c *Conn, open func(string) error, paste io.Reader, out io.Writer, timeout time.Duration) error {
	tok, err := login.Run(ctx, login.Config{
		AuthCodeURL: c.Vendor.AuthCodeURL,
		Exchange:    c.Vendor.Exchange,
		RedirectURI: c.Config.RedirectURI,
		Open:        open,
		Paste:       paste,
		Out:         out,
		Timeout:     timeout,
		Logger:      a.Logger,
	})
	if err != nil {
		return err
	}
	return a.Store.Save(ctx, c.Config.Name, tok)
}

// PasswordLogin authorizes c with its vendor's password grant and stores the grant.
func (a *App) PasswordLogin(ctx context.Context, c *Conn, password string) error {
	pg, ok := c.Vendor.(vendors.PasswordGranter)
	if !ok {
		return &ConfigError{fmt.Errorf("connection %s (%s) has no password grant: use `leadsync auth login %s`", c.Config.Name, c.Config.Source, c.Config.Name)}
	}
	username, _, _ := c.Config.PasswordGrant()
	if username == "" {
		return &ConfigError{fmt.Errorf("connection %s: username is not set", c.Config.Name)}
	}
	tok, err := pg.PasswordGrant(ctx, username, password)
	if err != nil {
		return err
	}
	return a.Store.Save(ctx, c.Config.Name, tok)
}

// AuthorizeAll authorizes every connection without a person: the password grant where the
// connection has a username and password, else the code flow with open as the browser
// (the sandbox's pages approve on their own); static-token connections need none. The demo
// and the tests use it.
func (a *App) AuthorizeAll(ctx context.Context, open func(string) error, out io.Writer) error {
	for i := range a.Conns {
		c := &a.Conns[i]
		if c.Static {
			fmt.Fprintf(out, "  %-22s static tokens from its secrets: nothing to authorize\n", c.Config.Name)
			continue
		}
		if _, pw, ok := c.Config.PasswordGrant(); ok {
			pw, err := pw.Resolve()
			if err != nil {
				return &ConfigError{err}
			}
			if err := a.PasswordLogin(ctx, c, pw); err != nil {
				return fmt.Errorf("authorize %s: %w", c.Config.Name, err)
			}
			fmt.Fprintf(out, "  %-22s authorized (password grant)\n", c.Config.Name)
			continue
		}
		if err := a.Login(ctx, c, open, nil, io.Discard, time.Minute); err != nil {
			return fmt.Errorf("authorize %s: %w", c.Config.Name, err)
		}
		fmt.Fprintf(out, "  %-22s authorized (authorization-code flow, loopback callback)\n", c.Config.Name)
	}
	return nil
}

// selectStreams checks connection i's streams option against its source's streams: nil
// (all of them) when it is empty, a *ConfigError naming the key when a name is unknown.
func selectStreams(i int, cc config.Connection, src sources.Source) ([]string, error) {
	if len(cc.Streams) == 0 {
		return nil, nil
	}
	var names []string
	for _, st := range src.Streams() {
		names = append(names, st.Name)
	}
	for j, s := range cc.Streams {
		if !slices.Contains(names, s) {
			return nil, &ConfigError{fmt.Errorf("connections[%d].streams[%d]: %s has no stream %q (its streams: %s)",
				i, j, cc.Source, s, strings.Join(names, ", "))}
		}
	}
	return slices.Clone(cc.Streams), nil
}
