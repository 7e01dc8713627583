package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/leadsync/leadsync/internal/dburl"
)

// Options tune Open. The zero value is the default: migrate at open, the real clock, slog's
// default logger.
type Options struct {
	// NoMigrate skips applying pending migrations at open. Open then refuses a database whose
	// schema is behind (ErrSchemaOutdated: run `leadsync migrate`) as well as one ahead.
	NoMigrate bool
	// Logger receives migration and soft-delete notices. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for first_seen_at, last_synced_at and the ledger. Default time.Now.
	Now func() time.Time
	// BusyTimeout is how long SQLite waits for a lock held by another process. Default 10s.
	BusyTimeout time.Duration
	// MaxConns caps the PostgreSQL pool. Default 8.
	MaxConns int32
	// Worker, when set on PostgreSQL, makes this sink one of several workers sharing the
	// warehouse (see Leaser): it names the worker in account leases, and every page commit
	// (and account outcome, full-pass finish) is fenced on this worker holding the account's
	// lease, else it fails with ErrLeaseLost. Empty: a single writer, no fencing.
	Worker string
	// LeaseDuration is how long an account lease lasts without a heartbeat. Default 60s.
	LeaseDuration time.Duration
}

const (
	defaultBusyTimeout = 10 * time.Second
	defaultMaxConns    = 8
)

func (o Options) withDefaults() Options {
	o.Logger = cmp.Or(o.Logger, slog.Default())
	if o.Now == nil {
		o.Now = time.Now
	}
	o.BusyTimeout = cmp.Or(o.BusyTimeout, defaultBusyTimeout)
	o.MaxConns = cmp.Or(o.MaxConns, defaultMaxConns)
	o.LeaseDuration = cmp.Or(o.LeaseDuration, DefaultLeaseDuration)
	return o
}

var (
	// ErrSchemaTooNew means the database was migrated by a newer leadsync: this binary does
	// not know its schema and refuses to touch it.
	ErrSchemaTooNew = errors.New("database schema is newer than this leadsync supports; upgrade leadsync")
	// ErrSchemaOutdated means migrations are pending and Open was told not to apply them.
	ErrSchemaOutdated = errors.New("database schema is out of date; run `leadsync migrate`")
	// ErrUnknownRun is returned for a run id that sync_runs does not hold.
	ErrUnknownRun = errors.New("unknown sync run")
)

// Dialects, as Target.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Target is a parsed warehouse URL.
type Target struct {
	Dialect string
	// DSN is the SQLite file path or the PostgreSQL URL.
	DSN string
}

// ParseURL picks the dialect from a warehouse URL (the grammar of internal/dburl, which
// Open uses): postgres:// or postgresql:// is PostgreSQL; sqlite:///abs/path.db,
// sqlite://path/relative/to/the/working/directory.db or a bare absolute path is SQLite.
func ParseURL(url string) (Target, error) {
	u, err := dburl.Parse(url)
	if err != nil {
		return Target{}, fmt.Errorf("sink: %w", err)
	}
	if u.Dialect == dburl.Postgres {
		return Target{Dialect: DialectPostgres, DSN: u.Conn}, nil
	}
	return Target{Dialect: DialectSQLite, DSN: u.Path}, nil
}

// Open connects to the warehouse at url, applies pending migrations unless opts.NoMigrate,
// and returns a *SQLite or *Postgres.
func Open(ctx context.Context, url string, opts Options) (Sink, error) {
	mode := modeMigrate
	if opts.NoMigrate {
		mode = modeCheck
	}
	w, err := open(ctx, url, opts, mode)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func open(ctx context.Context, url string, opts Options, mode migrateMode) (warehouse, error) {
	u, err := dburl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	opts = opts.withDefaults()
	if u.Dialect == dburl.Postgres {
		p, err := openPostgres(ctx, u.Conn, opts, mode)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return p, nil
	}
	s, err := openSQLite(ctx, u, opts, mode)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// warehouse is what both implementations offer beyond Sink, for this package's own use.
type warehouse interface {
	Sink
	base() *core
}
