package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
	"github.com/leadsync/leadsync/store"
	"github.com/leadsync/leadsync/store/internal/tokensrv"
)

// The cross-process tests re-execute this test binary as helper processes sharing one store.
const helperEnv = "LEADSYNC_STORE_HELPER"

// Workers reject (Invalidate) every token they used, as an API would, so a run does hundreds
// of refreshes in a few seconds of real time. Tokens live far longer than a call can take on
// a loaded machine, so a token in use never expires: each failure is the protocol's.
const crossTTL = time.Minute

// Helper exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitNeedsReauth = 3
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

type helperSummary struct {
	Calls    int64    `json:"calls"`
	Failures int64    `json:"failures"`
	Errors   []string `json:"errors,omitempty"`
}

// helperMain is a worker process: goroutines that take the grant's token and call the LACRM
// sandbox's API until it has done target refreshes (target 0: until killed). Tokens are
// refreshed with the real LACRM Refresher.
func helperMain() int {
	env := func(k string) string { return os.Getenv("HELPER_" + k) }
	key, _ := hex.DecodeString(env("KEY"))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	st, err := store.Open(ctx, env("URL"), store.Options{Key: key, Logger: log, PostgresSchema: env("SCHEMA"),
		TokenCallTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return exitFailed
	}
	defer st.Close()
	base := env("SANDBOX_URL")
	refresher := lacrm.Config{TokenURL: base + "/oauth/token.php", ClientID: lacrmtest.DefaultClientID,
		ClientSecret: lacrmtest.DefaultClientSecret, Logger: log}.Refresher()
	httpc := &http.Client{Timeout: 10 * time.Second}
	target, _ := strconv.ParseInt(env("TARGET"), 10, 64)
	workers, _ := strconv.Atoi(env("WORKERS"))
	grant := st.Tokens(conn, refresher).Grant()

	var (
		sum       helperSummary
		mu        sync.Mutex
		reauth    atomic.Bool
		wg        sync.WaitGroup
		done      atomic.Bool
		deadline  = time.Now().Add(60 * time.Second)
		recordErr = func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			sum.Failures++
			if len(sum.Errors) < 5 {
				sum.Errors = append(sum.Errors, msg)
			}
		}
	)
	for range workers {
		wg.Go(func() {
			for !done.Load() && time.Now().Before(deadline) {
				tok, err := grant.Token(ctx)
				if errors.Is(err, sources.ErrNeedsReauth) {
					reauth.Store(true)
					done.Store(true)
					return
				}
				if err != nil {
					recordErr(err.Error())
					continue
				}
				status, refreshes, err := callLACRM(ctx, httpc, base, tok.AccessToken)
				atomic.AddInt64(&sum.Calls, 1)
				if err != nil || status != http.StatusOK {
					recordErr(fmt.Sprintf("api: status %d err %v", status, err))
				}
				grant.Invalidate(tok)
				if target > 0 && refreshes >= target {
					done.Store(true)
				}
			}
		})
	}
	wg.Wait()
	_ = json.NewEncoder(os.Stdout).Encode(&sum)
	switch {
	case reauth.Load():
		return exitNeedsReauth
	case sum.Failures > 0 || !done.Load():
		return exitFailed
	}
	return exitOK
}

// callLACRM makes one API call (GetUser); the sandbox proxy reports its refresh count.
func callLACRM(ctx context.Context, c *http.Client, base, access string) (status int, refreshes int64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/", strings.NewReader(`{"Function":"GetUser","Parameters":{}}`))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	n, _ := strconv.ParseInt(resp.Header.Get("X-Refreshes"), 10, 64)
	return resp.StatusCode, n, nil
}

// lacrmSandbox is the LACRM fake (reuse of a refresh token revokes the whole grant: the
// strictest vendor) behind a proxy that reports the refresh count to workers, counts API
// answers, and lets a test act at each phase of a refresh request.
type lacrmSandbox struct {
	url             string
	fake            *lacrmtest.Fake
	apiOK, apiNotOK atomic.Int64
	mu              sync.Mutex
	hook            func(tokensrv.Phase) (drop bool)
}

func newLACRMSandbox(t *testing.T, ttl time.Duration) *lacrmSandbox {
	sb := &lacrmSandbox{fake: lacrmtest.New(lacrmtest.Options{TokenTTL: ttl, RateLimit: simkit.Window{Limit: -1}})}
	srv := httptest.NewServer(sb.proxy(sb.fake.Handler()))
	t.Cleanup(srv.Close)
	sb.url = srv.URL
	return sb
}

// lacrmRefresher is the real LACRM Refresher, pointed at the sandbox.
func lacrmRefresher(sb *lacrmSandbox) store.Refresher {
	return lacrm.Config{TokenURL: sb.url + "/oauth/token.php", ClientID: lacrmtest.DefaultClientID,
		ClientSecret: lacrmtest.DefaultClientSecret}.Refresher()
}

func (sb *lacrmSandbox) counters() *simkit.Counters { return sb.fake.Counters() }

// authorize is what `leadsync auth login` would get: a fresh grant for the sandbox user.
func (sb *lacrmSandbox) authorize() *oauth2.Token {
	p := sb.fake.Authorize("")
	return &oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, TokenType: "Bearer", Expiry: p.Expiry}
}

func (sb *lacrmSandbox) onRefresh(f func(tokensrv.Phase) bool) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.hook = f
}

func (sb *lacrmSandbox) fire(p tokensrv.Phase) bool {
	sb.mu.Lock()
	f := sb.hook
	sb.mu.Unlock()
	return f != nil && f(p)
}

func (sb *lacrmSandbox) proxy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refreshes := func() string { return strconv.FormatInt(sb.counters().Get(simkit.CountRefreshes), 10) }
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token.php" {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			if strings.HasPrefix(r.URL.Path, "/v2") {
				if rec.Code == http.StatusOK {
					sb.apiOK.Add(1)
				} else {
					sb.apiNotOK.Add(1)
				}
			}
			copyResponse(w, rec, refreshes())
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		isRefresh := strings.Contains(string(body), `"refresh_token"`)
		if isRefresh && sb.fire(tokensrv.PhaseReceived) {
			panic(http.ErrAbortHandler) // the client died before its request was handled
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if isRefresh && rec.Code == http.StatusOK && sb.fire(tokensrv.PhaseRotated) {
			panic(http.ErrAbortHandler) // rotated, but the client never sees the pair
		}
		copyResponse(w, rec, refreshes())
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if isRefresh && rec.Code == http.StatusOK {
			sb.fire(tokensrv.PhaseResponded)
		}
	})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder, refreshes string) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("X-Refreshes", refreshes)
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// LACRM token values start with these; the leak checks grep for them.
var lacrmTokenPrefixes = []string{"lacrm_at_", "lacrm_rt_"}

func leaks(s string) bool {
	for _, p := range lacrmTokenPrefixes {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

type crossBundle struct {
	*testBundle
	sb     *lacrmSandbox
	key    []byte
	schema string
}

// setupCross opens a store on b with the real clock (processes cannot share a manual one),
// starts the LACRM sandbox with a short token lifetime, and saves a grant.
func setupCross(t *testing.T, b backend) *crossBundle {
	t.Helper()
	url, opts, raw, files := b.newDB(t)
	logs := &syncBuffer{}
	opts.Key = newKey(t)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tb := &testBundle{url: url, opts: opts, raw: raw, files: files, logs: logs}
	tb.st = tb.open(t)
	cb := &crossBundle{testBundle: tb, sb: newLACRMSandbox(t, crossTTL), key: opts.Key, schema: opts.PostgresSchema}
	if err := tb.st.Save(context.Background(), conn, cb.sb.authorize()); err != nil {
		t.Fatal(err)
	}
	return cb
}

// helper prepares a worker process.
func (cb *crossBundle) helper(workers int, target int64) (*exec.Cmd, *bytes.Buffer, *syncBuffer) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_KEY="+hex.EncodeToString(cb.key), "HELPER_URL="+cb.url, "HELPER_SCHEMA="+cb.schema,
		"HELPER_SANDBOX_URL="+cb.sb.url, "HELPER_TARGET="+strconv.FormatInt(target, 10),
		"HELPER_WORKERS="+strconv.Itoa(workers))
	stdout, stderr := &bytes.Buffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// Two processes with eight goroutines each share one store through ≥200 refreshes against
// the LACRM sandbox, which revokes the grant on any refresh-token reuse.
func TestCrossProcessRefresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		cb := setupCross(t, b)
		const target = 200
		var logs []*syncBuffer
		var outs []*bytes.Buffer
		var cmds []*exec.Cmd
		for range 2 {
			cmd, out, errOut := cb.helper(8, target)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs, logs = append(cmds, cmd), append(outs, out), append(logs, errOut)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("process %d: %v\nstdout: %s\nstderr tail: %s", i, err, outs[i], tail(logs[i].String()))
			}
			var sum helperSummary
			if err := json.Unmarshal(outs[i].Bytes(), &sum); err != nil || sum.Calls == 0 || sum.Failures != 0 {
				t.Errorf("process %d summary %+v (%v)", i, sum, err)
			}
		}
		c := cb.sb.counters()
		if got := c.Get(simkit.CountRefreshes); got < target {
			t.Errorf("only %d refreshes", got)
		}
		if c.Get(simkit.CountRefreshReuse) != 0 || c.Get(simkit.CountRevokedGrants) != 0 || cb.sb.apiNotOK.Load() != 0 {
			t.Errorf("reuse=%d revoked=%d failed API calls=%d", c.Get(simkit.CountRefreshReuse),
				c.Get(simkit.CountRevokedGrants), cb.sb.apiNotOK.Load())
		}
		for i, l := range logs {
			if !strings.Contains(l.String(), "refreshed grant") {
				t.Errorf("process %d never refreshed", i)
			}
		}
		t.Logf("%s: %d refreshes, %d API calls, %d reuse", b.name, c.Get(simkit.CountRefreshes), cb.sb.apiOK.Load(),
			c.Get(simkit.CountRefreshReuse))
		// No token value in the database files or any process's logs.
		all := cb.rawDump(t) + cb.logs.String()
		for _, l := range logs {
			all += l.String()
		}
		if leaks(all) {
			t.Error("a token value reached the database files or the logs")
		}
	})
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// A worker process is SIGKILLed at chosen points around refreshes, again and again. After
// each restart the grant still works. The only refresh-token reuse allowed is the documented
// one (killed after the vendor rotated, before the store wrote the pair): it must be
// detected as needs_reauth, and a new login recovers.
func TestCrashDuringRefresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		kills := 50
		if testing.Short() {
			kills = 10
		}
		seed := uint64(time.Now().UnixNano())
		if s, err := strconv.ParseUint(os.Getenv("STORE_CRASH_SEED"), 10, 64); err == nil {
			seed = s
		}
		t.Logf("seed %d (STORE_CRASH_SEED)", seed)
		rnd := rand.New(rand.NewPCG(seed, seed))
		cb := setupCross(t, b)
		c := cb.sb.counters()

		type killPlan struct {
			at    int64 // kill at this generation's at-th refresh request
			phase tokensrv.Phase
			seen  int64
			cmd   *exec.Cmd
			fired bool
		}
		var (
			mu   sync.Mutex
			plan *killPlan
		)
		cb.sb.onRefresh(func(p tokensrv.Phase) bool {
			mu.Lock()
			defer mu.Unlock()
			if plan == nil || plan.fired {
				return false
			}
			if p == tokensrv.PhaseReceived {
				plan.seen++
			}
			if plan.seen == plan.at && p == plan.phase {
				plan.fired = true
				_ = plan.cmd.Process.Kill()
				return true
			}
			return false
		})

		var reauths, lossKills int
		lastPhase := tokensrv.PhaseReceived
		phases := []tokensrv.Phase{tokensrv.PhaseReceived, tokensrv.PhaseRotated, tokensrv.PhaseResponded}
		for done := 0; done < kills; {
			p := &killPlan{at: 2 + rnd.Int64N(3), phase: phases[rnd.IntN(len(phases))]}
			cmd, out, errOut := cb.helper(4, 0)
			okBefore := cb.sb.apiOK.Load()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			p.cmd = cmd
			plan = p // refreshes before this are not counted: harmless
			mu.Unlock()
			err := cmd.Wait()
			mu.Lock()
			fired := p.fired
			plan = nil
			mu.Unlock()
			switch {
			case fired:
				done++
				if p.phase != tokensrv.PhaseReceived {
					lossKills++
				}
				lastPhase = p.phase
				if cb.sb.apiOK.Load() == okBefore {
					t.Fatalf("kill %d: the restarted process made no successful API call before the kill", done)
				}
			case cmd.ProcessState.ExitCode() == exitNeedsReauth:
				// The previous kill lost a rotated token: detected, exactly once per loss.
				if lastPhase == tokensrv.PhaseReceived {
					t.Fatal("a kill before the vendor rotated anything cost the grant")
				}
				lastPhase = tokensrv.PhaseReceived // the next needs-reauth needs a new loss
				reauths++
				st, _ := cb.st.Status(context.Background())
				if len(st) != 1 || !st[0].NeedsReauth || !strings.Contains(st[0].Reason, "invalid_grant") {
					t.Fatalf("needs-reauth exit but Status = %+v", st)
				}
				if err := cb.st.Save(context.Background(), conn, cb.sb.authorize()); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("worker exited (%v) without being killed\nstdout: %s\nstderr: %s", err, out, tail(errOut.String()))
			}
			if reuse := c.Get(simkit.CountRefreshReuse); reuse != int64(reauths) && reuse != int64(reauths)+1 {
				t.Fatalf("server saw %d reuses but the store reported %d needs-reauth", reuse, reauths)
			}
		}
		// A last worker proves the grant works (after a re-login if the last kill lost it).
		for {
			cmd, out, errOut := cb.helper(4, c.Get(simkit.CountRefreshes)+20)
			err := cmd.Run()
			if cmd.ProcessState.ExitCode() == exitNeedsReauth && lastPhase != tokensrv.PhaseReceived {
				lastPhase = tokensrv.PhaseReceived
				reauths++
				if err := cb.st.Save(context.Background(), conn, cb.sb.authorize()); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("final worker: %v\nstdout: %s\nstderr: %s", err, out, tail(errOut.String()))
			}
			break
		}
		reuse := c.Get(simkit.CountRefreshReuse)
		if reuse != int64(reauths) || reauths > lossKills {
			t.Fatalf("reuse=%d, needs-reauth=%d, kills after a rotation=%d", reuse, reauths, lossKills)
		}
		t.Logf("%s: %d kills (%d after the vendor rotated), %d refreshes, %d lost rotations detected as needs_reauth, 0 undetected reuse",
			b.name, kills, lossKills, c.Get(simkit.CountRefreshes), reauths)
	})
}
