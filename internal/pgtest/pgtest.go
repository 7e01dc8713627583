// Package pgtest gives each PostgreSQL test its own schema on the test server. The server
// comes from $LEADSYNC_TEST_POSTGRES (default: the local trust-auth server, database test).
// Unreachable server: the test is skipped loudly, except under CI=true where it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the local test server.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test server's URL.
func URL() string {
	if u := os.Getenv("LEADSYNC_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema creates a fresh schema for t, dropped when t ends, and returns a URL whose
// search_path selects it, along with the schema's name.
func Schema(t testing.TB) (dsn, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		Unreachable(t, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = "t_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, URL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	return WithSearchPath(URL(), schema), schema
}

// WithSearchPath returns dsn with search_path set to schema.
func WithSearchPath(dsn, schema string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Unreachable skips (locally) or fails (CI=true) a test that cannot reach PostgreSQL.
func Unreachable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("pgtest: PostgreSQL unreachable at %s under CI: %v", redact(URL()), err)
	}
	t.Skipf("\n\n*** SKIPPING PostgreSQL test: server unreachable at %s: %v ***\n*** start it: pg_ctlcluster --skip-systemctl-redirect 15 main start ***\n", redact(URL()), err)
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
