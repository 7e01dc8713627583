package sink

import (
	"context"
	"database/sql"
	"embed"
	"io/fs"
	"log/slog"

	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/migrate"
)

// The schema per dialect, versioned by goose. Never edit a released migration: add one.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// versionTable records applied migrations (goose's table, under a name that says whose).
const versionTable = "sink_migrations"

// MigrationState is one migration as `leadsync migrate --status` shows it.
type MigrationState = migrate.State

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
	return w.base().migrations.Status(ctx)
}

// migrateMode says what open does about the schema version.
type migrateMode = migrate.Mode

const (
	modeMigrate = migrate.Apply // apply pending migrations (refuse a newer schema)
	modeCheck   = migrate.Check // refuse a schema that is behind or ahead
	modeNone    = migrate.None  // touch nothing (migration status)
)

// newMigrations loads the dialect's migrations for db; lockFile: see migrate.Config.
func newMigrations(dialect string, db *sql.DB, lockFile string, log *slog.Logger) (*migrate.Migrator, error) {
	sub, err := fs.Sub(migrationFS, "migrations/"+dialect)
	if err != nil {
		return nil, err
	}
	return migrate.New(db, migrate.Config{
		Name:     "sink",
		Dialect:  dburl.Dialect(dialect),
		FS:       sub,
		Table:    versionTable,
		LockKey:  `'leadsync.sink.' || current_schema()`,
		LockFile: lockFile,
		TooNew:   ErrSchemaTooNew,
		Outdated: ErrSchemaOutdated,
		Logger:   log,
	})
}
