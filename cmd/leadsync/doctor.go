package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/store"
)

func (c *cli) doctorCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "check the configuration, databases, grants, scopes and listener",
		Long: `doctor checks what leadsync needs to run, and prints one line per check: ok, FAIL with
what is wrong and the fix, or skip with the reason. The checks: the configuration (as
config check); the warehouse is reachable and at a schema this binary knows (pending
migrations are reported, never applied); the token store opens with its key; each
connection's grant (or static token) is accepted by one cheap read, its access token used
as stored while it is valid (a refresh token is spent only on an expired one, and the new
pair is stored); the grant's scopes cover the connection's streams; http.listen can bind.
It exits 0 when every check passed, 1 when one failed, and 2 when the configuration is
invalid or the token store key does not match.`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) { return cmdDoctor(ctx, &c.flags, asJSON, stdout) }),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print JSON: {"checks": [{"name", "connection", "status" (ok, fail, skip), "detail", "needs_reauth", "needs_rotation"}], "ok"}, snake_case keys`)
	return cmd
}

// Check outcomes (the `status` key of doctor --json).
const (
	checkOK   = "ok"
	checkFail = "fail"
	checkSkip = "skip"
)

// doctorCheck is one line of `leadsync doctor`.
type doctorCheck struct {
	Name       string `json:"name"`                 // config, warehouse, token_store, grant, scopes, listen
	Connection string `json:"connection,omitempty"` // grant and scopes: the connection checked
	Status     string `json:"status"`
	Detail     string `json:"detail"`
	// NeedsReauth: the grant needs `leadsync auth login`; NeedsRotation: a static token was
	// refused and needs a new one in its secret.
	NeedsReauth   bool `json:"needs_reauth,omitempty"`
	NeedsRotation bool `json:"needs_rotation,omitempty"`
}

// doctorDoc is the `doctor --json` document.
type doctorDoc struct {
	Checks []doctorCheck `json:"checks"`
	OK     bool          `json:"ok"`
}

const (
	// doctorTimeout bounds the opening of each database.
	doctorTimeout = 30 * time.Second
	// grantTimeout bounds the read that tries one connection's grant.
	grantTimeout = time.Minute
	// doctorRefreshMargin: the access token is used as stored until this close to its
	// expiry, so that doctor spends a single-use refresh token only on an expired one.
	doctorRefreshMargin = time.Second
)

// doctor runs the checks in order; a check whose prerequisite failed is skipped.
type doctor struct {
	f      *flags
	cfg    *config.Config
	log    *slog.Logger
	checks []doctorCheck
	usage  bool         // a configuration error: exit 2
	reqs   atomic.Int64 // vendor API requests made, to tell whether a read reached the vendor
}

func cmdDoctor(ctx context.Context, f *flags, asJSON bool, stdout io.Writer) (int, error) {
	d := &doctor{f: f}
	d.run(ctx)
	doc := doctorDoc{Checks: d.checks, OK: true}
	failed, skipped := 0, 0
	for _, c := range d.checks {
		switch c.Status {
		case checkFail:
			failed++
			doc.OK = false
		case checkSkip:
			skipped++
		}
	}
	code := exitOK
	switch {
	case d.usage:
		code = exitUsage
	case failed > 0:
		code = exitFailed
	}
	if asJSON {
		return code, writeJSON(stdout, doc)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, c := range d.checks {
		name, status := c.Name, c.Status
		if c.Connection != "" {
			name += " " + c.Connection
		}
		if status == checkFail {
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, status, strings.Join(strings.Fields(c.Detail), " "))
	}
	if err := tw.Flush(); err != nil {
		return code, err
	}
	summary := fmt.Sprintf("%d of %d checks failed", failed, len(d.checks))
	if failed == 0 {
		summary = fmt.Sprintf("every check passed (%d skipped)", skipped)
	}
	_, err := fmt.Fprintln(stdout, summary)
	return code, err
}

func (d *doctor) run(ctx context.Context) {
	if !d.config(ctx) {
		for _, name := range []string{"warehouse", "token_store", "grant", "scopes", "listen"} {
			d.add(doctorCheck{Name: name, Status: checkSkip, Detail: "the configuration is not valid: fix it first"})
		}
		return
	}
	d.warehouse(ctx)
	if a := d.tokenStore(ctx); a != nil {
		defer a.Close()
		if len(a.Conns) == 0 {
			d.add(doctorCheck{Name: "grant", Status: checkSkip, Detail: "no enabled connections"})
		}
		for i := range a.Conns {
			c := &a.Conns[i]
			d.grant(ctx, a, c)
			d.scopes(ctx, a, c)
		}
	} else {
		for _, name := range []string{"grant", "scopes"} {
			d.add(doctorCheck{Name: name, Status: checkSkip, Detail: "the token store and the connections did not open (see above)"})
		}
	}
	d.listen()
}

func (d *doctor) add(c doctorCheck) { d.checks = append(d.checks, c) }

// config is `leadsync config check`, its message the detail.
func (d *doctor) config(ctx context.Context) bool {
	quiet := *d.f
	quiet.stderr = io.Discard // the warnings are logged once, by the load below
	var out strings.Builder
	_, err := cmdConfig(ctx, &quiet, &out)
	var cfg *config.Config
	if err == nil {
		cfg, err = d.f.loadWithKey()
	}
	if err != nil {
		d.usage = true
		d.add(doctorCheck{Name: "config", Status: checkFail, Detail: err.Error()})
		return false
	}
	d.cfg, d.log = cfg, newLogger(cfg, d.f.stderr)
	d.add(doctorCheck{Name: "config", Status: checkOK, Detail: strings.TrimSpace(out.String())})
	return true
}

// warehouse opens the warehouse without migrating it: reachable, and at a schema this
// binary knows.
func (d *doctor) warehouse(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	wurl := d.cfg.Warehouse.OpenURL() // with warehouse.schema, as `run` opens it
	where := describeDB(wurl)
	check := func(status, detail string) {
		d.add(doctorCheck{Name: "warehouse", Status: status, Detail: where + ": " + detail})
	}
	// Opening a SQLite file that is not there would create it.
	if t, err := sink.ParseURL(wurl); err == nil && t.Dialect == sink.DialectSQLite && t.DSN != ":memory:" {
		if _, err := os.Stat(t.DSN); errors.Is(err, fs.ErrNotExist) {
			check(checkOK, "not created yet: the first `leadsync run` (or `leadsync migrate`) creates it")
			return
		}
	}
	s, err := sink.Open(ctx, wurl, sink.Options{NoMigrate: true, Logger: d.log})
	switch {
	case errors.Is(err, sink.ErrSchemaTooNew):
		check(checkFail, err.Error()+" (a newer leadsync migrated it)")
	case errors.Is(err, sink.ErrSchemaOutdated):
		check(checkOK, "reachable; "+pendingMigrations(ctx, wurl))
	case err != nil:
		check(checkFail, "unreachable: "+err.Error()+" (check warehouse.url, and that the database is up and accepts this user)")
	default:
		defer s.Close()
		if _, err := s.Cursor(ctx, "", "", ""); err != nil { // what /readyz asks of it
			check(checkFail, "opened, but a read failed: "+err.Error())
			return
		}
		check(checkOK, "reachable; schema up to date")
	}
}

// pendingMigrations says which migrations the next start (or `leadsync migrate`) applies.
func pendingMigrations(ctx context.Context, wurl string) string {
	const apply = "the next `leadsync run` applies them, or `leadsync migrate` now"
	st, err := sink.MigrationStatus(ctx, wurl)
	if err != nil {
		return "migrations are pending (" + apply + "); listing them failed: " + err.Error()
	}
	var names []string
	for _, m := range st {
		if !m.Applied {
			names = append(names, m.Name)
		}
	}
	return fmt.Sprintf("migrations pending: %s; %s", strings.Join(names, ", "), apply)
}

// tokenStore opens the token store and wires the connections, as `auth status` does; nil
// when that fails.
func (d *doctor) tokenStore(ctx context.Context) *app.App {
	octx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	where := describeDB(d.cfg.TokenStore.URL)
	a, err := app.Open(octx, d.cfg, d.log, app.Options{NoSink: true, Version: buildVersion().String(),
		HTTPX: d.adjustHTTP, RefreshMargin: doctorRefreshMargin})
	var ce *app.ConfigError
	switch {
	case errors.As(err, &ce):
		// A connection its vendor cannot wire: a configuration error like those config check finds.
		d.usage = true
		d.add(doctorCheck{Name: "config", Status: checkFail, Detail: err.Error()})
		return nil
	case err != nil:
		// A key that does not match is a configuration error (exitCodesHelp).
		d.usage = d.usage || errors.Is(err, store.ErrKeyMismatch) || errors.Is(err, store.ErrBadKey)
		d.add(doctorCheck{Name: "token_store", Status: checkFail, Detail: where + ": " + strings.TrimPrefix(err.Error(), "token store: ")})
		return nil
	}
	st, err := a.Store.Status(ctx)
	if err != nil {
		a.Close()
		d.add(doctorCheck{Name: "token_store", Status: checkFail, Detail: where + ": opened, but a read failed: " + err.Error()})
		return nil
	}
	d.add(doctorCheck{Name: "token_store", Status: checkOK,
		Detail: fmt.Sprintf("%s: opened with its key (%s); grants stored: %d", where, d.cfg.KeyPath(), len(st))})
	return a
}

// adjustHTTP makes the sources' HTTP layer count the requests that reach the vendors, and
// give up in seconds: a diagnosis reports a vendor that keeps failing, it does not wait it out.
func (d *doctor) adjustHTTP(h *httpx.Config) {
	h.Observer = countingObserver{next: h.Observer, n: &d.reqs}
	h.MaxAttempts, h.MaxThrottled = 3, 3
	h.MaxElapsed, h.MaxWait = 20*time.Second, 5*time.Second
}

// countingObserver counts the attempts it passes on.
type countingObserver struct {
	next httpx.Observer
	n    *atomic.Int64
}

func (o countingObserver) Request(vendor, endpoint string, status int, dur time.Duration) {
	o.n.Add(1)
	if o.next != nil {
		o.next.Request(vendor, endpoint, status, dur)
	}
}

func (o countingObserver) Retry(vendor, endpoint, reason string) {
	if o.next != nil {
		o.next.Retry(vendor, endpoint, reason)
	}
}

// grant tries a connection's grant, or its static tokens, with one cheap read.
func (d *doctor) grant(ctx context.Context, a *app.App, c *app.Conn) {
	ctx, cancel := context.WithTimeout(ctx, grantTimeout)
	defer cancel()
	name := c.Config.Name
	check := doctorCheck{Name: "grant", Connection: name}
	done := func(status, detail string) {
		check.Status, check.Detail = status, detail
		d.add(check)
	}
	if c.Static {
		how, err := d.read(ctx, c)
		rejected, rerr := a.Store.StaticRejections(ctx)
		var texts []string
		for _, r := range rejected {
			if r.Connection == name {
				texts = append(texts, app.NeedsRotationText(r))
			}
		}
		switch {
		case len(texts) > 0:
			check.NeedsRotation = true
			done(checkFail, strings.Join(texts, "; "))
		case errors.Is(err, sources.ErrNeedsRotation):
			check.NeedsRotation = true
			done(checkFail, "needs rotation: "+err.Error())
		case err != nil:
			done(checkFail, err.Error())
		case rerr != nil:
			done(checkFail, "token store: "+rerr.Error())
		default:
			done(checkOK, "static tokens: "+how)
		}
		return
	}
	login := loginCommand(c)
	before, found, err := grantOf(ctx, a, name)
	switch {
	case err != nil:
		done(checkFail, "token store: "+err.Error())
		return
	case !found:
		check.NeedsReauth = true
		done(checkFail, fmt.Sprintf("not authorized: run `%s`", login))
		return
	case before.NeedsReauth:
		check.NeedsReauth = true
		done(checkFail, fmt.Sprintf("needs re-authorization (%s): run `%s`", before.Reason, login))
		return
	}
	how, err := d.read(ctx, c)
	after, _, serr := grantOf(ctx, a, name)
	switch {
	case errors.Is(err, sources.ErrNeedsReauth) || (err != nil && serr == nil && after.NeedsReauth):
		check.NeedsReauth = true
		done(checkFail, fmt.Sprintf("needs re-authorization: the vendor refused the grant (%s): run `%s`",
			cmp.Or(after.Reason, err.Error()), login))
	case err != nil:
		done(checkFail, err.Error())
	case serr != nil:
		done(checkFail, "token store: "+serr.Error())
	case !after.LastRefreshAt.Equal(before.LastRefreshAt):
		done(checkOK, fmt.Sprintf("the access token had expired: refreshed it (the new pair is stored, valid until %s), then %s",
			zoned(after.Expiry), how))
	default:
		valid := "with no expiry"
		if !before.Expiry.IsZero() {
			valid = "valid until " + zoned(before.Expiry)
		}
		done(checkOK, fmt.Sprintf("the stored access token (%s) %s; no refresh", valid, how))
	}
}

// read makes one cheap authenticated read of c: listing its accounts when that asks the
// vendor; else (the accounts are configured) the first page of its first stream of each
// account, each of which may have its own token. It says what it read.
func (d *doctor) read(ctx context.Context, c *app.Conn) (string, error) {
	n0 := d.reqs.Load()
	var accts []sources.Account
	for acct, err := range c.Source.Accounts(ctx) {
		if err != nil {
			return "", err
		}
		if d.reqs.Load() > n0 {
			return "listed the accounts", nil
		}
		accts = append(accts, acct)
	}
	if d.reqs.Load() > n0 {
		return "listed the accounts (none)", nil
	}
	streams := c.Source.Streams()
	if len(accts) == 0 || len(streams) == 0 {
		return "", errors.New("nothing to read: the connection has no accounts or no streams")
	}
	stream := streams[0].Name
	var errs []error
	for _, acct := range accts {
		for _, err := range c.Source.Read(ctx, acct, stream, "", sources.ReadOptions{}) {
			var re *sources.RestrictedError // the token was accepted; the account withholds data
			if err != nil && !errors.As(err, &re) {
				errs = append(errs, fmt.Errorf("account %s: %w", acct.ID, err))
			}
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("read the first page of %s of each configured account (%d)", stream, len(accts)), nil
}

// scopes checks that the grant's scopes cover what the connection's streams need, as its
// source declares (sources.ScopeNeeder).
func (d *doctor) scopes(ctx context.Context, a *app.App, c *app.Conn) {
	check := doctorCheck{Name: "scopes", Connection: c.Config.Name}
	done := func(status, detail string) {
		check.Status, check.Detail = status, detail
		d.add(check)
	}
	sn, ok := c.Source.(sources.ScopeNeeder)
	if c.Static {
		done(checkSkip, "static tokens: no grant whose scopes leadsync can read")
		return
	}
	if !ok {
		done(checkSkip, c.Config.Source+" grants carry no OAuth scopes that leadsync checks")
		return
	}
	var streams []string
	missing := map[string][]string{} // stream → scopes the grant lacks
	g, found, err := grantOf(ctx, a, c.Config.Name)
	switch {
	case err != nil:
		done(checkFail, "token store: "+err.Error())
		return
	case !found:
		done(checkSkip, "no grant (see the grant check)")
		return
	case len(g.Scopes) == 0:
		done(checkSkip, "the vendor recorded no scopes on the grant: nothing to compare")
		return
	}
	for _, st := range c.Source.Streams() {
		need := sn.NeededScopes(st.Name)
		if len(need) == 0 {
			continue
		}
		streams = append(streams, st.Name)
		for _, s := range need {
			if !slices.Contains(g.Scopes, s) {
				missing[st.Name] = append(missing[st.Name], s)
			}
		}
	}
	granted := strings.Join(g.Scopes, " ")
	if len(streams) == 0 {
		done(checkSkip, "its streams need no OAuth scopes")
		return
	}
	if len(missing) == 0 {
		done(checkOK, fmt.Sprintf("the grant's scopes (%s) cover stream %s", granted, strings.Join(streams, ", ")))
		return
	}
	var lacks []string
	for _, st := range streams {
		if m := missing[st]; len(m) > 0 {
			lacks = append(lacks, fmt.Sprintf("stream %s needs %s", st, strings.Join(m, " ")))
		}
	}
	done(checkFail, fmt.Sprintf("%s, which the grant lacks (it has %s): request them (the connection's scopes setting, "+
		"when set, and the app's scopes at the vendor), then run `%s`", strings.Join(lacks, "; "), granted, loginCommand(c)))
}

// listen binds the metrics and health address (and closes it at once).
func (d *doctor) listen() {
	addr := d.cfg.HTTP.Listen
	check := func(status, detail string) {
		d.add(doctorCheck{Name: "listen", Status: status, Detail: detail})
	}
	if !d.cfg.HTTP.Enabled() {
		check(checkSkip, "http.listen is off: no metrics or health endpoint")
		return
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE) && answersAsLeadsync(addr):
		// doctor next to the running daemon: its own endpoint holds the address, as it should.
		check(checkOK, fmt.Sprintf("%s (http.listen) is held by a running leadsync (its endpoint answers there)", addr))
	case errors.Is(err, syscall.EADDRINUSE):
		check(checkFail, fmt.Sprintf("%s (http.listen): address already in use by another process: stop it, "+
			"or set http.listen to a free address", addr))
	case err != nil:
		check(checkFail, fmt.Sprintf("%s (http.listen): %v", addr, err))
	default:
		_ = ln.Close()
		check(checkOK, fmt.Sprintf("%s (http.listen) can be bound", addr))
	}
}

// answersAsLeadsync reports whether what listens on addr is leadsync's metrics and health
// endpoint (internal/ops), whose index names it.
func answersAsLeadsync(addr string) bool {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + addr + "/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(string(b), "leadsync: /metrics")
}

// grantOf is the stored state of conn's grant.
func grantOf(ctx context.Context, a *app.App, conn string) (store.GrantStatus, bool, error) {
	st, err := a.Store.Status(ctx)
	if err != nil {
		return store.GrantStatus{}, false, err
	}
	for _, g := range st {
		if g.Connection == conn {
			return g, true, nil
		}
	}
	return store.GrantStatus{}, false, nil
}

// loginCommand is the command that authorizes c again.
func loginCommand(c *app.Conn) string {
	if _, ok := c.Vendor.(vendors.PasswordGranter); ok {
		if user, _, _ := c.Config.PasswordGrant(); user != "" {
			return "leadsync auth password " + c.Config.Name
		}
	}
	return "leadsync auth login " + c.Config.Name
}

// describeDB names a database for people, without the credentials its URL may hold.
func describeDB(raw string) string {
	u, err := dburl.Parse(raw)
	switch {
	case err != nil:
		return "database"
	case u.Dialect == dburl.SQLite:
		return "SQLite " + u.Path
	}
	p, err := url.Parse(u.Conn)
	if err != nil {
		return "PostgreSQL"
	}
	desc := "PostgreSQL " + p.Host + p.Path
	if sp := p.Query().Get("search_path"); sp != "" {
		desc += " (schema " + sp + ")"
	}
	return desc
}

// zoned is t as `auth status` would show it, with its zone.
func zoned(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }
