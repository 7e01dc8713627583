package store_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/store"
)

// The legacy fixture is a token store as today's main (commit 6516ecd) leaves it, dumped
// from the database that code created: its hand-written runner's schema_migrations table,
// migrations 001 and 002, two grants and a minted account token, sealed with legacyKey.
// testdata/legacy-6516ecd/generate is the program that made it.
const (
	legacyKey    = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	legacySchema = "legacy_fixture" // the fixture's PostgreSQL schema, renamed to the test's
)

// legacyClock is the fixture's "now": legacy-valid's token is fresh, legacy-expired's is not.
var legacyClock = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// writable returns a read-write handle on b's database (the backend's own is read-only on
// SQLite).
func writable(t *testing.T, b backend, raw *sql.DB, files []string) *sql.DB {
	t.Helper()
	if b.name != "sqlite" {
		return raw
	}
	if err := os.MkdirAll(filepath.Dir(files[0]), 0o700); err != nil {
		t.Fatal(err)
	}
	// WAL, as every store the code has ever written is (the mode is the file's).
	rw, err := sql.Open("sqlite3", "file:"+files[0]+"?_busy_timeout=5000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rw.Close() })
	return rw
}

// psqlOnly matches what pg_dump writes for psql and its session rather than the data: meta
// commands, settings, and the schema (the test's exists).
var psqlOnly = regexp.MustCompile(`(?m)^(\\.*|SET .*|SELECT pg_catalog\.set_config\(.*|CREATE SCHEMA .*)$`)

// loadLegacy fills b's empty database with the legacy fixture and returns the store's
// options for it (the fixture's key and clock, a log buffer).
func loadLegacy(t *testing.T, b backend) (url string, opts store.Options, rw *sql.DB, logs *syncBuffer) {
	t.Helper()
	url, opts, raw, files := b.newDB(t)
	rw = writable(t, b, raw, files)
	dump, err := os.ReadFile(filepath.Join("testdata", "legacy-6516ecd", b.name+".sql"))
	if err != nil {
		t.Fatal(err)
	}
	q := string(dump)
	if b.name == "postgres" {
		q = psqlOnly.ReplaceAllString(q, "")
		q = strings.ReplaceAll(q, legacySchema+".", opts.PostgresSchema+".")
	}
	if _, err := rw.Exec(q); err != nil {
		t.Fatalf("load the legacy fixture: %v", err)
	}
	key, _ := hex.DecodeString(legacyKey)
	logs = &syncBuffer{}
	opts.Key = key
	opts.Clock = func() time.Time { return legacyClock }
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return url, opts, rw, logs
}

// legacyRefresher is the vendor of the fixture's grants: it takes legacy-expired's refresh
// token once.
type legacyRefresher struct{ calls atomic.Int32 }

func (r *legacyRefresher) Refresh(_ context.Context, rt string) (*oauth2.Token, error) {
	r.calls.Add(1)
	if rt != "legacy-refresh-expired" {
		return nil, &oauth2.RetrieveError{ErrorCode: "invalid_grant"}
	}
	return &oauth2.Token{AccessToken: "fresh-access", RefreshToken: "fresh-refresh", TokenType: "Bearer",
		Expiry: legacyClock.Add(time.Hour)}, nil
}

func noMint(context.Context) (*oauth2.Token, error) {
	return nil, errors.New("the minted token was lost")
}

// allVersions are goose's version rows of a store migrated to this binary's schema (0 is
// goose's own).
var allVersions = []int64{0, 1, 2, 3}

func versionsOf(t *testing.T, db *sql.DB, table, column string) []int64 {
	t.Helper()
	rows, err := db.Query(`SELECT ` + column + ` FROM ` + table + ` ORDER BY ` + column)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// A token store written by today's main opens with the goose-based code: its versions are
// adopted, nothing is re-run or lost, and every stored grant and minted token still works,
// a refresh included.
func TestLegacyStoreUpgradesInPlace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		url, opts, rw, logs := loadLegacy(t, b)
		st, err := store.Open(ctx, url, opts)
		if err != nil {
			t.Fatalf("open the legacy store: %v", err)
		}
		defer st.Close()
		if got := versionsOf(t, rw, "store_migrations", "version_id"); !slices.Equal(got, allVersions) {
			t.Errorf("goose versions %v, want %v", got, allVersions)
		}
		if got := versionsOf(t, rw, "schema_migrations", "version"); len(got) != 2 {
			t.Errorf("the old runner's table now holds %v, want it untouched ([1 2])", got)
		}
		if !strings.Contains(logs.String(), "recorded the schema versions of an earlier leadsync") {
			t.Errorf("the adoption is not logged:\n%s", logs)
		}

		r := &legacyRefresher{}
		if tok := mustToken(t, st.Tokens("legacy-valid", r).Grant()); tok.AccessToken != "legacy-access-valid" || tok.Extra("userId") != "u-legacy" {
			t.Errorf("legacy-valid: access %q, userId %v", tok.AccessToken, tok.Extra("userId"))
		}
		if tok := mustToken(t, st.Tokens("legacy-valid", r).Account("loc-1", noMint)); tok.AccessToken != "legacy-account-token" {
			t.Errorf("the minted account token: %q", tok.AccessToken)
		}
		if tok := mustToken(t, st.Tokens("legacy-expired", r).Grant()); tok.AccessToken != "fresh-access" || r.calls.Load() != 1 {
			t.Errorf("legacy-expired: access %q after %d refreshes, want fresh-access after 1", tok.AccessToken, r.calls.Load())
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}

		// The next start finds an adopted store: the rotated pair was kept.
		next, err := store.Open(ctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer next.Close()
		if tok := mustToken(t, next.Tokens("legacy-expired", r).Grant()); tok.AccessToken != "fresh-access" || r.calls.Load() != 1 {
			t.Errorf("after a restart legacy-expired has %q after %d refreshes", tok.AccessToken, r.calls.Load())
		}
		if got := versionsOf(t, rw, "store_migrations", "version_id"); !slices.Equal(got, allVersions) {
			t.Errorf("goose versions %v after a restart, want %v", got, allVersions)
		}
	})
}

// Several processes starting together on a legacy store adopt it once.
func TestLegacyStoreConcurrentOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		url, opts, rw, _ := loadLegacy(t, b)
		openAtOnce(t, url, opts, 5)
		if got := versionsOf(t, rw, "store_migrations", "version_id"); !slices.Equal(got, allVersions) {
			t.Errorf("goose versions %v, want %v", got, allVersions)
		}
	})
}

func openAtOnce(t *testing.T, url string, opts store.Options, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			st, err := store.Open(context.Background(), url, opts)
			if err == nil {
				err = st.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
}
