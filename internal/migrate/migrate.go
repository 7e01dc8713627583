// Package migrate applies a component's embedded, versioned schema migrations with goose
// (the warehouse's and the token store's), one process at a time, and refuses a database
// that a newer leadsync migrated further than this binary knows.
//
// Each component has its own goose version table (sink_migrations, store_migrations), so
// two components may share a PostgreSQL database. A version table written by the runner
// leadsync used before goose (Config.Legacy) is adopted: the first Apply that finds the
// goose table without any version records the old table's versions in it, in one
// transaction, and leaves the old table as it was. Nothing is re-run.
package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/ops"
)

// Mode says what Prepare does about the schema version.
type Mode int

const (
	// Apply applies pending migrations (and refuses a newer schema).
	Apply Mode = iota
	// Check changes nothing and refuses a schema that is behind (Config.Outdated) or ahead.
	// A legacy version table not yet adopted counts as behind.
	Check
	// None checks nothing (migration status).
	None
)

// startExtension is how far ahead of now systemd's start timeout is kept while migrating
// (renewed every third of it): past the last renewal, the start has this long to finish.
const startExtension = 60 * time.Second

// Config describes one component's migrations.
type Config struct {
	// Name starts every message: "sink", "store".
	Name    string
	Dialect dburl.Dialect
	// FS holds this dialect's goose SQL migrations (NNN_name.sql, with -- +goose Up).
	FS fs.FS
	// Table is the goose version table; on PostgreSQL it may be schema-qualified.
	Table string
	// Schema (PostgreSQL) is created if missing, under the lock, before anything is migrated.
	Schema string
	// LockKey (PostgreSQL) is a text SQL expression: migrating holds the session advisory
	// lock hashtext(LockKey), so processes opening the database together migrate once.
	LockKey string
	// LockFile (SQLite) is flocked while migrating, for the same reason. Empty: no lock
	// (an in-memory database).
	LockFile string
	// Legacy, if set, is the version table (a version INTEGER column) of the runner before
	// goose: see the package doc.
	Legacy string
	// TooNew and Outdated are the errors Prepare wraps when the schema is ahead of this
	// binary, or behind it in Check mode. Default: generic ones.
	TooNew, Outdated error
	// Logger gets a line per migration applied. Default slog.Default().
	Logger *slog.Logger
}

// Migrator runs one component's migrations on one database.
type Migrator struct {
	// Goose is the provider, for what Prepare and Status do not cover (tests migrate part way).
	Goose    *goose.Provider
	cfg      Config
	db       *sql.DB
	dbx      *sqlx.DB
	versions database.Store
}

// New loads cfg's migrations for db.
func New(db *sql.DB, cfg Config) (*Migrator, error) {
	gd, driverName := goose.DialectSQLite3, "sqlite3"
	if cfg.Dialect == dburl.Postgres {
		gd, driverName = goose.DialectPostgres, "pgx"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TooNew == nil {
		cfg.TooNew = errors.New("database schema is newer than this leadsync supports; upgrade leadsync")
	}
	if cfg.Outdated == nil {
		cfg.Outdated = errors.New("database schema is out of date; run `leadsync migrate`")
	}
	p, err := goose.NewProvider(gd, db, cfg.FS, goose.WithTableName(cfg.Table), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("%s: load %s migrations: %w", cfg.Name, cfg.Dialect, err)
	}
	versions, err := database.NewStore(gd, cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("%s: migrations: %w", cfg.Name, err)
	}
	return &Migrator{Goose: p, cfg: cfg, db: db, dbx: sqlx.NewDb(db, driverName), versions: versions}, nil
}

// Latest is the highest version this binary embeds.
func (m *Migrator) Latest() int64 {
	srcs := m.Goose.ListSources()
	if len(srcs) == 0 {
		return 0
	}
	return srcs[len(srcs)-1].Version
}

// Prepare checks the schema version and, in Apply mode, migrates: the legacy table adopted
// (once), then the pending migrations applied. Work is done under the lock, after reading
// the state again; a database already up to date takes no lock.
func (m *Migrator) Prepare(ctx context.Context, mode Mode) error {
	if mode == None {
		return nil
	}
	st, err := m.read(ctx)
	if err != nil {
		return err
	}
	if done, err := m.judge(st, mode); done {
		return err
	}
	// Migrations run before READY=1 and may outlast the unit's TimeoutStartSec=, and so may
	// the wait for another process's: systemd is asked for more time until they are over.
	defer ops.Extending(startExtension)()
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.createSchema(ctx); err != nil {
		return err
	}
	if st, err = m.read(ctx); err != nil {
		return err
	}
	if done, err := m.judge(st, mode); done {
		return err
	}
	if len(st.legacy) > 0 {
		if err := m.adopt(ctx, st); err != nil {
			return err
		}
		if st, err = m.read(ctx); err != nil {
			return err
		}
		if done, err := m.judge(st, mode); done {
			return err
		}
	}
	res, err := m.Goose.Up(ctx)
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", m.cfg.Name, err)
	}
	for _, r := range res {
		m.cfg.Logger.Info(m.cfg.Name+": applied migration", slog.Int64("version", r.Source.Version),
			slog.String("file", path.Base(r.Source.Path)), slog.Duration("took", r.Duration))
	}
	return nil
}

// createSchema creates Config.Schema if it is missing. Looked up first: CREATE SCHEMA IF NOT
// EXISTS needs the CREATE privilege on the database even when the schema exists, and a
// DBA may have created it for a role without that privilege.
func (m *Migrator) createSchema(ctx context.Context) error {
	if m.cfg.Schema == "" {
		return nil
	}
	var exists bool
	if err := m.dbx.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, m.cfg.Schema); err != nil {
		return fmt.Errorf("%s: look up schema %s: %w", m.cfg.Name, m.cfg.Schema, err)
	}
	if exists {
		return nil
	}
	if _, err := m.db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS "`+m.cfg.Schema+`"`); err != nil {
		return fmt.Errorf("%s: create schema %s: %w", m.cfg.Name, m.cfg.Schema, err)
	}
	return nil
}

// state is what the database records.
type state struct {
	table   bool  // the goose table exists
	version int64 // its highest version (0 without it)
	// legacy lists the legacy table's versions while the goose table records none.
	legacy []int64
}

// current is the version the database is at, counting a legacy table not yet adopted.
func (st state) current() int64 {
	if len(st.legacy) > 0 {
		return max(st.version, slices.Max(st.legacy))
	}
	return st.version
}

// judge says whether the state settles Prepare (done) and with what error.
func (m *Migrator) judge(st state, mode Mode) (done bool, err error) {
	cur, latest := st.current(), m.Latest()
	switch {
	case cur > latest:
		return true, fmt.Errorf("%s: schema version %d, this leadsync knows up to %d: %w", m.cfg.Name, cur, latest, m.cfg.TooNew)
	case mode == Check && len(st.legacy) > 0:
		return true, fmt.Errorf("%s: schema versions recorded by an earlier leadsync, not yet adopted: %w", m.cfg.Name, m.cfg.Outdated)
	case len(st.legacy) > 0:
		return false, nil
	case cur == latest:
		return true, nil
	case mode == Check:
		return true, fmt.Errorf("%s: schema version %d, want %d: %w", m.cfg.Name, cur, latest, m.cfg.Outdated)
	}
	return false, nil
}

func (m *Migrator) read(ctx context.Context) (state, error) {
	var st state
	var err error
	if st.table, err = m.tableExists(ctx, m.cfg.Table); err != nil {
		return st, err
	}
	if st.table {
		if err := m.dbx.GetContext(ctx, &st.version, `SELECT coalesce(max(version_id), 0) FROM `+m.cfg.Table); err != nil {
			return st, fmt.Errorf("%s: read schema version: %w", m.cfg.Name, err)
		}
	}
	if st.version > 0 || m.cfg.Legacy == "" {
		return st, nil
	}
	legacy, err := m.tableExists(ctx, m.cfg.Legacy)
	if err != nil || !legacy {
		return st, err
	}
	if err := m.dbx.SelectContext(ctx, &st.legacy, `SELECT version FROM `+m.cfg.Legacy+` WHERE version > 0 ORDER BY version`); err != nil {
		return st, fmt.Errorf("%s: read the earlier schema versions: %w", m.cfg.Name, err)
	}
	return st, nil
}

// tableExists looks table up the way the queries on it resolve it (PostgreSQL: a
// qualified name, or the search_path).
func (m *Migrator) tableExists(ctx context.Context, table string) (bool, error) {
	var ok bool
	q := `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?`
	if m.cfg.Dialect == dburl.Postgres {
		q = `SELECT to_regclass(?) IS NOT NULL`
	}
	if err := m.dbx.GetContext(ctx, &ok, m.dbx.Rebind(q), table); err != nil {
		return false, fmt.Errorf("%s: look up table %s: %w", m.cfg.Name, table, err)
	}
	return ok, nil
}

// adopt records the legacy versions in the goose table, creating it as goose would.
func (m *Migrator) adopt(ctx context.Context, st state) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: adopt schema versions: %w", m.cfg.Name, err)
	}
	defer func() { _ = tx.Rollback() }()
	if !st.table {
		if err := m.versions.CreateVersionTable(ctx, tx); err != nil {
			return fmt.Errorf("%s: create %s: %w", m.cfg.Name, m.cfg.Table, err)
		}
		if err := m.versions.Insert(ctx, tx, database.InsertRequest{Version: 0}); err != nil {
			return fmt.Errorf("%s: adopt schema versions: %w", m.cfg.Name, err)
		}
	}
	for _, v := range st.legacy {
		if err := m.versions.Insert(ctx, tx, database.InsertRequest{Version: v}); err != nil {
			return fmt.Errorf("%s: adopt schema version %d: %w", m.cfg.Name, v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: adopt schema versions: %w", m.cfg.Name, err)
	}
	m.cfg.Logger.Info(m.cfg.Name+": recorded the schema versions of an earlier leadsync in "+m.cfg.Table,
		slog.String("from", m.cfg.Legacy), slog.Any("versions", st.legacy))
	return nil
}

// LockFile is the lock file (Config.LockFile) of the SQLite database at path: next to the
// file the path resolves to, so every path to one database takes the same lock. None for an
// in-memory database.
func LockFile(path string) string {
	if path == ":memory:" {
		return ""
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return path + ".migrate.lock"
}

// lockPoll is how often a process waiting for another's SQLite migration tries the lock.
const lockPoll = 20 * time.Millisecond

// lock takes the migration lock and returns its release.
func (m *Migrator) lock(ctx context.Context) (unlock func(), err error) {
	if m.cfg.Dialect == dburl.Postgres {
		return m.lockPostgres(ctx)
	}
	if m.cfg.LockFile == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(m.cfg.LockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: migration lock: %w", m.cfg.Name, err)
	}
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%s: migration lock %s: %w", m.cfg.Name, m.cfg.LockFile, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s: waiting for another process's migration (%s): %w", m.cfg.Name, m.cfg.LockFile, ctx.Err())
		case <-t.C:
		}
	}
	return func() { f.Close() }, nil // closing the file frees the flock
}

func (m *Migrator) lockPostgres(ctx context.Context) (func(), error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: migration lock: %w", m.cfg.Name, err)
	}
	key := `hashtext(` + m.cfg.LockKey + `)`
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: migration lock: %w", m.cfg.Name, err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock(`+key+`)`); err != nil {
			// A session that cannot unlock is dropped: ending it frees the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// State is one migration as `leadsync migrate --status` shows it.
type State struct {
	Version int64
	// Name is the migration's file name; "(unknown)" for a version applied by a newer
	// leadsync that this binary does not embed.
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when pending
}

// Status lists the embedded migrations and whether each is applied, plus the database's
// version when a newer leadsync went further.
func (m *Migrator) Status(ctx context.Context) ([]State, error) {
	st, err := m.Goose.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: migration status: %w", m.cfg.Name, err)
	}
	out := make([]State, 0, len(st)+1)
	for _, s := range st {
		out = append(out, State{
			Version:   s.Source.Version,
			Name:      path.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt.UTC(),
		})
	}
	cur, err := m.Goose.GetDBVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: read schema version: %w", m.cfg.Name, err)
	}
	if cur > m.Latest() {
		out = append(out, State{Version: cur, Name: "(unknown)", Applied: true})
	}
	return out, nil
}
