package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// daemonWait bounds every wait on the daemon (a notification, a log line, an HTTP answer).
const daemonWait = 30 * time.Second

// daemonNotify stands in for systemd: the unixgram socket the service's NOTIFY_SOCKET names.
// Every datagram is kept; wait consumes them in order.
type daemonNotify struct {
	path string
	msgs chan string
	seen map[string]int // by datagram, as consumed by wait
}

func daemonNotifySocket(t *testing.T) *daemonNotify {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &daemonNotify{path: path, msgs: make(chan string, 1024), seen: map[string]int{}}
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return // closed at cleanup
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// wait consumes notifications until one satisfies match, failing after daemonWait.
func (n *daemonNotify) wait(t *testing.T, what string, match func(msg string) bool) string {
	t.Helper()
	deadline := time.After(daemonWait)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", what)
			}
			n.seen[m]++
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s from the daemon within %v (got %v)", what, daemonWait, n.seen)
		}
	}
}

func daemonIs(want string) func(string) bool { return func(m string) bool { return m == want } }

// daemonLog collects the daemon's stderr (JSON log lines) and lets a test wait for one.
type daemonLog struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // closed and replaced on each new line
	done  chan struct{} // closed when the stream ends
}

func daemonReadLog(t *testing.T, r io.Reader) *daemonLog {
	l := &daemonLog{added: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log("daemon: " + sc.Text())
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			close(l.added)
			l.added = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// field waits for a JSON log line whose msg is msg and returns its field key.
func (l *daemonLog) field(t *testing.T, msg, key string) string {
	t.Helper()
	deadline := time.After(daemonWait)
	for i := 0; ; {
		l.mu.Lock()
		lines, added := l.lines, l.added
		l.mu.Unlock()
		for ; i < len(lines); i++ {
			var rec map[string]any
			if json.Unmarshal([]byte(lines[i]), &rec) == nil && rec["msg"] == msg {
				if v, ok := rec[key].(string); ok {
					return v
				}
			}
		}
		select {
		case <-added:
		case <-l.done:
			t.Fatalf("the daemon's log ended without %q", msg)
		case <-deadline:
			t.Fatalf("no log line %q within %v", msg, daemonWait)
		}
	}
}

func (l *daemonLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// daemonStart runs the daemon (leadsync run) on config, with env added to the process's,
// and reads its log; exited gives its exit once. It is killed at the test's end if it has
// not exited.
func daemonStart(t *testing.T, config string, env ...string) (cmd *exec.Cmd, logs *daemonLog, exited <-chan error) {
	t.Helper()
	cmd = exec.Command(leadsyncBin, "run", "--config", config)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "LEADSYNC_CONFIG=", "CREDENTIALS_DIRECTORY="), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	logs = daemonReadLog(t, stderr)
	go func() { <-logs.done; done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd, logs, done
}

// daemonConfig rewrites env's configuration for the daemon: a fast schedule, no full
// passes, the HTTP endpoint on a free port, JSON logs, and a short soft stop.
func daemonConfig(t *testing.T, env *testenv.Env) {
	t.Helper()
	b, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "http:\n  listen: \"off\"\n", "http:\n  listen: \"127.0.0.1:0\"\n", 1)
	if cfg == string(b) {
		t.Fatal("the sandbox configuration no longer has `http: listen: \"off\"`: update daemonConfig")
	}
	cfg = "schedule: \"@every 1s\"\nfull_schedule: \"off\"\nshutdown_timeout: 10s\nlog:\n  format: json\n" + cfg
	if err := os.WriteFile(env.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(env.ConfigPath); err != nil {
		t.Fatalf("rewritten config: %v", err)
	}
}

// The systemd protocol, end to end: the real binary under a stand-in for systemd sends
// READY=1, pings the watchdog, reports each run in STATUS=, serves /readyz and /metrics,
// says STOPPING=1 on SIGTERM and exits 0 within its shutdown bound.
func TestDaemonSystemdProtocol(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(7), testenv.SQLite)
	env.Authorized(t)
	daemonConfig(t, env)
	sd := daemonNotifySocket(t)

	cmd := exec.Command(leadsyncBin, "run", "--config", env.ConfigPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sd.path, "WATCHDOG_USEC=2000000", // pings every second
		"WATCHDOG_PID=", "LEADSYNC_CONFIG=", "CREDENTIALS_DIRECTORY=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := daemonReadLog(t, stderr)
	go func() { <-logs.done; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	sd.wait(t, "READY=1", daemonIs("READY=1"))
	url := logs.field(t, "serving metrics and health", "url")
	status := sd.wait(t, "a STATUS= line after a run", func(m string) bool { return strings.HasPrefix(m, "STATUS=last run (") })
	if !regexp.MustCompile(`^STATUS=last run \(sandbox-[a-z]+\): ok, \d+ ok, \d+ restricted, 0 failed, \d+ leads written$`).MatchString(status) {
		t.Errorf("status after a run: %q", status)
	}
	for sd.seen["WATCHDOG=1"] < 2 {
		sd.wait(t, "two WATCHDOG=1 pings", daemonIs("WATCHDOG=1"))
	}

	if code, body := daemonGet(t, url+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz of a healthy daemon: %d %q", code, body)
	}
	_, body := daemonGet(t, url+"/metrics")
	if m := daemonParse(t, body); daemonSum(m, "leadsync_runs_total", `trigger="cron"`, `status="ok"`) < 1 {
		t.Errorf("/metrics counts no successful cron run:\n%s", daemonGrep(body, "leadsync_runs"))
	}
	// The build's version, as `leadsync --version` says it, in the metrics and the log.
	short, err := exec.Command(leadsyncBin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(strings.TrimPrefix(string(short), "leadsync "))
	if !strings.Contains(body, `leadsync_build_info{version="`+version+`"} 1`) {
		t.Errorf("/metrics has no build info for version %q:\n%s", version, daemonGrep(body, "leadsync_build_info"))
	}
	if got := logs.field(t, "leadsync started", "version"); got != version {
		t.Errorf("start-up log: version %q, want %q", got, version)
	}

	stopAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sd.wait(t, "STOPPING=1 after SIGTERM", daemonIs("STOPPING=1"))
	bound := 10*time.Second + ops.StopMargin // shutdown_timeout + margin, as in the unit
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v (want status 0)", err)
		}
		t.Logf("stopped in %v", time.Since(stopAt).Round(time.Millisecond))
	case <-time.After(bound):
		t.Fatalf("daemon still running %v after SIGTERM", bound)
	}
	if !strings.Contains(logs.text(), `"msg":"leadsync stopped"`) {
		t.Errorf("no clean stop in the log")
	}
}

// The unit gives the daemon exactly its shutdown bound before systemd kills it.
func TestDaemonUnitStopTimeoutMatchesShutdownBound(t *testing.T) {
	t.Parallel()
	want := config.DefaultShutdownTimeout + ops.StopMargin
	for _, unit := range []string{"leadsync.service", "leadsync-once@.service"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no TimeoutStopSec=", unit)
			continue
		}
		got, err := time.ParseDuration(string(m[1]))
		if err != nil || got != want {
			t.Errorf("%s: TimeoutStopSec=%s, want %v (shutdown_timeout default %v + ops.StopMargin %v)",
				unit, m[1], want, config.DefaultShutdownTimeout, ops.StopMargin)
		}
	}
}

// daemonBundle is leadsync wired in-process with its ops endpoint, over a sandbox.
type daemonBundle struct {
	env *testenv.Env
	app *app.App
	url string
}

func daemonSetup(t *testing.T, opts testenv.Options) *daemonBundle {
	t.Helper()
	env := testenv.New(t, opts, testenv.SQLite)
	a := env.Authorized(t)
	srv, err := ops.StartServer("127.0.0.1:0", ops.NewHandler(a.Metrics, a.Ready), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &daemonBundle{env: env, app: a, url: srv.URL()}
}

func (b *daemonBundle) run(t *testing.T, conns ...string) worker.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := b.app.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce, Connections: conns})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (b *daemonBundle) metrics(t *testing.T) (map[string]float64, string) {
	t.Helper()
	code, body := daemonGet(t, b.url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	return daemonParse(t, body), body
}

// After sandbox syncs (with 429s), /metrics agrees with the ledger: connections' runs by
// status (sync_run_connections), leads written, accounts by outcome, vendor requests and
// 429s (sync_runs), and each connection's runs and leads with its own rows.
func TestDaemonMetricsMatchRunLedger(t *testing.T) {
	t.Parallel()
	b := daemonSetup(t, testenv.Small(11))
	b.env.Sandbox.SetFaults(simkit.FaultSettings{Rate429: 0.05}) // after authorization: token calls are never retried
	b.run(t)
	b.run(t) // an incremental run on top

	var ledger struct {
		runs, runsOK, ok, failed, restricted, leads, requests, throttled int64
	}
	db := b.env.OpenDB(t)
	err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM sync_run_connections),
		(SELECT COALESCE(SUM(status = 'ok'), 0) FROM sync_run_connections), SUM(accounts_ok), SUM(accounts_failed),
		SUM(accounts_restricted), SUM(leads_written), SUM(requests), SUM(throttled) FROM sync_runs`).Scan(
		&ledger.runs, &ledger.runsOK, &ledger.ok, &ledger.failed, &ledger.restricted, &ledger.leads, &ledger.requests, &ledger.throttled)
	if err != nil {
		t.Fatal(err)
	}
	type connLedger struct{ runs, leads int64 }
	perConn := map[string]connLedger{}
	rows, err := db.Query(`SELECT connection, COUNT(*), SUM(leads_written) FROM sync_run_connections GROUP BY connection`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var conn string
		var l connLedger
		if err := rows.Scan(&conn, &l.runs, &l.leads); err != nil {
			t.Fatal(err)
		}
		perConn[conn] = l
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(perConn) != 3 {
		t.Errorf("sync_run_connections covers %d connections, want the sandbox's 3", len(perConn))
	}
	if ledger.throttled == 0 || ledger.restricted == 0 || ledger.leads == 0 {
		t.Fatalf("the sandbox runs should have throttled, restricted and written something: %+v", ledger)
	}
	m, body := b.metrics(t)
	for _, c := range []struct {
		what string
		got  float64
		want int64
	}{
		{"runs", daemonSum(m, "leadsync_runs_total", `trigger="once"`), ledger.runs},
		{"ok runs", daemonSum(m, "leadsync_runs_total", `trigger="once"`, `status="ok"`), ledger.runsOK},
		{"accounts ok", daemonSum(m, "leadsync_accounts_synced_total", `outcome="ok"`), ledger.ok},
		{"accounts failed", daemonSum(m, "leadsync_accounts_synced_total", `outcome="failed"`), ledger.failed},
		{"accounts restricted", daemonSum(m, "leadsync_accounts_synced_total", `outcome="restricted"`), ledger.restricted},
		{"leads written", daemonSum(m, "leadsync_leads_written_total"), ledger.leads},
		{"vendor requests", daemonSum(m, "leadsync_http_requests_total"), ledger.requests},
		{"429 answers", daemonSum(m, "leadsync_http_throttled_total"), ledger.throttled},
	} {
		if int64(c.got) != c.want {
			t.Errorf("%s: /metrics says %v, sync_runs says %d", c.what, c.got, c.want)
		}
	}
	for conn, l := range perConn {
		label := `connection="` + conn + `"`
		if got := daemonSum(m, "leadsync_runs_total", label); int64(got) != l.runs {
			t.Errorf("%s: /metrics counts %v runs, sync_run_connections %d", conn, got, l.runs)
		}
		if got := daemonSum(m, "leadsync_leads_written_total", label); int64(got) != l.leads {
			t.Errorf("%s: /metrics counts %v leads written, sync_run_connections %d", conn, got, l.leads)
		}
	}
	if got := daemonSum(m, "leadsync_runs_in_progress"); got != 0 {
		t.Errorf("runs in progress after the runs: %v", got)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", daemonGrep(body, "leadsync_"))
	}
}

// A grant the vendor revoked makes /readyz 503 naming the connection and the fix, flags it
// in /metrics, and `auth login` clears both. The other connections keep syncing.
func TestDaemonReadyzDegradedWhenGrantNeedsReauth(t *testing.T) {
	t.Parallel()
	b := daemonSetup(t, testenv.Small(13))
	if code, body := daemonGet(t, b.url+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with every grant fresh: %d %q", code, body)
	}
	for _, g := range b.env.Sandbox.LACRM.Tokens().Grants() {
		b.env.Sandbox.LACRM.RevokeGrant(g.ID)
	}
	res := b.run(t)
	if res.Status != sink.RunFailed || res.Stats.AccountsOK == 0 {
		t.Fatalf("run with a revoked LACRM grant: %s, %+v (want failed, other accounts ok)", res.Status, res.Stats)
	}

	code, body := daemonGet(t, b.url+"/readyz")
	want := "not ready: connection sandbox-lacrm needs re-authorization ("
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, want) ||
		!strings.HasSuffix(body, "run `leadsync auth login sandbox-lacrm`\n") {
		t.Errorf("/readyz with a revoked grant: %d %q, want 503 %q...", code, body, want)
	}
	m, _ := b.metrics(t)
	for series, want := range map[string]float64{
		`leadsync_grant_needs_reauth{connection="sandbox-lacrm",source="lacrm"}`:                 1,
		`leadsync_grant_needs_reauth{connection="sandbox-localiq",source="localiq"}`:             0,
		`leadsync_grant_needs_reauth{connection="sandbox-leadconnector",source="leadconnector"}`: 0,
		`leadsync_token_refreshes_total{result="invalid_grant",source="lacrm"}`:                  1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (exported %v), want %v", series, got, ok, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := b.app.Conn("sandbox-lacrm")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.app.Login(ctx, c, sandbox.Browser, nil, io.Discard, time.Minute); err != nil {
		t.Fatal(err)
	}
	if code, body := daemonGet(t, b.url+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after auth login: %d %q", code, body)
	}
	if m, _ := b.metrics(t); m[`leadsync_grant_needs_reauth{connection="sandbox-lacrm",source="lacrm"}`] != 0 {
		t.Errorf("grant still flagged after auth login")
	}
	if res := b.run(t, "sandbox-lacrm"); res.Status != sink.RunOK {
		t.Errorf("LACRM after auth login: %s %v", res.Status, res.Failures)
	}
}

// A connection that was never authorized is not ready either.
func TestDaemonReadyzWithoutGrant(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(17), testenv.SQLite)
	a := env.App(t)
	err := a.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection sandbox-leadconnector is not authorized: run `leadsync auth login sandbox-leadconnector`") {
		t.Fatalf("Ready without grants: %v", err)
	}
	gs, err := a.Grants(context.Background())
	if err != nil || len(gs) != 3 || !gs[0].NeedsReauth {
		t.Fatalf("Grants without grants: %+v %v", gs, err)
	}
}

// Token refreshes at the vendor are counted by source and result; the count matches the
// refreshes the vendor saw.
func TestDaemonTokenRefreshMetrics(t *testing.T) {
	t.Parallel()
	opts := testenv.Small(19)
	// The store refreshes half-way through a token's life: after 2 s here.
	opts.LACRM.TokenTTL = 4 * time.Second
	b := daemonSetup(t, opts)
	testenv.AwaitRefreshDue(t, b.app.Store, "sandbox-lacrm")
	res := b.run(t, "sandbox-lacrm")
	if res.Status != sink.RunOK {
		t.Fatalf("run: %s %v", res.Status, res.Failures)
	}
	vendor := b.env.Sandbox.LACRM.Counters().Get(simkit.CountRefreshes)
	if vendor == 0 {
		t.Fatal("the LACRM grant was never refreshed: the test no longer exercises refreshes")
	}
	m, body := b.metrics(t)
	if got := m[`leadsync_token_refreshes_total{result="ok",source="lacrm"}`]; int64(got) != vendor {
		t.Errorf("token_refreshes_total{lacrm,ok} = %v, the vendor refreshed %d times\n%s", got, vendor,
			daemonGrep(body, "leadsync_token_refreshes"))
	}
	// The ledger's requests include the run's token calls; http_requests_total does not.
	if api, refreshes := daemonSum(m, "leadsync_http_requests_total"), daemonSum(m, "leadsync_token_refreshes_total"); int64(api+refreshes) != res.Stats.Requests {
		t.Errorf("sync_runs.requests %d != http_requests_total %v + token_refreshes_total %v", res.Stats.Requests, api, refreshes)
	}
	if got := daemonSum(m, "leadsync_token_refreshes_total", `result="invalid_grant"`) +
		daemonSum(m, "leadsync_token_refreshes_total", `result="failed"`); got != 0 {
		t.Errorf("failed refreshes counted: %v", got)
	}
	if got := m[`leadsync_grant_needs_reauth{connection="sandbox-lacrm",source="lacrm"}`]; got != 0 {
		t.Errorf("needs_reauth after good refreshes: %v", got)
	}
	if n := daemonSum(m, "leadsync_token_refreshes_total", `source="`+sources.LocaliQ+`"`); n != 0 {
		t.Errorf("LocaliQ was not synced, yet %v refreshes are counted", n)
	}
}

func daemonGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), daemonWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// daemonParse reads the Prometheus text format: series (name{labels}, as exposed) → value.
func daemonParse(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// daemonSum adds the series of metric name whose labels contain every one of labels.
func daemonSum(m map[string]float64, name string, labels ...string) float64 {
	var sum float64
next:
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		sum += v
	}
	return sum
}

func daemonGrep(body, prefix string) string {
	var out []string
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, prefix) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
