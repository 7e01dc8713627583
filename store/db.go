package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "github.com/mattn/go-sqlite3"    // database/sql driver "sqlite3"
)

//go:embed migrations
var migrationFS embed.FS

type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// db is the store's database: one of the two dialects, with the write lock each uses.
type db struct {
	sql     *sql.DB
	dialect dialect
	schema  string // PostgreSQL schema holding the tables
	path    string // SQLite file
	// writers serializes this process's SQLite write transactions, so only other processes
	// ever wait in SQLite's polling busy handler.
	writers     chan struct{}
	lockTimeout time.Duration
	replacer    *strings.Replacer
	// writeFault, set only by tests, fails every commit with its error, as a full disk or
	// an unreachable server would.
	writeFault atomic.Pointer[error]
}

// commit commits tx unless a test made the store unwritable.
func (d *db) commit(tx *sql.Tx) error {
	if err := d.writeFault.Load(); err != nil {
		_ = tx.Rollback()
		return *err
	}
	return tx.Commit()
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// openDB parses a store URL: sqlite:///abs/path, sqlite:rel/path, a bare path, or
// postgres://... / postgresql://...
func openDB(ctx context.Context, rawURL, schema string, lockTimeout time.Duration) (*db, error) {
	d := &db{lockTimeout: lockTimeout}
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		d.dialect = dialectPostgres
		if !schemaName.MatchString(schema) {
			return nil, fmt.Errorf("store: invalid PostgreSQL schema name %q", schema)
		}
		d.schema = schema
		conn, err := sql.Open("pgx", rawURL)
		if err != nil {
			return nil, fmt.Errorf("store: open postgres: %w", err)
		}
		// A refresh holds a connection for the token call; keep a few for other grants.
		conn.SetMaxOpenConns(8)
		conn.SetMaxIdleConns(4)
		conn.SetConnMaxIdleTime(5 * time.Minute)
		d.sql = conn
		q := `"` + schema + `".`
		d.replacer = strings.NewReplacer("{grants}", q+"grants", "{accounts}", q+"account_tokens",
			"{meta}", q+"store_meta", "{migrations}", q+"schema_migrations")
	default:
		path := rawURL
		switch {
		case strings.HasPrefix(path, "sqlite://"):
			path = strings.TrimPrefix(path, "sqlite://")
		case strings.HasPrefix(path, "sqlite:"):
			path = strings.TrimPrefix(path, "sqlite:")
		case strings.Contains(path, "://"):
			return nil, fmt.Errorf("store: unsupported token store URL scheme in %q (want sqlite: or postgres://)", redactURL(rawURL))
		}
		if path == "" {
			return nil, errors.New("store: empty SQLite path")
		}
		if err := createPrivateFile(path); err != nil {
			return nil, err
		}
		d.dialect, d.path = dialectSQLite, path
		d.writers = make(chan struct{}, 1)
		v := url.Values{}
		v.Set("_busy_timeout", strconv.FormatInt(lockTimeout.Milliseconds(), 10))
		v.Set("_journal_mode", "WAL")
		v.Set("_synchronous", "FULL")
		v.Set("_txlock", "immediate") // every transaction takes the write lock up front
		dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
		conn, err := sql.Open("sqlite3", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		conn.SetMaxOpenConns(4)
		d.sql = conn
		d.replacer = strings.NewReplacer("{grants}", "grants", "{accounts}", "account_tokens",
			"{meta}", "store_meta", "{migrations}", "schema_migrations")
	}
	if err := d.sql.PingContext(ctx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("store: connect %s: %w", d.dialect, err)
	}
	if err := d.migrate(ctx); err != nil {
		d.sql.Close()
		return nil, err
	}
	return d, nil
}

// createPrivateFile makes sure the SQLite file exists with mode 0600 before SQLite opens
// it: SQLite gives its -wal and -shm files the database file's mode.
func createPrivateFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: stat %s: %w", path, err)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("store: chmod 600 %s: %w", path, err)
		}
	}
	return nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// q rewrites a query for the dialect: table names, and ? placeholders to $n for PostgreSQL.
func (d *db) q(query string) string {
	query = d.replacer.Replace(query)
	if d.dialect != dialectPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// begin starts a write transaction that holds the store's write lock (SQLite: BEGIN
// IMMEDIATE, waiting up to busy_timeout for another process; PostgreSQL: row locks taken
// with FOR UPDATE wait up to lock_timeout). ctx must not be a caller's context that may be
// cancelled after a token rotated: database/sql rolls a transaction back when its context ends.
func (d *db) begin(ctx context.Context) (*sql.Tx, func(), error) {
	release := func() {}
	if d.writers != nil {
		t := time.NewTimer(d.lockTimeout)
		defer t.Stop()
		select {
		case d.writers <- struct{}{}:
			release = func() { <-d.writers }
		case <-t.C:
			return nil, nil, fmt.Errorf("store: waited %s for the token store write lock: %w", d.lockTimeout, ErrLockTimeout)
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		release()
		if isBusy(err) {
			return nil, nil, fmt.Errorf("store: waited %s for the token store write lock: %w", d.lockTimeout, ErrLockTimeout)
		}
		return nil, nil, fmt.Errorf("store: begin: %w", err)
	}
	if d.dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", d.lockTimeout.Milliseconds())); err != nil {
			_ = tx.Rollback()
			release()
			return nil, nil, fmt.Errorf("store: set lock_timeout: %w", err)
		}
	}
	return tx, release, nil
}

// ErrLockTimeout means another refresher held the grant's lock for longer than LockTimeout.
var ErrLockTimeout = errors.New("token store lock timeout")

func isBusy(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	// SQLite: "database is locked" (SQLITE_BUSY); PostgreSQL: lock_not_available (55P03).
	return strings.Contains(s, "database is locked") || strings.Contains(s, "SQLSTATE 55P03") ||
		strings.Contains(s, "lock timeout")
}

func (d *db) lockErr(err error) error {
	if isBusy(err) {
		return fmt.Errorf("store: waited %s for the token store lock: %w", d.lockTimeout, ErrLockTimeout)
	}
	return err
}

// migrate applies the embedded migrations not yet recorded, under a lock so processes
// opening the store together apply each one once.
func (d *db) migrate(ctx context.Context) error {
	dir := "migrations/" + d.dialect.String()
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })

	tx, release, err := d.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	if d.dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "leadsync_tokens_migrate:"+d.schema); err != nil {
			return fmt.Errorf("store: migrate lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS "`+d.schema+`"`); err != nil {
			return fmt.Errorf("store: create schema %s: %w", d.schema, err)
		}
		if _, err := tx.ExecContext(ctx, `SET LOCAL search_path TO "`+d.schema+`"`); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.q(`CREATE TABLE IF NOT EXISTS {migrations} (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)`)); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := tx.QueryContext(ctx, d.q(`SELECT version FROM {migrations}`))
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("store: migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	for _, e := range entries {
		name := e.Name()
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil || !strings.HasSuffix(name, ".sql") {
			return fmt.Errorf("store: bad migration name %s", name)
		}
		if applied[v] {
			continue
		}
		body, err := migrationFS.ReadFile(dir + "/" + name)
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO {migrations} (version, applied_at_ms) VALUES (?, ?)`), v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}
