package main

// The restore procedure of docs/operations.md ("Restore"), followed with the real binary:
// sync, back up, lose the warehouse, restore it, and the next run is incremental from the
// restored cursors.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/internal/testenv"
)

// restoreRun is one sync_runs row.
type restoreRun struct {
	id                 int64
	status             string
	leadsWritten, reqs int64
	failed             int64 // accounts
	vendorRequests     int64 // what the sandbox answered during the run, token calls included
	stdout             string
}

// restoreSync runs `leadsync run --once` and returns its sync_runs row.
func restoreSync(t *testing.T, env *testenv.Env) restoreRun {
	t.Helper()
	before := env.Sandbox.TotalRequests()
	p := e2eStart(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath)
	if code := p.wait(t, 3*time.Minute); code != exitOK {
		t.Fatalf("leadsync run --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, proofTail(p.stderr.String()))
	}
	db := restoreOpen(t, env)
	defer db.Close()
	var r restoreRun
	err := db.QueryRow(`SELECT id, status, leads_written, requests, accounts_failed FROM sync_runs ORDER BY id DESC LIMIT 1`).
		Scan(&r.id, &r.status, &r.leadsWritten, &r.reqs, &r.failed)
	if err != nil {
		t.Fatal(err)
	}
	r.vendorRequests = env.Sandbox.TotalRequests() - before
	r.stdout = p.stdout.String()
	return r
}

// restoreOpen opens the warehouse; the caller closes it (SQLite: before the file goes).
func restoreOpen(t *testing.T, env *testenv.Env) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if env.Dialect == testenv.Postgres {
		db, err = sql.Open("pgx", env.WarehouseURL)
	} else {
		db, err = sql.Open("sqlite3", "file:"+restoreSQLitePath(env))
	}
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func restoreSQLitePath(env *testenv.Env) string {
	return strings.TrimPrefix(env.WarehouseURL, "sqlite://")
}

// restoreCursors reads sync_state's cursors, by source/account/stream.
func restoreCursors(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT source, account_id, stream, cursor FROM sync_state`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var src, acct, stream, cursor string
		if err := rows.Scan(&src, &acct, &stream, &cursor); err != nil {
			t.Fatal(err)
		}
		out[src+"/"+acct+"/"+stream] = cursor
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// restoreAuthorize authorizes every connection without opening the warehouse, and lets go
// of the token store: the binary runs next.
func restoreAuthorize(t *testing.T, env *testenv.Env) {
	t.Helper()
	a := testenv.Authorize(t, env.AppWith(t, env.Config(t), app.Options{NoSink: true}))
	a.Close()
}

// restoreCheckSecondRun checks the run after the restore: the restored cursors were the
// backup's, and the run went on from them.
func restoreCheckSecondRun(t *testing.T, env *testenv.Env, first, control, second restoreRun, backupCursors, restoredCursors map[string]string, lastBackedUpRun int64) {
	t.Helper()
	if len(backupCursors) == 0 {
		t.Fatal("the backup holds no cursors")
	}
	if !maps.Equal(restoredCursors, backupCursors) {
		t.Errorf("restored cursors differ from the backup's: %d restored, %d backed up", len(restoredCursors), len(backupCursors))
		for _, k := range slices.Sorted(maps.Keys(backupCursors)) {
			if restoredCursors[k] != backupCursors[k] {
				t.Logf("  %s: backup %q, restored %q", k, backupCursors[k], restoredCursors[k])
			}
		}
	}
	t.Logf("first run: %d leads written, %d requests (%d answered by the sandbox); incremental run before the loss: %d, %d (%d); after the restore: %d, %d (%d)",
		first.leadsWritten, first.reqs, first.vendorRequests, control.leadsWritten, control.reqs, control.vendorRequests,
		second.leadsWritten, second.reqs, second.vendorRequests)
	if second.id != lastBackedUpRun+1 {
		t.Errorf("the run after the restore is run %d, want %d: the restored ledger goes on from the backup's", second.id, lastBackedUpRun+1)
	}
	if second.status != "ok" || second.failed != 0 {
		t.Errorf("run after the restore: %s, %d accounts failed\n%s", second.status, second.failed, second.stdout)
	}
	// The sandbox did not change: an incremental run finds nothing new. A run from empty
	// cursors would write every lead again, as the first did.
	if second.leadsWritten != 0 {
		t.Errorf("the run after the restore wrote %d leads, want 0 (the sandbox did not change)", second.leadsWritten)
	}
	if first.leadsWritten == 0 {
		t.Fatalf("the first run wrote nothing: the test no longer exercises a restore")
	}
	if second.reqs*3 > first.reqs || second.vendorRequests*3 > first.vendorRequests {
		t.Errorf("the run after the restore made %d requests (the sandbox answered %d), the first %d (%d): not incremental",
			second.reqs, second.vendorRequests, first.reqs, first.vendorRequests)
	}
	// As many as the incremental run from the same cursors made before the loss.
	if second.reqs != control.reqs || second.vendorRequests != control.vendorRequests {
		t.Errorf("the run after the restore made %d requests (the sandbox answered %d), the incremental run from the same cursors %d (%d)",
			second.reqs, second.vendorRequests, control.reqs, control.vendorRequests)
	}
	if diffs := env.Diff(t); len(diffs) > 0 {
		t.Errorf("after the restore and a run, the warehouse differs from the vendors (%d differences), first: %s", len(diffs), diffs[0])
	}
}

// restoreVacuumInto backs up the SQLite database at path into backup with VACUUM INTO: with
// the sqlite3 CLI when it is installed, as the guide says, else through the go-sqlite3
// driver (the same statement).
func restoreVacuumInto(t *testing.T, path, backup string) {
	t.Helper()
	if sqlite3, err := exec.LookPath("sqlite3"); err == nil {
		if out, err := exec.Command(sqlite3, path, fmt.Sprintf("VACUUM INTO '%s'", backup)).CombinedOutput(); err != nil {
			t.Fatalf("sqlite3 VACUUM INTO: %v\n%s", err, out)
		}
		t.Logf("backed up %s with VACUUM INTO through the sqlite3 CLI (%s)", filepath.Base(path), sqlite3)
		return
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`VACUUM INTO ?`, backup)
	db.Close()
	if err != nil {
		t.Fatalf("VACUUM INTO: %v", err)
	}
	t.Logf("backed up %s with VACUUM INTO through the go-sqlite3 driver (no sqlite3 CLI)", filepath.Base(path))
}

// restoreSQLiteFile puts the backup back at path, its -wal and -shm files gone, with mode
// 0600 (the warehouse holds PII, the token store tokens).
func restoreSQLiteFile(t *testing.T, backup, path string) {
	t.Helper()
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Fatalf("%s%s still there: a restore must not meet the lost database's WAL", path, suffix)
		}
	}
	src, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The SQLite restore of docs/operations.md: VACUUM INTO copies of the warehouse and of the
// token store, both databases and their -wal and -shm files deleted, the copies put back,
// and the next run picks up at the backed-up cursors with the backed-up grants.
func TestRestoreSQLiteFromVacuumInto(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(43), testenv.SQLite)
	restoreAuthorize(t, env)
	first := restoreSync(t, env)

	dir := t.TempDir()
	files := map[string]string{ // live database → its backup
		restoreSQLitePath(env):                       filepath.Join(dir, "leadsync-backup.db"),
		filepath.Join(env.Dir, "state", "tokens.db"): filepath.Join(dir, "leadsync-tokens-backup.db"),
	}
	for path, backup := range files {
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err) // sqlite3 would back up the empty database it creates
		}
		restoreVacuumInto(t, path, backup)
	}
	bdb, err := sql.Open("sqlite3", "file:"+files[restoreSQLitePath(env)]+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	backupCursors := restoreCursors(t, bdb)
	var lastRun int64
	if err := bdb.QueryRow(`SELECT max(id) FROM sync_runs`).Scan(&lastRun); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	control := restoreSync(t, env) // what an incremental run from these cursors costs

	// Lose both databases, their WAL too; then restore the copies.
	for path := range files {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	for path, backup := range files {
		restoreSQLiteFile(t, backup, path)
	}
	db := restoreOpen(t, env)
	restored := restoreCursors(t, db)
	db.Close()

	second := restoreSync(t, env)
	restoreCheckSecondRun(t, env, first, control, second, backupCursors, restored, lastRun)
}

// The PostgreSQL restore of docs/operations.md: pg_dump -Fc of the warehouse's schema, the
// schema dropped, pg_restore, and the next run picks up at the backed-up cursors. Under
// CI=true an unreachable server or missing client tools fail the test.
func TestRestorePostgresFromPgDump(t *testing.T) {
	t.Parallel()
	tools := map[string]string{}
	for _, name := range []string{"pg_dump", "pg_restore"} {
		path, err := exec.LookPath(name)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing under CI (Debian's postgresql-client): %v", name, err)
			}
			t.Skipf("%s is not installed: the PostgreSQL restore is not tested", name)
		}
		tools[name] = path
	}
	env := testenv.New(t, testenv.Small(47), testenv.Postgres) // a fresh schema, dropped at the end
	schema := restoreSearchPath(t, env.WarehouseURL)
	restoreAuthorize(t, env)
	first := restoreSync(t, env)

	// pg_dump and pg_restore take a libpq URL: the server's, without the search_path that
	// selects the test's schema (not a libpq parameter).
	server := pgtest.URL()
	backup := filepath.Join(t.TempDir(), "leadsync.dump")
	if out, err := exec.Command(tools["pg_dump"], "-Fc", "--schema="+schema, "--file="+backup, "--dbname="+server).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	bdb := restoreOpen(t, env)
	backupCursors := restoreCursors(t, bdb)
	var lastRun int64
	if err := bdb.QueryRow(`SELECT max(id) FROM sync_runs`).Scan(&lastRun); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	control := restoreSync(t, env)

	// Lose the warehouse: its schema and everything in it.
	restorePGExec(t, server, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	if out, err := exec.Command(tools["pg_restore"], "--exit-on-error", "--dbname="+server, backup).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	db := restoreOpen(t, env)
	restored := restoreCursors(t, db)
	db.Close()

	second := restoreSync(t, env)
	restoreCheckSecondRun(t, env, first, control, second, backupCursors, restored, lastRun)
}

// restoreSearchPath is the schema a pgtest URL selects.
func restoreSearchPath(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := cfg.RuntimeParams["search_path"]
	if schema == "" {
		t.Fatalf("the test warehouse's URL selects no schema")
	}
	return schema
}

func restorePGExec(t *testing.T, dsn, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		pgtest.Unreachable(t, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}
