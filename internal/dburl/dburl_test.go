package dburl

import (
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want URL
		dsn  string
	}{
		// The forms the configuration validator accepted before this package: kept.
		{"sqlite:///var/lib/leadsync/leads.db", URL{Dialect: SQLite, Path: "/var/lib/leadsync/leads.db"}, "/var/lib/leadsync/leads.db"},
		{"sqlite://rel/leads.db?_busy_timeout=5000", URL{Dialect: SQLite, Path: "rel/leads.db", RawQuery: "_busy_timeout=5000"}, "rel/leads.db?_busy_timeout=5000"},
		{"postgres://u@h:5432/db?sslmode=disable", URL{Dialect: Postgres, Conn: "postgres://u@h:5432/db?sslmode=disable"}, "postgres://u@h:5432/db?sslmode=disable"},
		{"postgresql://u@h/db", URL{Dialect: Postgres, Conn: "postgresql://u@h/db"}, "postgresql://u@h/db"},
		// The bare absolute path the sink and the store accepted.
		{"/var/lib/leadsync/leads.db", URL{Dialect: SQLite, Path: "/var/lib/leadsync/leads.db"}, "/var/lib/leadsync/leads.db"},
		// Cleaned, not decoded.
		{"sqlite://./data//leads.db", URL{Dialect: SQLite, Path: "data/leads.db"}, "data/leads.db"},
		{"sqlite:///srv/a b%20#1.db", URL{Dialect: SQLite, Path: "/srv/a b%20#1.db"}, "/srv/a b%20#1.db"},
		{"SQLite:///x.db", URL{Dialect: SQLite, Path: "/x.db"}, "/x.db"},
		{"sqlite://:memory:", URL{Dialect: SQLite, Path: ":memory:"}, ":memory:"},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want || got.DSN() != tc.dsn {
			t.Errorf("Parse(%q) = %+v (DSN %q), %v; want %+v (DSN %q)", tc.in, got, got.DSN(), err, tc.want, tc.dsn)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, msg string }{
		{"", "empty database URL"},
		{"mysql://u@db/leads", `unsupported database URL scheme "mysql"`},
		{"file:/var/lib/leads.db", `unsupported database URL scheme "file"`},
		{"sqlite3:///leads.db", `unsupported database URL scheme "sqlite3"`},
		{"sqlite://", "no file path"},
		{"sqlite:///", "no file path"},
		{"sqlite://?mode=ro", "no file path"},
		{"sqlite:///var/lib/", "no file path"},
		{"sqlite:", "must start with sqlite://"},
		{"sqlite:leads.db", "must start with sqlite://"},
		{"leads.db", "no scheme"},
		{"data/leads.db", "no scheme"},
		{"host=db user=leadsync password=hunter2", "no scheme"},
		{"postgres:/db", "must start with postgres://"},
		{"postgres://leadsync:hunter2@[::1/db", "not a valid PostgreSQL URL"},
		{"sqlite:///x.db?a=%zz", "bad query"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", tc.in, err, tc.msg)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q): the message shows the password: %v", tc.in, err)
		}
	}
}

// The DSN opens the file the URL names, whatever its name, with the URL's driver parameters
// and leadsync's own.
func TestSQLiteDSN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "a b#c%41:d.db")
	u, err := Parse("sqlite://" + path + "?_cache_size=-1234")
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := u.SQLiteDSN(url.Values{"_journal_mode": {"WAL"}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var cache int
	if err := db.QueryRow(`SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT cache_size FROM pragma_cache_size)`).Scan(&mode, &cache); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || cache != -1234 {
		t.Errorf("journal_mode %s, cache_size %d; want wal, -1234", mode, cache)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at %s: %v (dsn %s)", path, err, dsn)
	}

	for _, q := range []string{"_journal=DELETE", "_journal_mode=DELETE"} {
		u, _ := Parse("sqlite://" + path + "?" + q)
		if _, err := u.SQLiteDSN(url.Values{"_journal_mode": {"WAL"}}); err == nil || !strings.Contains(err.Error(), "leadsync sets _journal_mode itself") {
			t.Errorf("?%s against leadsync's _journal_mode: %v", q, err)
		}
	}
	if _, err := (URL{Dialect: Postgres, Conn: "postgres://h/db"}).SQLiteDSN(nil); err == nil {
		t.Error("SQLiteDSN of a PostgreSQL URL succeeded")
	}
}

// A relative path is relative to the working directory.
func TestSQLiteDSNRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // rules out t.Parallel
	for _, rel := range []string{"data/rel.db", ":colon.db"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o700); err != nil {
			t.Fatal(err)
		}
		u, err := Parse("sqlite://" + rel)
		if err != nil {
			t.Fatal(err)
		}
		dsn, err := u.SQLiteDSN(nil)
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite3", dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE t (x)`); err != nil {
			t.Fatalf("%s (dsn %s): %v", rel, dsn, err)
		}
		db.Close()
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			t.Errorf("sqlite://%s is not at %s: %v", rel, filepath.Join(dir, rel), err)
		}
	}
}
