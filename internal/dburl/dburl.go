// Package dburl is leadsync's one grammar for database URLs: the warehouse (sink) and the
// token store (store) read theirs with Parse, and the configuration validates with it.
//
// Accepted:
//
//	sqlite:///var/lib/leadsync/leads.db   SQLite, an absolute path (the empty host is dropped)
//	sqlite://data/leads.db                SQLite, a path relative to the working directory of
//	                                      the process (under systemd: / unless the unit sets
//	                                      WorkingDirectory=); the configuration's defaults are
//	                                      absolute paths in the state directory
//	/var/lib/leadsync/leads.db            shorthand for sqlite:///var/lib/leadsync/leads.db
//	postgres://user@host:5432/db?...      PostgreSQL (postgresql:// too), given to the driver
//	                                      unchanged
//
// A SQLite path is taken literally up to the first '?' (no percent-decoding, so any file name
// without a '?' can be written as is) and cleaned with filepath.Clean. What follows the '?' is
// a query of go-sqlite3 parameters (sqlite:///x.db?_cache_size=-20000), kept for the driver;
// those that leadsync sets itself are refused when the database is opened (SQLiteDSN).
//
// Refused, with a message that says what to write instead: an empty URL; a relative path
// without a scheme (leads.db could be a typo of anything: write sqlite://leads.db); sqlite:
// without // (sqlite:leads.db); any other scheme (mysql://, file:, sqlite3://); a SQLite URL
// that names no file (sqlite://, sqlite:///, sqlite://?mode=ro, a path ending in /); a
// PostgreSQL URL that does not parse. Messages never repeat a PostgreSQL URL, which may hold
// a password.
package dburl

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// Dialect is the kind of database a URL names.
type Dialect string

// The dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// URL is a parsed database URL.
type URL struct {
	Dialect Dialect
	// Path is the SQLite database file, cleaned; relative to the working directory unless
	// absolute. Empty for PostgreSQL.
	Path string
	// RawQuery is what followed the '?' of a SQLite URL: go-sqlite3 parameters. Empty for
	// PostgreSQL (its query stays in Conn).
	RawQuery string
	// Conn is the PostgreSQL URL exactly as given, query included. Empty for SQLite.
	Conn string
}

// DSN is what the dialect's driver is given: the SQLite path with its query (if any), or
// the PostgreSQL URL.
func (u URL) DSN() string {
	if u.Dialect == Postgres {
		return u.Conn
	}
	if u.RawQuery == "" {
		return u.Path
	}
	return u.Path + "?" + u.RawQuery
}

// Accepted forms, for messages.
const want = "want sqlite:///absolute/path.db, sqlite://path/relative/to/the/working/directory.db or postgres://user@host:5432/db"

// Parse reads a database URL (see the package doc for the grammar).
func Parse(raw string) (URL, error) {
	if raw == "" {
		return URL{}, errors.New("empty database URL (" + want + ")")
	}
	if strings.HasPrefix(raw, "/") {
		return parseSQLite(raw)
	}
	scheme, rest, ok := cutScheme(raw)
	if !ok {
		return URL{}, errors.New("database URL has no scheme: a relative path needs sqlite:// in front (" + want + ")")
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		if !strings.HasPrefix(rest, "//") {
			return URL{}, errors.New("sqlite URL must start with sqlite:// (sqlite:///absolute/path.db, or sqlite://relative/path.db from the working directory)")
		}
		return parseSQLite(strings.TrimPrefix(rest, "//"))
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return URL{}, errors.New("PostgreSQL URL must start with postgres:// (postgres://user@host:5432/db)")
		}
		if _, err := url.Parse(raw); err != nil {
			// url.Parse's message quotes the URL, and with it any password.
			return URL{}, errors.New("not a valid PostgreSQL URL (want postgres://user@host:5432/db?sslmode=verify-full)")
		}
		return URL{Dialect: Postgres, Conn: raw}, nil
	}
	return URL{}, fmt.Errorf("unsupported database URL scheme %q (%s)", scheme, want)
}

// parseSQLite reads what follows sqlite:// (or a bare absolute path): path[?query].
func parseSQLite(s string) (URL, error) {
	path, query, _ := strings.Cut(s, "?")
	// sqlite:/// leaves "/": a directory, not a file.
	if path == "" || strings.HasSuffix(path, "/") {
		return URL{}, errors.New("sqlite URL has no file path (want sqlite:///path/to/file.db)")
	}
	if _, err := url.ParseQuery(query); err != nil {
		return URL{}, fmt.Errorf("sqlite URL: bad query %q: %v", query, err)
	}
	if path != ":memory:" {
		path = filepath.Clean(path)
	}
	return URL{Dialect: SQLite, Path: path, RawQuery: query}, nil
}

// cutScheme splits "scheme:rest" where scheme is an RFC 3986 scheme
// (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
func cutScheme(s string) (scheme, rest string, ok bool) {
	for i, r := range s {
		switch {
		case r == ':' && i > 0:
			return s[:i], s[i+1:], true
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && ('0' <= r && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// SQLiteDSN is the go-sqlite3 data source name for u: a file: URI of u.Path (escaped, so
// any file name works) with the parameters of u.RawQuery and own, leadsync's own settings.
// A URL parameter that own sets too (under any of the driver's names for it) is refused:
// leadsync relies on its settings (WAL, the write lock taken at BEGIN, the timeouts it
// reports).
func (u URL) SQLiteDSN(own url.Values) (string, error) {
	if u.Dialect != SQLite {
		return "", fmt.Errorf("dburl: %s URL is not SQLite", u.Dialect)
	}
	params, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("sqlite URL: bad query: %w", err)
	}
	for k := range params {
		for ok := range own {
			if sameParam(k, ok) {
				return "", fmt.Errorf("sqlite URL parameter %s: leadsync sets %s itself; remove it from the URL", k, ok)
			}
		}
	}
	for k, vs := range own {
		params[k] = vs
	}
	path := u.Path
	if path != ":memory:" {
		// A file: URI path is percent-decoded by SQLite; "./" keeps a relative path that
		// starts with a colon or with // from reading as something else.
		path = (&url.URL{Path: path}).EscapedPath()
		if !strings.HasPrefix(path, "/") {
			path = "./" + path
		}
	}
	dsn := "file:" + path
	if len(params) > 0 {
		dsn += "?" + params.Encode()
	}
	return dsn, nil
}

// paramAliases are go-sqlite3's names for one setting.
var paramAliases = [][]string{
	{"_busy_timeout", "_timeout"},
	{"_journal_mode", "_journal"},
	{"_foreign_keys", "_fk"},
	{"_synchronous", "_sync"},
	{"_locking_mode", "_locking"},
	{"_txlock"},
	{"_query_only"},
}

func sameParam(a, b string) bool {
	if a == b {
		return true
	}
	for _, names := range paramAliases {
		if slices.Contains(names, a) && slices.Contains(names, b) {
			return true
		}
	}
	return false
}
