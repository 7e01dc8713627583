package sink

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConnectionRuns: a run names its connection and mode in sync_runs; each connection's
// part of it gets its sync_run_connections row; ConnectionRuns gives each connection's last
// run and its last ok one, so a connection failing every run shows as failed even while
// another connection of the same runs succeeds.
func TestConnectionRuns(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		if runs, err := b.s.ConnectionRuns(b.ctx); err != nil || len(runs) != 0 {
			t.Fatalf("ConnectionRuns of an empty warehouse = %+v, %v; want none", runs, err)
		}
		begin := func(trigger, conn, mode string) RunID {
			t.Helper()
			run, err := b.s.BeginRun(b.ctx, trigger, conn, mode)
			if err != nil {
				t.Fatal(err)
			}
			return run
		}
		finish := func(run RunID, r ConnectionRun) {
			t.Helper()
			if err := b.s.FinishConnection(b.ctx, run, r); err != nil {
				t.Fatal(err)
			}
		}

		// Run 1 covers both connections: alpha ok, beta's listing failed.
		run1 := begin(TriggerOnce, "", ModeIncremental)
		start1 := b.clock.Now()
		b.clock.Advance(time.Minute)
		finish(run1, ConnectionRun{Connection: "alpha", Source: "leadconnector", Mode: ModeIncremental, Status: RunOK,
			Started: start1, Stats: RunStats{AccountsOK: 3, AccountsRestricted: 1, LeadsWritten: 40}})
		alphaOK := b.clock.Stored()
		finish(run1, ConnectionRun{Connection: "beta", Source: "localiq", Mode: ModeIncremental, Status: RunFailed,
			Started: start1, Stats: RunStats{AccountsFailed: 1}, Err: errors.New("list accounts: 502 Bad Gateway")})
		if err := b.s.FinishRun(b.ctx, run1, RunFailed, RunStats{AccountsOK: 3, AccountsFailed: 1}, nil); err != nil {
			t.Fatal(err)
		}

		// Run 2, alpha's cron full pass: it fails. Run 3, beta alone: cancelled.
		b.clock.Advance(time.Hour)
		run2 := begin(TriggerCron, "alpha", ModeFull)
		b.clock.Advance(time.Minute)
		finish(run2, ConnectionRun{Connection: "alpha", Source: "leadconnector", Mode: ModeFull, Status: RunFailed,
			Started: b.clock.Now().Add(-time.Minute), Stats: RunStats{AccountsOK: 2, AccountsFailed: 1, LeadsWritten: 5},
			Err: errors.New(strings.Repeat("é", 3000))})
		run3 := begin(TriggerCron, "beta", "")
		b.clock.Advance(time.Second)
		finish(run3, ConnectionRun{Connection: "beta", Source: "localiq", Status: RunCancelled})
		betaLast := b.clock.Stored()

		var row struct {
			Connection *string `db:"connection"`
			Mode       string  `db:"mode"`
		}
		for run, want := range map[RunID][2]string{run1: {"", ModeIncremental}, run2: {"alpha", ModeFull}, run3: {"beta", ModeIncremental}} {
			if err := b.c.r.GetContext(b.ctx, &row, b.c.q(`SELECT connection, mode FROM sync_runs WHERE id = ?`), run); err != nil {
				t.Fatal(err)
			}
			if conn := deref(row.Connection); conn != want[0] || row.Mode != want[1] || (want[0] == "" && row.Connection != nil) {
				t.Errorf("sync_runs %d: connection %v, mode %q; want %q (NULL when several), %q", run, row.Connection, row.Mode, want[0], want[1])
			}
		}

		runs, err := b.s.ConnectionRuns(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 || runs[0].Connection != "alpha" || runs[1].Connection != "beta" {
			t.Fatalf("ConnectionRuns = %+v, want alpha and beta", runs)
		}
		alpha, beta := runs[0], runs[1]
		if alpha.Run != run2 || alpha.Trigger != TriggerCron || alpha.Mode != ModeFull || alpha.Status != RunFailed ||
			alpha.Source != "leadconnector" || alpha.Stats != (RunStats{AccountsOK: 2, AccountsFailed: 1, LeadsWritten: 5}) ||
			!alpha.FinishedAt.Equal(alpha.StartedAt.Add(time.Minute)) || !alpha.LastOKAt.Equal(alphaOK) {
			t.Errorf("alpha = %+v; want run %d, cron full, failed, last ok at %v", alpha, run2, alphaOK)
		}
		if n := len(alpha.Error); n > maxErrorLen+len("…") || !strings.HasPrefix(alpha.Error, "éé") || !strings.HasSuffix(alpha.Error, "…") {
			t.Errorf("alpha's long error stored as %d bytes (%.20q…), want it bounded", n, alpha.Error)
		}
		if beta.Run != run3 || beta.Status != RunCancelled || beta.Mode != ModeIncremental || beta.Error != "" ||
			!beta.FinishedAt.Equal(betaLast) || !beta.StartedAt.Equal(betaLast) || !beta.LastOKAt.IsZero() {
			t.Errorf("beta = %+v; want run %d, cancelled, never ok", beta, run3)
		}

		// A second result of a connection in one run replaces the first.
		finish(run3, ConnectionRun{Connection: "beta", Source: "localiq", Status: RunOK, Stats: RunStats{AccountsOK: 4}})
		if runs, err := b.s.ConnectionRuns(b.ctx); err != nil || runs[1].Status != RunOK || runs[1].Stats.AccountsOK != 4 ||
			!runs[1].LastOKAt.Equal(runs[1].FinishedAt) {
			t.Errorf("beta after its result was replaced = %+v, %v", runs, err)
		}
		if n := b.count(t, `SELECT count(*) FROM sync_run_connections`); n != 4 {
			t.Errorf("%d sync_run_connections rows, want 4", n)
		}

		for _, bad := range []ConnectionRun{
			{Source: "localiq", Status: RunOK},
			{Connection: "beta", Source: "localiq", Status: RunRunning},
			{Connection: "beta", Source: "localiq", Status: RunOK, Mode: "sideways"},
		} {
			if err := b.s.FinishConnection(b.ctx, run3, bad); err == nil {
				t.Errorf("FinishConnection(%+v) accepted", bad)
			}
		}
		if err := b.s.FinishConnection(b.ctx, run3+1000, ConnectionRun{Connection: "beta", Source: "localiq", Status: RunOK}); !errors.Is(err, ErrUnknownRun) {
			t.Errorf("FinishConnection of an unknown run: %v, want ErrUnknownRun", err)
		}
		if _, err := b.s.BeginRun(b.ctx, TriggerOnce, "", "sideways"); err == nil {
			t.Error("BeginRun with an unknown mode accepted")
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestMigrationRunConnections: 00010 adds the columns and the table to a warehouse with runs
// (theirs stay NULL), and its down migration takes them away again with the runs kept.
func TestMigrationRunConnections(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		ctx, c := b.ctx, b.c
		if _, err := c.migrations.Goose.DownTo(ctx, 9); err != nil {
			t.Fatalf("migrate down to 9: %v", err)
		}
		if _, err := c.w.ExecContext(ctx, `SELECT connection FROM sync_runs`); err == nil {
			t.Error("sync_runs.connection survived the down migration")
		}
		if _, err := c.w.ExecContext(ctx, `SELECT count(*) FROM sync_run_connections`); err == nil {
			t.Error("sync_run_connections survived the down migration")
		}
		if _, err := c.w.ExecContext(ctx, c.q(`INSERT INTO sync_runs (trigger, started_at, status) VALUES ('cron', ?, 'ok')`),
			c.ts(b.clock.Now())); err != nil {
			t.Fatal(err)
		}
		if _, err := c.migrations.Goose.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
		var old struct {
			Connection *string `db:"connection"`
			Mode       *string `db:"mode"`
		}
		if err := c.r.GetContext(ctx, &old, `SELECT connection, mode FROM sync_runs`); err != nil || old.Connection != nil || old.Mode != nil {
			t.Errorf("a run from before the upgrade: %+v, %v; want NULL connection and mode", old, err)
		}
		run := b.run(t)
		if err := b.s.FinishConnection(ctx, run, ConnectionRun{Connection: "alpha", Source: "lacrm", Status: RunOK}); err != nil {
			t.Errorf("FinishConnection after the upgrade: %v", err)
		}
		if _, err := c.migrations.Goose.DownTo(ctx, 9); err != nil {
			t.Fatalf("migrate down to 9 with rows: %v", err)
		}
		if n := b.count(t, `SELECT count(*) FROM sync_runs`); n != 2 {
			t.Errorf("%d runs after the down migration, want both kept", n)
		}
		if _, err := c.migrations.Goose.Up(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
	})
}
