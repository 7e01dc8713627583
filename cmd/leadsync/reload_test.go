package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/testenv"
)

// reloadYearly never fires during a test: the runs there are come from run_on_start.
const reloadYearly = "0 0 1 1 *"

// reloadDaemon is the real binary running `leadsync run` under a stand-in for systemd.
type reloadDaemon struct {
	cmd    *exec.Cmd
	sd     *daemonNotify
	logs   *daemonLog
	exited chan error
}

func reloadStart(t *testing.T, env *testenv.Env) *reloadDaemon {
	t.Helper()
	d := &reloadDaemon{sd: daemonNotifySocket(t), exited: make(chan error, 1)}
	d.cmd = exec.Command(leadsyncBin, "run", "--config", env.ConfigPath)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+d.sd.path, "WATCHDOG_USEC=", "WATCHDOG_PID=",
		"LEADSYNC_CONFIG=", "CREDENTIALS_DIRECTORY=", "LEADSYNC_LOG_LEVEL=", "LEADSYNC_LOG_FORMAT=")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.logs = daemonReadLog(t, stderr)
	go func() { <-d.logs.done; d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// signal sends sig, failing if the daemon has exited meanwhile (a SIGHUP used to end it).
func (d *reloadDaemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case err := <-d.exited:
		t.Fatalf("the daemon exited (%v) before %v", err, sig)
	default:
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and wants exit status 0 within the shutdown bound.
func (d *reloadDaemon) stop(t *testing.T) {
	t.Helper()
	d.signal(t, syscall.SIGTERM)
	bound := 10*time.Second + ops.StopMargin
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v (want status 0)", err)
		}
	case <-time.After(bound):
		t.Fatalf("daemon still running %v after SIGTERM", bound)
	}
}

// ran waits for a STATUS= line saying conn's run finished ok.
func (d *reloadDaemon) ran(t *testing.T, conn string) {
	t.Helper()
	d.sd.wait(t, "a run of "+conn, func(m string) bool {
		return strings.HasPrefix(m, "STATUS=last run ("+conn+"): ok, ")
	})
}

// await waits for a JSON log record at index from or later that match accepts, and returns
// it with its index.
func (l *daemonLog) await(t *testing.T, what string, from int, match func(rec map[string]any) bool) (map[string]any, int) {
	t.Helper()
	deadline := time.After(daemonWait)
	for i := from; ; {
		l.mu.Lock()
		lines, added := l.lines, l.added
		l.mu.Unlock()
		for ; i < len(lines); i++ {
			var rec map[string]any
			if json.Unmarshal([]byte(lines[i]), &rec) == nil && match(rec) {
				return rec, i
			}
		}
		select {
		case <-added:
		case <-l.done:
			t.Fatalf("the daemon's log ended without %s", what)
		case <-deadline:
			t.Fatalf("no %s in the log within %v", what, daemonWait)
		}
	}
}

func (l *daemonLog) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			n++
		}
	}
	return n
}

// nextRun matches the "next run" line of conn's incremental schedule spec.
func nextRun(conn, spec string) func(map[string]any) bool {
	return func(rec map[string]any) bool {
		return rec["msg"] == "next run" && rec["connection"] == conn && rec["mode"] == "incremental" && rec["schedule"] == spec
	}
}

// reloadWrite replaces the configuration the daemon reads, checking that the test meant it
// to be valid (or not).
func reloadWrite(t *testing.T, env *testenv.Env, cfg string, valid bool) {
	t.Helper()
	if err := os.WriteFile(env.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(env.ConfigPath); (err == nil) != valid {
		t.Fatalf("the test's configuration: %v (want valid %v)", err, valid)
	}
}

func reloadSetup(t *testing.T, seed uint64) (*testenv.Env, string) {
	t.Helper()
	env := testenv.New(t, testenv.Small(seed), testenv.SQLite)
	env.Authorized(t)
	daemonConfig(t, env)
	b, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `schedule: "@every 1s"`, `schedule: "`+reloadYearly+`"`, 1)
	if cfg == string(b) {
		t.Fatal("daemonConfig no longer writes `schedule: \"@every 1s\"`: update reloadSetup")
	}
	return env, cfg
}

// SIGHUP with a valid new configuration: a new schedule and an added connection take effect
// in the same process, and the added connection syncs at once (run_on_start). SIGHUP with an
// invalid one: refused, naming the field, and the daemon keeps syncing on the configuration
// it has. SIGTERM then stops it cleanly. Every line it writes is JSON.
func TestReloadAppliesAValidConfigAndRefusesAnInvalidOne(t *testing.T) {
	t.Parallel()
	env, base := reloadSetup(t, 23)
	const liq = "  - name: sandbox-localiq\n"
	if !strings.Contains(base, liq) {
		t.Fatalf("no connection sandbox-localiq in the sandbox configuration:\n%s", base)
	}
	reloadWrite(t, env, strings.Replace(base, liq, liq+"    enabled: false\n", 1), true)
	d := reloadStart(t, env)
	pid := d.cmd.Process.Pid

	d.sd.wait(t, "READY=1", daemonIs("READY=1"))
	d.logs.await(t, "the yearly schedule's next run", 0, nextRun("sandbox-lacrm", reloadYearly))
	d.ran(t, "sandbox-lacrm") // run_on_start: no tick until January
	db := env.OpenDB(t)
	if n := e2eCount(t, db, `SELECT COUNT(*) FROM leads WHERE source = 'localiq'`); n != 0 {
		t.Fatalf("%d LocaliQ leads before its connection was enabled", n)
	}

	// A valid configuration: a schedule every 2 s, sandbox-localiq enabled, and a soft-stop
	// timeout that only a restart can change.
	const every = "@every 2s"
	valid := strings.Replace(strings.Replace(base, reloadYearly, every, 1), "shutdown_timeout: 10s\n", "shutdown_timeout: 20s\n", 1)
	reloadWrite(t, env, valid, true)
	d.signal(t, syscall.SIGHUP)
	reloading := d.sd.wait(t, "RELOADING=1", func(m string) bool { return strings.HasPrefix(m, "RELOADING=1\n") })
	if !strings.HasPrefix(strings.TrimPrefix(reloading, "RELOADING=1\n"), "MONOTONIC_USEC=") {
		t.Errorf("reload notification %q has no MONOTONIC_USEC=", reloading)
	}
	d.sd.wait(t, "READY=1 after the reload", daemonIs("READY=1"))
	rec, at := d.logs.await(t, "the reloaded line", 0, func(rec map[string]any) bool { return rec["msg"] == "reloaded the configuration" })
	if added, _ := rec["added"].([]any); len(added) != 1 || added[0] != "sandbox-localiq" {
		t.Errorf("reloaded: added %v, want [sandbox-localiq]", rec["added"])
	}
	rec, _ = d.logs.await(t, "the restart-only warning", 0, func(rec map[string]any) bool { return rec["level"] == "WARN" && rec["fields"] != nil })
	if fields, _ := rec["fields"].([]any); len(fields) != 1 || fields[0] != "shutdown_timeout" {
		t.Errorf("restart-only settings %v, want [shutdown_timeout]", rec["fields"])
	}
	d.logs.await(t, "the new schedule's next run", at, nextRun("sandbox-localiq", every))
	d.ran(t, "sandbox-localiq") // added with run_on_start: synced at once
	if n := e2eCount(t, db, `SELECT COUNT(*) FROM leads WHERE source = 'localiq'`); n == 0 {
		t.Error("the added connection wrote no leads")
	}
	// The new schedule fires: LACRM's next run is 2 s away now, and happens.
	_, at = d.logs.await(t, "LACRM on the new schedule", at, nextRun("sandbox-lacrm", every))
	d.ran(t, "sandbox-lacrm")

	// An invalid configuration: refused with the field, the daemon goes on as it was.
	reloadWrite(t, env, strings.Replace(base, reloadYearly, "every two seconds", 1), false)
	d.signal(t, syscall.SIGHUP)
	d.sd.wait(t, "RELOADING=1", func(m string) bool { return strings.HasPrefix(m, "RELOADING=1\n") })
	d.sd.wait(t, "READY=1 after the refused reload", daemonIs("READY=1"))
	rec, at = d.logs.await(t, "the refusal", at, func(rec map[string]any) bool { return rec["level"] == "ERROR" })
	if rec["msg"] != "reload refused: the configuration has an error; still running on the previous one" ||
		rec["field"] != "schedule" || !strings.Contains(rec["error"].(string), "invalid cron spec") {
		t.Errorf("refusal: %v, want the field schedule and why", rec)
	}
	for _, conn := range []string{"sandbox-lacrm", "sandbox-localiq"} {
		d.logs.await(t, conn+" still on "+every+" after the refusal", at+1, nextRun(conn, every))
		d.ran(t, conn)
	}

	if d.cmd.Process.Pid != pid || d.logs.count("leadsync started") != 1 {
		t.Errorf("the daemon restarted: pid %d (was %d), %d start lines", d.cmd.Process.Pid, pid, d.logs.count("leadsync started"))
	}
	d.stop(t)
	if d.logs.count("leadsync stopped") != 1 {
		t.Error("no clean stop in the log")
	}
	// No plain line among the JSON ones, the stop notices included; durations in seconds.
	rec, _ = d.logs.await(t, "the stop notice", 0, func(rec map[string]any) bool {
		return strings.HasPrefix(rec["msg"].(string), "signal: finishing the pages in flight")
	})
	if rec["signal"] != "terminated" || rec["timeout"] != 10.0 {
		t.Errorf("stop notice %v, want signal terminated and the running timeout, 10 (seconds)", rec)
	}
	for line := range strings.Lines(d.logs.text()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("a line that is not JSON: %q", line)
		}
	}
}

// run_on_start off globally and on for one connection: at start that one syncs, without a
// tick; the others wait for theirs, which the log says is next January.
func TestDaemonRunOnStartPerConnection(t *testing.T) {
	t.Parallel()
	env, base := reloadSetup(t, 29)
	const lacrm = "  - name: sandbox-lacrm\n"
	if !strings.Contains(base, lacrm) {
		t.Fatalf("no connection sandbox-lacrm in the sandbox configuration:\n%s", base)
	}
	reloadWrite(t, env, "run_on_start: false\n"+strings.Replace(base, lacrm, lacrm+"    run_on_start: true\n", 1), true)
	d := reloadStart(t, env)
	d.sd.wait(t, "READY=1", daemonIs("READY=1"))
	for _, conn := range []string{"sandbox-lacrm", "sandbox-localiq", "sandbox-leadconnector"} {
		rec, _ := d.logs.await(t, conn+"'s next run", 0, nextRun(conn, reloadYearly))
		at, err := time.Parse(time.RFC3339, rec["at"].(string))
		if err != nil || at.Month() != time.January || at.Day() != 1 || !at.After(time.Now()) {
			t.Errorf("%s: next run at %v (%v), want next January 1st", conn, rec["at"], err)
		}
		if in, ok := rec["in"].(float64); !ok || in <= 0 {
			t.Errorf("%s: next run in %v, want seconds from now", conn, rec["in"])
		}
	}
	d.ran(t, "sandbox-lacrm")
	d.stop(t)
	db := env.OpenDB(t)
	for source, want := range map[string]bool{"lacrm": true, "localiq": false, "leadconnector": false} {
		if n := e2eCount(t, db, `SELECT COUNT(*) FROM leads WHERE source = ?`, source); (n > 0) != want {
			t.Errorf("%s: %d leads after start, want some: %v", source, n, want)
		}
	}
}
