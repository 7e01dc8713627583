package config

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

const maxConcurrency = 64

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9_-]+$`)
	identifierRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.file, Field: field, Line: v.c.line(field), Msg: fmt.Sprintf(format, args...)})
}

// line is the line of a key path, or of its nearest parent present in the file.
func (c *Config) line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Validate checks everything a user can get wrong that decoding alone does not catch. Zero
// values are valid (they mean the defaults), so it works before and after WithDefaults.
// The error is a *Error or Errors.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.database("warehouse.url", c.Warehouse.URL)
	v.warehouseSchema()
	v.database("token_store.url", c.TokenStore.URL)
	v.tokenStore()
	v.schedule("schedule", c.Schedule, false)
	v.schedule("full_schedule", c.FullSchedule, true)
	for _, name := range slices.Sorted(maps.Keys(c.Concurrency)) {
		if _, ok := section(name); !ok {
			v.fail("concurrency."+name, "unknown source %q: want one of %s", name, knownSources())
			continue
		}
		v.count("concurrency."+name, c.Concurrency[name], maxConcurrency)
	}
	if d := c.ShutdownTimeout.D(); d < 0 || d > time.Hour {
		v.fail("shutdown_timeout", "must be between 1s and 1h, got %s", d)
	}
	v.listen()
	v.webhooks()
	if d := c.Worker.LeaseDuration.D(); d != 0 && (d < time.Second || d > time.Hour) {
		v.fail("worker.lease_duration", "must be between 1s and 1h, got %s", d)
	}
	if strings.ContainsAny(c.Worker.ID, " \t\n") {
		v.fail("worker.id", "must not contain white space, got %q", c.Worker.ID)
	}
	v.oneOf("log.level", strings.ToLower(c.Log.Level), "debug", "info", "warn", "error")
	v.oneOf("log.format", strings.ToLower(c.Log.Format), "auto", "text", "json")

	names := map[string]string{}
	for i := range c.Connections {
		v.connection(i, &c.Connections[i], names)
	}
	slices.SortStableFunc(v.errs, func(a, b *Error) int { return a.Line - b.Line })
	return asError(v.errs)
}

func (v *validator) database(field, u string) {
	if u == "" {
		return
	}
	dialect, _, err := SplitURL(u)
	if err != nil {
		v.fail(field, "%v", err)
		return
	}
	if dialect == DialectPostgres {
		if _, err := url.Parse(u); err != nil {
			v.fail(field, "not a valid PostgreSQL URL (want postgres://user@host:5432/db?sslmode=verify-full)")
		}
	}
}

func (v *validator) warehouseSchema() {
	w := v.c.Warehouse
	if w.Schema == "" {
		return
	}
	dialect, _, _ := SplitURL(w.URL)
	switch {
	case dialect != DialectPostgres:
		v.fail("warehouse.schema", "only applies to a PostgreSQL warehouse")
	case !identifierRE.MatchString(w.Schema):
		v.fail("warehouse.schema", "%q is not a plain schema name (lowercase letters, digits, _)", w.Schema)
	case strings.Contains(w.URL, "search_path="):
		v.fail("warehouse.schema", "the warehouse URL sets search_path too: keep one of them")
	}
}

func (v *validator) tokenStore() {
	ts := v.c.TokenStore
	dialect, _, _ := SplitURL(ts.URL)
	if ts.Schema != "" {
		if ts.URL != "" && dialect != DialectPostgres {
			v.fail("token_store.schema", "only applies to a PostgreSQL token store")
		} else if !identifierRE.MatchString(ts.Schema) {
			v.fail("token_store.schema", "%q is not a plain schema name (lowercase letters, digits, _)", ts.Schema)
		}
	}
	// Analysts get the warehouse; the tokens must not be in the same SQLite file.
	if p := sqlitePath(ts.URL); p != "" && p == sqlitePath(v.c.Warehouse.URL) {
		v.fail("token_store.url", "must not be the warehouse database: analysts who can read the warehouse must not see tokens")
	}
}

func (v *validator) schedule(field, spec string, offOK bool) {
	if spec == "" || (offOK && spec == Off) {
		return
	}
	if _, err := cron.ParseStandard(spec); err != nil {
		v.fail(field, "invalid cron spec %q: %v (examples: \"*/15 * * * *\", \"@every 15m\", \"@hourly\")", spec, err)
	}
}

func (v *validator) count(field string, n, max int) {
	if n < 0 || n > max {
		v.fail(field, "must be between 1 and %d, got %d", max, n)
	}
}

func (v *validator) oneOf(field, value string, allowed ...string) {
	if value != "" && !slices.Contains(allowed, value) {
		v.fail(field, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

func (v *validator) listen() {
	l := v.c.HTTP.Listen
	if l == "" || l == Off {
		return
	}
	_, port, err := net.SplitHostPort(l)
	if err != nil {
		v.fail("http.listen", "want host:port (e.g. 127.0.0.1:9464) or \"off\", got %q", l)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.fail("http.listen", "bad port %q", port)
	}
}

func (v *validator) connection(i int, conn *Connection, names map[string]string) {
	p := fmt.Sprintf("connections[%d]", i)
	f := func(key string) string { return p + "." + key }

	switch {
	case conn.Name == "":
		v.fail(f("name"), "required: a short unique name, used in commands like `leadsync auth login <name>`")
	case len(conn.Name) > 64 || !nameRE.MatchString(conn.Name):
		v.fail(f("name"), "%q: use lowercase letters, digits, - and _ (at most 64)", conn.Name)
	default:
		if first, dup := names[conn.Name]; dup {
			v.fail(f("name"), "duplicate connection name %q (also %s)", conn.Name, first)
		}
		names[conn.Name] = p
	}

	sec, known := section(conn.Source)
	switch {
	case conn.Source == "":
		v.fail(f("source"), "required: one of %s", knownSources())
	case !known:
		v.fail(f("source"), "unknown source %q: want one of %s", conn.Source, knownSources())
	}

	v.schedule(f("schedule"), conn.Schedule, false)
	v.count(f("concurrency"), conn.Concurrency, maxConcurrency)
	if !conn.StaticAuth() {
		if conn.ClientID == "" {
			v.fail(f("client_id"), "required: the OAuth client id of the app registered with %s", cmp.Or(conn.Source, "the vendor"))
		}
		v.secret(f("client_secret"), conn.ClientSecret, true)
	} else if !conn.ClientSecret.IsZero() {
		v.secret(f("client_secret"), conn.ClientSecret, false)
	}
	for _, u := range []struct {
		key, value string
	}{{"base_url", conn.BaseURL}, {"auth_url", conn.AuthURL}, {"token_url", conn.TokenURL}, {"redirect_uri", conn.RedirectURI}} {
		v.url(f(u.key), u.value)
	}
	for _, sel := range []struct {
		key      string
		patterns []string
	}{{"accounts.include", conn.Accounts.Include}, {"accounts.exclude", conn.Accounts.Exclude}} {
		for j, p := range sel.patterns {
			if _, err := path.Match(p, ""); err != nil || strings.TrimSpace(p) == "" {
				v.fail(fmt.Sprintf("%s[%d]", f(sel.key), j), "%q is not an account id or a pattern like loc_* (path.Match)", p)
			}
		}
	}
	seenStream := map[string]int{}
	for j, s := range conn.Streams {
		key := fmt.Sprintf("%s[%d]", f("streams"), j)
		first, dup := seenStream[s]
		switch {
		case strings.TrimSpace(s) == "":
			v.fail(key, "empty stream name")
		case dup:
			v.fail(key, "stream %q is listed twice (also streams[%d])", s, first)
		default:
			seenStream[s] = j
		}
	}
	if !conn.BackfillStart.IsZero() && conn.BackfillStart.After(time.Now()) {
		v.fail(f("backfill_start"), "%s is in the future", conn.BackfillStart)
	}
	if !known {
		return
	}

	opts := conn.Options
	if opts == nil { // built by hand, not parsed: the zero options
		opts = sec.NewOptions()
	}
	opts.Validate(&Checker{v: v, prefix: p})
}

func (v *validator) secret(field string, s Secret, required bool) {
	n := 0
	for _, set := range []bool{s.File != "", s.Env != "", s.Credential != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0 && required:
		v.fail(field, "required: write {file: /path}, {env: VARIABLE} or {credential: name}")
	case n > 1:
		v.fail(field, "set exactly one of file, env, credential")
	case s.Credential != "" && (strings.ContainsAny(s.Credential, "/\\") || s.Credential == "." || s.Credential == ".."):
		v.fail(field+".credential", "%q is not a credential name (a file name, no /)", s.Credential)
	case s.Env != "" && strings.ContainsAny(s.Env, "= \t"):
		v.fail(field+".env", "%q is not an environment variable name", s.Env)
	}
}

// url accepts https URLs, and http only on loopback (the sandbox, and OAuth loopback
// redirects): a client secret or token must never cross a network in clear text.
func (v *validator) url(field, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		v.fail(field, "%q is not an absolute http(s) URL", raw)
		return
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		v.fail(field, "%q: plain http is only allowed for loopback addresses (the sandbox); use https", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
