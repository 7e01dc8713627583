package sink

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/pressly/goose/v3"
)

// The schema per dialect, versioned by goose. Never edit a released migration: add one.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// versionTable records applied migrations (goose's table, under a name that says whose).
const versionTable = "sink_migrations"

// MigrationState is one migration as `leadsync migrate --status` shows it.
type MigrationState struct {
	Version int64
	// Name is the migration's file name; "(unknown)" for a version applied by a newer
	// leadsync that this binary does not embed.
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when pending
}

// Migrate applies the pending migrations to the warehouse at url. It refuses a database
// migrated by a newer leadsync (ErrSchemaTooNew).
func Migrate(ctx context.Context, url string) error {
	w, err := open(ctx, url, Options{}, modeMigrate)
	if err != nil {
		return err
	}
	return w.Close()
}

// MigrationStatus lists the embedded migrations and whether each is applied to the
// warehouse at url, plus any newer version found in the database.
func MigrationStatus(ctx context.Context, url string) ([]MigrationState, error) {
	w, err := open(ctx, url, Options{}, modeNone)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	c := w.base()
	st, err := c.migrations.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sink: migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(st)+1)
	for _, m := range st {
		out = append(out, MigrationState{
			Version:   m.Source.Version,
			Name:      path.Base(m.Source.Path),
			Applied:   m.State == goose.StateApplied,
			AppliedAt: m.AppliedAt.UTC(),
		})
	}
	cur, err := c.migrations.GetDBVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("sink: read schema version: %w", err)
	}
	if latest := latestVersion(c.migrations); cur > latest {
		out = append(out, MigrationState{Version: cur, Name: "(unknown)", Applied: true})
	}
	return out, nil
}

func newMigrations(dialect string, db *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFS, "migrations/"+dialect)
	if err != nil {
		return nil, err
	}
	gd := goose.DialectSQLite3
	if dialect == DialectPostgres {
		gd = goose.DialectPostgres
	}
	p, err := goose.NewProvider(gd, db, sub,
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("sink: load %s migrations: %w", dialect, err)
	}
	return p, nil
}

func latestVersion(p *goose.Provider) int64 {
	srcs := p.ListSources()
	if len(srcs) == 0 {
		return 0
	}
	return srcs[len(srcs)-1].Version
}

// prepareSchema checks the schema version and, in modeMigrate, applies what is pending.
// Callers serialize it across processes where the database allows (PostgreSQL).
func prepareSchema(ctx context.Context, p *goose.Provider, mode migrateMode, log *slog.Logger) error {
	if mode == modeNone {
		return nil
	}
	cur, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("sink: read schema version: %w", err)
	}
	latest := latestVersion(p)
	switch {
	case cur > latest:
		return fmt.Errorf("sink: schema version %d, this leadsync knows up to %d: %w", cur, latest, ErrSchemaTooNew)
	case cur == latest:
		return nil
	case mode == modeCheck:
		return fmt.Errorf("sink: schema version %d, want %d: %w", cur, latest, ErrSchemaOutdated)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sink: migrate: %w", err)
	}
	for _, r := range res {
		log.Info("sink: applied migration", slog.Int64("version", r.Source.Version),
			slog.String("file", path.Base(r.Source.Path)), slog.Duration("took", r.Duration))
	}
	return nil
}
