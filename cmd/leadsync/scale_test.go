package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

// Several leadsync processes share one PostgreSQL warehouse and token store (DESIGN §7).

type scaleBundle struct {
	env      *testenv.Env
	accounts int // every account of the sandbox
}

// scaleSetup starts a sandbox of about n LeadConnector locations (plus a few LocaliQ and
// LACRM accounts), a PostgreSQL warehouse, and a PostgreSQL token store in its own schema
// (the workers share the grants, so refreshes must serialize on its row lock), authorized.
func scaleSetup(t *testing.T, n int, faults simkit.FaultSettings) *scaleBundle {
	t.Helper()
	env := testenv.New(t, testenv.Options{Seed: 11, Locations: n, ContactsPerLocation: 5, Faults: faults,
		Advertisers: 2, InteractionsPerAdv: 10, LACRMContacts: 20, LACRMPipelineItems: 5,
		// One agency token mints every location's token: lift the company bucket's limit.
		LeadConnector: lctest.Options{Burst: 1_000_000, Interval: time.Second, Daily: 10_000_000},
	}, testenv.Postgres)
	tokURL, tokSchema := pgtest.Schema(t)
	f, err := os.OpenFile(env.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "token_store:\n  url: %q\n  schema: %s\n", tokURL, tokSchema)
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}
	env.Authorized(t)
	return &scaleBundle{env: env, accounts: len(env.Sandbox.GroundTruth())}
}

// scaleProc is one `leadsync run --once` process.
type scaleProc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	err            error
	done           chan struct{}
}

func (b *scaleBundle) start(t *testing.T, env ...string) *scaleProc {
	t.Helper()
	p := &scaleProc{done: make(chan struct{})}
	p.cmd = exec.Command(leadsyncBin, "run", "--once", "--progress", "off", "--config", b.env.ConfigPath)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process and returns its account counts (ok+restricted+failed).
func (p *scaleProc) wait(t *testing.T) (synced int) {
	t.Helper()
	<-p.done
	if p.err != nil {
		t.Fatalf("leadsync run --once: %v\nstdout:\n%s\nstderr (tail):\n%s", p.err, p.stdout.String(), scaleTail(p.stderr.String()))
	}
	var run int64
	var status string
	var ok, restricted, failed int
	if _, err := fmt.Sscanf(p.stdout.String(), "run %d %s %d accounts ok, %d restricted, %d failed", &run, &status, &ok, &restricted, &failed); err != nil {
		t.Fatalf("summary %q: %v", p.stdout.String(), err)
	}
	return ok + restricted + failed
}

func scaleTail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// slotsDone counts the accounts whose sync ended in each slot, per worker.
func (b *scaleBundle) doneBy(t *testing.T) map[string]int {
	t.Helper()
	rows, err := b.env.OpenDB(t).Query(`SELECT done_by, count(*) FROM account_leases GROUP BY done_by`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var w string
		var n int
		if err := rows.Scan(&w, &n); err != nil {
			t.Fatal(err)
		}
		out[w] = n
	}
	return out
}

func TestScaleThreeWorkersSyncEachAccountOnce(t *testing.T) {
	t.Parallel()
	b := scaleSetup(t, 300, simkit.FaultSettings{})
	var procs []*scaleProc
	for i := range 3 {
		procs = append(procs, b.start(t, fmt.Sprintf("LEADSYNC_WORKER_ID=scale-w%d", i)))
	}
	total := 0
	for i, p := range procs {
		n := p.wait(t)
		t.Logf("worker %d synced %d accounts", i, n)
		total += n
	}
	if total != b.accounts {
		t.Errorf("the workers synced %d accounts in all; the sandbox has %d: each must be synced exactly once", total, b.accounts)
	}
	// The sandbox's view: one contact search per reachable location (five contacts fit a page).
	searches := int64(0)
	for status, n := range b.env.Sandbox.Counters()["leadconnector"].Requests["contacts/search"] {
		if status == "200" {
			searches += n
		}
	}
	var want int64
	for _, at := range b.env.Sandbox.GroundTruth() {
		if at.Source == "leadconnector" && !at.Restricted {
			want++
		}
	}
	if searches != want {
		t.Errorf("%d contact searches with 200; want %d (one per location)", searches, want)
	}
	var slots int
	if err := b.env.OpenDB(t).QueryRow(`SELECT count(DISTINCT done_slot_id) FROM account_leases`).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 3 { // one per connection
		t.Errorf("accounts were done in %d slots; want the 3 connections' one each", slots)
	}
	by := b.doneBy(t)
	t.Logf("accounts done per worker: %v", by)
	if len(by) < 2 {
		t.Errorf("one worker did everything (%v): the others should have shared the accounts", by)
	}
	if reuse := b.env.Sandbox.Count(simkit.CountRefreshReuse); reuse != 0 {
		t.Errorf("%d refresh-token reuses", reuse)
	}
	b.env.RequireTruth(t)
}

func TestScaleKilledWorkersAccountsAreTakenOver(t *testing.T) {
	t.Parallel()
	// Slow requests so the run lasts long enough to kill a worker in the middle of it.
	b := scaleSetup(t, 300, simkit.FaultSettings{LatencyRate: 1, Latency: 15 * time.Millisecond})
	lease := []string{"LEADSYNC_LEASE_DURATION=2s"}
	// The victim's identity names another host, so the survivors cannot tell it died and
	// must wait for its leases to expire.
	victim := b.start(t, append(lease, "LEADSYNC_WORKER_ID=far-host:1:victim")...)
	a := b.start(t, append(lease, "LEADSYNC_WORKER_ID=scale-a")...)
	c := b.start(t, append(lease, "LEADSYNC_WORKER_ID=scale-c")...)

	db := b.env.OpenDB(t)
	deadline := time.Now().Add(30 * time.Second)
	var held int
	for held < 2 {
		if err := db.QueryRow(`SELECT count(*) FROM account_leases WHERE owner = 'far-host:1:victim'`).Scan(&held); err != nil {
			t.Fatal(err)
		}
		select {
		case <-victim.done:
			t.Fatalf("the victim finished before it could be killed:\n%s", victim.stdout.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the victim never held a lease")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	var orphaned []string
	rows, err := db.Query(`SELECT account_id FROM account_leases WHERE owner = 'far-host:1:victim'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		orphaned = append(orphaned, id)
	}
	rows.Close()
	t.Logf("killed the victim holding %d leases", len(orphaned))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range []*scaleProc{a, c} {
		wg.Go(func() {
			select {
			case <-p.done:
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
	a.wait(t)
	c.wait(t)
	var still int
	if err := db.QueryRow(`SELECT count(*) FROM account_leases
WHERE account_id = ANY($1) AND (owner IS NOT NULL OR done_by = 'far-host:1:victim')`, orphaned).Scan(&still); err != nil {
		t.Fatal(err)
	}
	if still != 0 {
		t.Errorf("%d of the victim's accounts were not taken over", still)
	}
	if reuse := b.env.Sandbox.Count(simkit.CountRefreshReuse); reuse != 0 {
		t.Errorf("%d refresh-token reuses", reuse)
	}
	b.env.RequireTruth(t)
}

func TestScaleSQLiteRefusesASecondWorker(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(3), testenv.SQLite)
	env.Authorized(t)
	db := strings.TrimPrefix(env.WarehouseURL, "sqlite://")
	// The first worker: the daemon holds the writer lock for as long as it runs.
	first := exec.Command(leadsyncBin, "run", "--config", env.ConfigPath)
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Process.Kill(); _ = first.Wait() })
	// Wait for the daemon to hold the lock: its pid is written into the lock file.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pid, _ := os.ReadFile(db + ".lock")
		if strings.TrimSpace(string(pid)) == fmt.Sprint(first.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never took the writer lock; stderr:\n%s", scaleTail(firstErr.String()))
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	out, err := exec.Command(leadsyncBin, "run", "--once", "--progress", "off", "--config", env.ConfigPath).CombinedOutput()
	if err == nil {
		t.Fatalf("a second worker ran against the daemon's SQLite warehouse:\n%s", out)
	}
	for _, want := range []string{db + ".lock", "single-writer", "PostgreSQL", fmt.Sprint(first.Process.Pid)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, out)
		}
	}
}

// TestScaleBench times a backfill of ~2,000 accounts by 1, 2 and 3 worker processes, each
// over a fresh sandbox and warehouse, with 20 ms vendor latency per request (a sync is
// I/O-bound in production). LEADSYNC_SCALE_BENCH=1 runs it (about a minute).
func TestScaleBench(t *testing.T) {
	if os.Getenv("LEADSYNC_SCALE_BENCH") == "" {
		t.Skip("set LEADSYNC_SCALE_BENCH=1 to time 1, 2 and 3 workers over 2,000 accounts")
	}
	var base time.Duration
	for workers := 1; workers <= 3; workers++ {
		b := scaleSetup(t, 2000, simkit.FaultSettings{LatencyRate: 1, Latency: 20 * time.Millisecond})
		start := time.Now()
		var procs []*scaleProc
		for i := range workers {
			procs = append(procs, b.start(t, fmt.Sprintf("LEADSYNC_WORKER_ID=bench-%d-%d", workers, i)))
		}
		total := 0
		var cpu time.Duration
		for _, p := range procs {
			total += p.wait(t)
			cpu += p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
		}
		took := time.Since(start)
		if workers == 1 {
			base = took
		}
		if total != b.accounts {
			t.Errorf("%d workers synced %d accounts; the sandbox has %d", workers, total, b.accounts)
		}
		b.env.RequireTruth(t)
		t.Logf("%d worker(s): %d accounts in %s (%.2fx the single worker's speed), workers' CPU %s", workers, b.accounts,
			took.Round(time.Millisecond), base.Seconds()/took.Seconds(), cpu.Round(time.Millisecond))
	}
}
