package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // also registers the database/sql driver "pgx"
	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3" // also the database/sql driver "sqlite3"

	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/migrate"
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

// Version tables: goose's, and the one of the runner before it (version, applied_at_ms),
// adopted by the first Open (see internal/migrate).
const (
	versionTable = "store_migrations"
	legacyTable  = "schema_migrations"
)

// ErrSchemaTooNew means the token store was migrated by a newer leadsync: this binary does
// not know its schema and refuses to touch it.
var ErrSchemaTooNew = errors.New("token store schema is newer than this leadsync supports; upgrade leadsync")

// openDB opens the token store at rawURL (the grammar of internal/dburl) and migrates it.
func openDB(ctx context.Context, rawURL, schema string, lockTimeout time.Duration, log *slog.Logger) (*db, error) {
	u, err := dburl.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: token store URL: %w", err)
	}
	d := &db{lockTimeout: lockTimeout}
	mc := migrate.Config{Name: "store", Dialect: u.Dialect, Table: versionTable, Legacy: legacyTable,
		TooNew: ErrSchemaTooNew, Logger: log}
	switch u.Dialect {
	case dburl.Postgres:
		d.dialect = dialectPostgres
		if !schemaName.MatchString(schema) {
			return nil, fmt.Errorf("store: invalid PostgreSQL schema name %q", schema)
		}
		d.schema = schema
		cfg, err := pgx.ParseConfig(u.Conn)
		if err != nil {
			// pgx's message may quote the URL, password included.
			return nil, errors.New("store: invalid PostgreSQL URL")
		}
		// Every session works in the store's schema: the migrations name their tables
		// unqualified (the queries qualify them anyway).
		cfg.RuntimeParams["search_path"] = `"` + schema + `"`
		conn := stdlib.OpenDB(*cfg)
		// A refresh holds a connection for the token call; keep a few for other grants.
		conn.SetMaxOpenConns(8)
		conn.SetMaxIdleConns(4)
		conn.SetConnMaxIdleTime(5 * time.Minute)
		d.sql = conn
		q := `"` + schema + `".`
		d.replacer = strings.NewReplacer("{grants}", q+"grants", "{accounts}", q+"account_tokens", "{meta}", q+"store_meta", "{static}", q+"static_rejections")
		mc.Table, mc.Legacy = schema+"."+versionTable, schema+"."+legacyTable
		mc.Schema = schema
		// The key of the runner before goose (a transaction lock): an older leadsync opening
		// the store meanwhile waits for this one.
		mc.LockKey = `'leadsync_tokens_migrate:` + schema + `'`
	default:
		if err := createPrivateFile(u.Path); err != nil {
			return nil, err
		}
		d.dialect, d.path = dialectSQLite, u.Path
		d.writers = make(chan struct{}, 1)
		v := url.Values{}
		v.Set("_busy_timeout", strconv.FormatInt(lockTimeout.Milliseconds(), 10))
		// No _journal_mode here: switching a new file to WAL needs an exclusive lock, which
		// SQLite refuses at once (without its busy handler) while another process opens the
		// same new store. enableWAL switches once, waiting its turn.
		v.Set("_synchronous", "FULL")
		v.Set("_txlock", "immediate") // every transaction takes the write lock up front
		dsn, err := u.SQLiteDSN(v)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		conn, err := sql.Open("sqlite3", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		conn.SetMaxOpenConns(4)
		d.sql = conn
		d.replacer = strings.NewReplacer("{grants}", "grants", "{accounts}", "account_tokens", "{meta}", "store_meta", "{static}", "static_rejections")
		mc.LockFile = migrate.LockFile(u.Path) // after createPrivateFile: the path resolves
	}
	if err := d.sql.PingContext(ctx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("store: connect %s: %w", d.dialect, err)
	}
	if d.dialect == dialectSQLite {
		if err := enableWAL(ctx, d.sql, lockTimeout); err != nil {
			d.sql.Close()
			return nil, fmt.Errorf("store: connect sqlite: %w", err)
		}
	}
	if mc.FS, err = fs.Sub(migrationFS, "migrations/"+d.dialect.String()); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	m, err := migrate.New(d.sql, mc)
	if err == nil {
		err = m.Prepare(ctx, migrate.Apply)
	}
	if err != nil {
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

// enableWAL puts the SQLite file in WAL mode (persistent: a no-op once done), retrying while
// another connection holds the lock the switch needs, for up to timeout.
func enableWAL(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode=WAL`).Scan(&mode)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || (se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked) ||
			time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// q rewrites a query for the dialect: table names, and ? placeholders to $n for PostgreSQL.
func (d *db) q(query string) string {
	query = d.replacer.Replace(query)
	if d.dialect != dialectPostgres {
		return query
	}
	return sqlx.Rebind(sqlx.DOLLAR, query)
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
