package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"

	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/pgtest"
)

var (
	errTooNew   = errors.New("too new")
	errOutdated = errors.New("outdated")
	quiet       = slog.New(slog.DiscardHandler)
)

// migrations are two versions; the first fills a table, so that it takes a while and
// processes that migrate at once overlap.
var migrations = fstest.MapFS{
	"001_a.sql": {Data: []byte(`-- +goose Up
CREATE TABLE a (x INTEGER);
INSERT INTO a (x) WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000) SELECT n FROM c;
`)},
	"002_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (y INTEGER);\n")},
}

// testBundle is one database and the Config that migrates it; open gives another
// process's view of it (a pool of its own).
type testBundle struct {
	cfg  Config
	open func(t *testing.T) *sql.DB
	db   *sql.DB
}

func (tb *testBundle) migrator(t *testing.T, db *sql.DB) *Migrator {
	t.Helper()
	m, err := New(db, tb.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// versions lists the goose table's rows.
func (tb *testBundle) versions(t *testing.T) []int64 {
	t.Helper()
	var vs []int64
	rows, err := tb.db.Query(`SELECT version_id FROM ` + tb.cfg.Table + ` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func (tb *testBundle) exec(t *testing.T, q string) {
	t.Helper()
	if _, err := tb.db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

var dialects = []struct {
	name  string
	setup func(t *testing.T) *testBundle
}{
	{"sqlite", func(t *testing.T) *testBundle {
		path := filepath.Join(t.TempDir(), "x.db")
		tb := &testBundle{cfg: Config{Name: "test", Dialect: dburl.SQLite, FS: migrations, Table: "test_migrations",
			LockFile: path + ".migrate.lock", TooNew: errTooNew, Outdated: errOutdated, Logger: quiet}}
		tb.open = func(t *testing.T) *sql.DB {
			db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000&_journal_mode=WAL&_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
		tb.db = tb.open(t)
		return tb
	}},
	{"postgres", func(t *testing.T) *testBundle {
		dsn, schema := pgtest.Schema(t)
		tb := &testBundle{cfg: Config{Name: "test", Dialect: dburl.Postgres, FS: migrations, Table: schema + ".test_migrations",
			Schema: schema, LockKey: `'leadsync.test.` + schema + `'`, TooNew: errTooNew, Outdated: errOutdated, Logger: quiet}}
		tb.open = func(t *testing.T) *sql.DB {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
		tb.db = tb.open(t)
		return tb
	}},
}

func forEachDialect(t *testing.T, test func(t *testing.T, tb *testBundle)) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			test(t, d.setup(t))
		})
	}
}

func TestModes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		ctx := t.Context()
		m := tb.migrator(t, tb.db)
		if err := m.Prepare(ctx, Check); !errors.Is(err, errOutdated) {
			t.Fatalf("Check of an empty database: %v, want Outdated", err)
		}
		if err := m.Prepare(ctx, None); err != nil {
			t.Fatalf("None: %v", err)
		}
		if ok, err := m.tableExists(ctx, tb.cfg.Table); ok || err != nil {
			t.Fatalf("Check or None created the version table (%v)", err)
		}
		for range 2 {
			if err := m.Prepare(ctx, Apply); err != nil {
				t.Fatalf("Apply: %v", err)
			}
		}
		if vs := tb.versions(t); len(vs) != 3 || vs[2] != 2 {
			t.Fatalf("versions recorded %v, want [0 1 2]", vs)
		}
		tb.exec(t, `INSERT INTO b (y) VALUES (1)`)
		if err := m.Prepare(ctx, Check); err != nil {
			t.Fatalf("Check of a migrated database: %v", err)
		}
		st, err := m.Status(ctx)
		if err != nil || len(st) != 2 || !st[0].Applied || !st[1].Applied || st[1].Name != "002_b.sql" {
			t.Fatalf("Status = %+v, %v", st, err)
		}
	})
}

// A database that is up to date opens without taking the lock: a process that holds it does
// not hold up the processes that have nothing to migrate.
func TestUpToDateTakesNoLock(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		ctx := t.Context()
		if err := tb.migrator(t, tb.db).Prepare(ctx, Apply); err != nil {
			t.Fatal(err)
		}
		holder := tb.migrator(t, tb.open(t))
		unlock, err := holder.lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a failure, not a hang
		defer cancel()
		if err := tb.migrator(t, tb.open(t)).Prepare(ctx, Apply); err != nil {
			t.Fatalf("Apply of an up-to-date database while another process holds the lock: %v", err)
		}
	})
}

func TestRefusesNewerSchema(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		ctx := t.Context()
		m := tb.migrator(t, tb.db)
		if err := m.Prepare(ctx, Apply); err != nil {
			t.Fatal(err)
		}
		tb.exec(t, `INSERT INTO `+tb.cfg.Table+` (version_id, is_applied) VALUES (7, true)`)
		for _, mode := range []Mode{Apply, Check} {
			if err := m.Prepare(ctx, mode); !errors.Is(err, errTooNew) {
				t.Errorf("mode %d on a newer schema: %v, want TooNew", mode, err)
			}
		}
		if err := m.Prepare(ctx, None); err != nil {
			t.Errorf("None on a newer schema: %v", err)
		}
		st, err := m.Status(ctx)
		if err != nil || len(st) != 3 || st[2].Version != 7 || st[2].Name != "(unknown)" {
			t.Errorf("Status of a newer schema = %+v, %v; want version 7 listed as unknown", st, err)
		}
	})
}

// The runner before goose recorded versions in a table of its own: they are recorded in the
// goose table once, nothing is re-run, and only what is missing is applied.
func TestAdoptsLegacyVersions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		ctx := t.Context()
		tb.cfg.Legacy = "legacy_migrations"
		if tb.cfg.Dialect == dburl.Postgres {
			tb.cfg.Legacy = tb.cfg.Schema + ".legacy_migrations"
		}
		tb.exec(t, `CREATE TABLE `+tb.cfg.Legacy+` (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)`)
		tb.exec(t, `INSERT INTO `+tb.cfg.Legacy+` VALUES (1, 1700000000000)`)
		tb.exec(t, `CREATE TABLE a (x INTEGER)`) // what the old runner's 001 left

		m := tb.migrator(t, tb.db)
		if err := m.Prepare(ctx, Check); !errors.Is(err, errOutdated) {
			t.Fatalf("Check before adoption: %v, want Outdated", err)
		}
		if err := m.Prepare(ctx, Apply); err != nil {
			t.Fatalf("Apply: %v (001 re-run?)", err)
		}
		if vs := tb.versions(t); len(vs) != 3 || vs[0] != 0 || vs[1] != 1 || vs[2] != 2 {
			t.Fatalf("versions recorded %v, want [0 1 2]", vs)
		}
		var n int
		if err := tb.db.QueryRow(`SELECT count(*) FROM a`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("001 ran again: table a has %d rows (%v)", n, err)
		}
		tb.exec(t, `INSERT INTO b (y) VALUES (1)`)
		if err := tb.db.QueryRow(`SELECT count(*) FROM ` + tb.cfg.Legacy).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the legacy table changed: %d rows (%v)", n, err)
		}
		// Adopted once: another open finds the goose table and leaves it alone.
		if err := tb.migrator(t, tb.open(t)).Prepare(ctx, Apply); err != nil {
			t.Fatal(err)
		}
		if vs := tb.versions(t); len(vs) != 3 {
			t.Fatalf("versions recorded %v after a second open, want [0 1 2]", vs)
		}
	})
}

// A legacy table that records a version this binary does not know is refused, and not
// adopted.
func TestRefusesNewerLegacySchema(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		tb.cfg.Legacy = "legacy_migrations"
		if tb.cfg.Dialect == dburl.Postgres {
			tb.cfg.Legacy = tb.cfg.Schema + ".legacy_migrations"
		}
		tb.exec(t, `CREATE TABLE `+tb.cfg.Legacy+` (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)`)
		tb.exec(t, `INSERT INTO `+tb.cfg.Legacy+` VALUES (1, 0), (2, 0), (3, 0)`)
		m := tb.migrator(t, tb.db)
		if err := m.Prepare(t.Context(), Apply); !errors.Is(err, errTooNew) {
			t.Fatalf("Apply: %v, want TooNew", err)
		}
		if ok, err := m.tableExists(t.Context(), tb.cfg.Table); ok || err != nil {
			t.Errorf("a refused database got a goose table (%v)", err)
		}
	})
}

// Processes that open a new database together migrate it once, and none fails.
func TestConcurrentApply(t *testing.T) {
	forEachDialect(t, func(t *testing.T, tb *testBundle) {
		const procs = 6
		dbs := make([]*sql.DB, procs)
		for i := range dbs {
			dbs[i] = tb.open(t)
		}
		var wg sync.WaitGroup
		errs := make([]error, procs)
		for i, db := range dbs {
			m := tb.migrator(t, db)
			wg.Go(func() { errs[i] = m.Prepare(t.Context(), Apply) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("process %d: %v", i, err)
			}
		}
		if vs := tb.versions(t); len(vs) != 3 {
			t.Errorf("versions recorded %v, want [0 1 2]", vs)
		}
	})
}

// A migration file without goose's annotation fails, rather than being skipped.
func TestBadMigrationFails(t *testing.T) {
	t.Parallel()
	tb := dialects[0].setup(t)
	tb.cfg.FS = fstest.MapFS{"001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);\n")}}
	m, err := New(tb.db, tb.cfg)
	if err == nil {
		err = m.Prepare(t.Context(), Apply)
	}
	if err == nil {
		t.Fatal("a migration without -- +goose Up was applied")
	}
}

// Migrating asks systemd (NOTIFY_SOCKET) for more start time; a database already up to date
// asks for none. Not parallel: it sets the environment.
func TestMigrationsExtendTheStartTimeout(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	tb := dialects[0].setup(t) // SQLite
	m := tb.migrator(t, tb.db)
	if err := m.Prepare(t.Context(), Apply); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", startExtension.Microseconds())
	if got := next(); got != want {
		t.Errorf("while migrating, systemd got %q, want %q", got, want)
	}
	if err := m.Prepare(t.Context(), Apply); err != nil {
		t.Fatal(err)
	}
	// Anything the second Prepare sent would come before this marker.
	if _, err := conn.WriteToUnix([]byte("MARKER"), &net.UnixAddr{Name: sock, Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "MARKER" {
		t.Errorf("after migrating, or for an up-to-date database, systemd got %q", got)
	}
}
