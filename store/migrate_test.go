package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/store"
)

// Several processes creating a new store together (the PostgreSQL schema too) migrate it
// once, and none fails.
func TestConcurrentOpenOfANewStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		url, opts, raw, files := b.newDB(t)
		if b.name == "postgres" {
			opts.PostgresSchema += "_new" // one the store creates
			t.Cleanup(func() { _, _ = raw.Exec(`DROP SCHEMA IF EXISTS ` + opts.PostgresSchema + ` CASCADE`) })
		}
		opts.Key = newKey(t)
		openAtOnce(t, url, opts, 5)
		rw := writable(t, b, raw, files)
		table := "store_migrations"
		if b.name == "postgres" {
			table = opts.PostgresSchema + "." + table
		}
		if got := versionsOf(t, rw, table, "version_id"); !slices.Equal(got, allVersions) {
			t.Errorf("goose versions %v, want %v", got, allVersions)
		}
	})
}

// A token store migrated by a newer leadsync is refused with a clear error, whichever
// table recorded the newer version.
func TestNewerSchemaIsRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tb := setup(t, b)
		if err := tb.st.Close(); err != nil {
			t.Fatal(err)
		}
		rw := writable(t, b, tb.raw, tb.files)
		if _, err := rw.Exec(`INSERT INTO store_migrations (version_id, is_applied) VALUES (4, true)`); err != nil {
			t.Fatal(err)
		}
		_, err := store.Open(ctx, tb.url, tb.opts)
		if !errors.Is(err, store.ErrSchemaTooNew) || !strings.Contains(err.Error(), "token store schema is newer") ||
			!strings.Contains(err.Error(), "version 4, this leadsync knows up to 3") {
			t.Errorf("open of a newer store: %v, want ErrSchemaTooNew naming the versions", err)
		}

		url, opts, rw, _ := loadLegacy(t, b)
		if _, err := rw.Exec(`INSERT INTO schema_migrations (version, applied_at_ms) VALUES (4, 0)`); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Open(ctx, url, opts); !errors.Is(err, store.ErrSchemaTooNew) {
			t.Errorf("open of a newer legacy store: %v, want ErrSchemaTooNew", err)
		}
	})
}

// A role that may not create schemas opens a token store in the schema a DBA made for it:
// the store creates its schema only when it is missing.
func TestPostgresSchemaMadeByADBA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	role := "t_store_" + hex.EncodeToString(rnd)
	if _, err := admin.Exec(`CREATE ROLE ` + role + ` LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP OWNED BY ` + role)
		_, _ = admin.Exec(`DROP ROLE ` + role)
	})
	if _, err := admin.Exec(`GRANT USAGE, CREATE ON SCHEMA ` + schema + ` TO ` + role); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	st, err := store.Open(ctx, u.String(), store.Options{Key: newKey(t), PostgresSchema: schema})
	if err != nil {
		t.Fatalf("open as %s, who may not create schemas: %v", role, err)
	}
	defer st.Close()
	if err := st.Save(ctx, conn, &oauth2.Token{AccessToken: "a", RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
}
