package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

// observer is the httpx Observer contract (sources/httpx); Metrics must satisfy it.
type observer interface {
	Request(vendor, endpoint string, status int, d time.Duration)
	Retry(vendor, endpoint, reason string)
}

var _ observer = (*Metrics)(nil)

type testBundle struct {
	metrics *Metrics
	srv     *Server
	clock   *manualClock

	mu       sync.Mutex
	notReady error
}

type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{
		metrics: NewMetrics("1.2.3"),
		clock:   &manualClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
	}
	b.metrics.accounts.now = b.clock.Now
	ready := func(ctx context.Context) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.notReady
	}
	srv, err := StartServer("127.0.0.1:0", NewHandler(b.metrics, ready), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	b.srv = srv
	return b
}

func (b *testBundle) setReady(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notReady = err
}

func (b *testBundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(b.srv.URL() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if code, body := b.get(t, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := b.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
	b.setReady(fmt.Errorf("warehouse: ping: %w", errors.New("connection refused\n(retrying)")))
	if code, body := b.get(t, "/readyz"); code != http.StatusServiceUnavailable ||
		body != "not ready: warehouse: ping: connection refused (retrying)\n" {
		t.Errorf("/readyz when not ready: %d %q", code, body)
	}
	if code, _ := b.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz must stay 200 while not ready: %d", code)
	}
	b.setReady(nil)
	if code, _ := b.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz after recovery: %d", code)
	}
	if code, _ := b.get(t, "/nope"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.metrics

	m.RunStarted("cron", "agency")
	m.RunStarted("cron", "liq")
	m.Request("leadconnector", "contacts/search", 200, 120*time.Millisecond)
	m.Request("leadconnector", "contacts/search", 429, 10*time.Millisecond)
	m.Request("localiq", "crm/contact_interactions", 0, time.Second)
	m.Retry("leadconnector", "contacts/search", "429")
	m.LeadsWritten("agency", "leadconnector", 42)
	m.LeadsWritten("agency", "leadconnector", 0)
	m.RecordsRejected("localiq", 2)
	m.AccountSynced("agency", "leadconnector", "LOC1", OutcomeOK, 3*time.Second)
	m.AccountSynced("agency", "leadconnector", "LOC2", OutcomeFailed, time.Second)
	m.AccountSynced("liq", "localiq", "USA_1", OutcomeRestricted, time.Second)
	m.SeedAccount("liq", "localiq", "USA_2", b.clock.Now().Add(-time.Hour))
	m.TokenRefreshed("lacrm", nil)
	m.TokenRefreshed("lacrm", &oauth2.RetrieveError{ErrorCode: "invalid_grant"})
	m.TokenRefreshed("localiq", fmt.Errorf("store: %w", sources.ErrNeedsReauth))
	m.TokenRefreshed("localiq", errors.New("dial tcp: timeout"))
	m.SetNeedsReauth("crm", "lacrm", true)
	b.clock.Advance(10 * time.Minute)
	m.RunFinished("cron", "agency", "failed", 5*time.Minute)
	m.RunFinished("cron", "liq", "ok", time.Minute)

	code, body := b.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`leadsync_build_info{version="1.2.3"} 1`,
		`leadsync_runs_total{connection="agency",status="failed",trigger="cron"} 1`,
		`leadsync_runs_total{connection="liq",status="ok",trigger="cron"} 1`,
		`leadsync_runs_in_progress{connection="agency",trigger="cron"} 0`,
		`leadsync_runs_in_progress{connection="liq",trigger="cron"} 0`,
		`leadsync_run_duration_seconds_count{connection="agency",trigger="cron"} 1`,
		`leadsync_run_duration_seconds_sum{connection="agency",trigger="cron"} 300`,
		`leadsync_run_last_finished_timestamp_seconds{connection="agency",status="failed",trigger="cron"} 1.772367e+09`,
		`leadsync_run_last_finished_timestamp_seconds{connection="liq",status="ok",trigger="cron"} 1.772367e+09`,
		`leadsync_http_requests_total{code="200",endpoint="contacts/search",vendor="leadconnector"} 1`,
		`leadsync_http_requests_total{code="429",endpoint="contacts/search",vendor="leadconnector"} 1`,
		`leadsync_http_requests_total{code="error",endpoint="crm/contact_interactions",vendor="localiq"} 1`,
		`leadsync_http_throttled_total{endpoint="contacts/search",vendor="leadconnector"} 1`,
		`leadsync_http_retries_total{endpoint="contacts/search",reason="429",vendor="leadconnector"} 1`,
		`leadsync_http_request_duration_seconds_count{endpoint="contacts/search",vendor="leadconnector"} 2`,
		`leadsync_leads_written_total{connection="agency",source="leadconnector"} 42`,
		`leadsync_records_rejected_total{source="localiq"} 2`,
		`leadsync_accounts_synced_total{connection="agency",outcome="ok",source="leadconnector"} 1`,
		`leadsync_accounts_synced_total{connection="agency",outcome="failed",source="leadconnector"} 1`,
		`leadsync_accounts_synced_total{connection="liq",outcome="restricted",source="localiq"} 1`,
		`leadsync_account_sync_duration_seconds_count{source="leadconnector"} 2`,
		`leadsync_account_last_success_timestamp_seconds{account="LOC1",connection="agency",source="leadconnector"} 1.7723664e+09`,
		`leadsync_account_lag_seconds{account="LOC1",connection="agency",source="leadconnector"} 600`,
		// Never succeeded in this process: the lag counts from when it was first seen.
		`leadsync_account_lag_seconds{account="LOC2",connection="agency",source="leadconnector"} 600`,
		// Seeded from the warehouse: the lag includes the time before this process started.
		`leadsync_account_lag_seconds{account="USA_2",connection="liq",source="localiq"} 4200`,
		`leadsync_account_restricted{account="USA_1",connection="liq",source="localiq"} 1`,
		`leadsync_account_restricted{account="LOC1",connection="agency",source="leadconnector"} 0`,
		`leadsync_token_refreshes_total{result="ok",source="lacrm"} 1`,
		`leadsync_token_refreshes_total{result="invalid_grant",source="lacrm"} 1`,
		`leadsync_token_refreshes_total{result="invalid_grant",source="localiq"} 1`,
		`leadsync_token_refreshes_total{result="failed",source="localiq"} 1`,
		`leadsync_grant_needs_reauth{connection="crm",source="lacrm"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `leadsync_account_last_success_timestamp_seconds{account="USA_1"`) {
		t.Errorf("a restricted account has no successful sync to report")
	}

	m.AccountsListed("agency", "leadconnector", []string{"LOC1"}) // LOC2 was uninstalled
	m.SetNeedsReauth("crm", "lacrm", false)
	_, body = b.get(t, "/metrics")
	if strings.Contains(body, `account="LOC2"`) {
		t.Errorf("an uninstalled account is still exported")
	}
	if !strings.Contains(body, `leadsync_account_lag_seconds{account="LOC1",connection="agency"`) {
		t.Errorf("a listed account was dropped")
	}
	if !strings.Contains(body, `leadsync_grant_needs_reauth{connection="crm",source="lacrm"} 0`) {
		t.Errorf("re-authorized grant still flagged")
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.RunStarted("cron", "c")
	m.RunFinished("cron", "c", "ok", time.Second)
	m.Request("lacrm", "GetContacts", 200, time.Second)
	m.Retry("lacrm", "GetContacts", "5xx")
	m.AccountSynced("c", "lacrm", "1", OutcomeOK, time.Second)
	m.SeedAccount("c", "lacrm", "1", time.Now())
	m.AccountsListed("c", "lacrm", nil)
	m.LeadsWritten("c", "lacrm", 1)
	m.RecordsRejected("lacrm", 1)
	m.TokenRefreshed("lacrm", nil)
	m.SetNeedsReauth("c", "lacrm", true)
}

func TestServerShutdown(t *testing.T) {
	t.Parallel()
	srv, err := StartServer("127.0.0.1:0", NewHandler(nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartServer(srv.Addr(), NewHandler(nil, nil), nil); err == nil || !strings.Contains(err.Error(), srv.Addr()) {
		t.Errorf("a port in use must fail at start, naming the address: %v", err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if resp, err := http.Get(srv.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("server still answers after Shutdown")
	}
}

// The needs-reauth gauge follows the token store at each scrape: a grant fixed by
// `leadsync auth login` in another process is cleared without an event in this one.
func TestGrantsAreReadAtScrape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	states := []GrantState{{Connection: "crm", Source: "lacrm", NeedsReauth: true}, {Connection: "liq", Source: "localiq"}}
	var fail error
	b.metrics.WatchGrants(func(ctx context.Context) ([]GrantState, error) {
		mu.Lock()
		defer mu.Unlock()
		return states, fail
	})
	_, body := b.get(t, "/metrics")
	for _, want := range []string{
		`leadsync_grant_needs_reauth{connection="crm",source="lacrm"} 1`,
		`leadsync_grant_needs_reauth{connection="liq",source="localiq"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	mu.Lock()
	states[0].NeedsReauth = false
	mu.Unlock()
	if _, body = b.get(t, "/metrics"); !strings.Contains(body, `leadsync_grant_needs_reauth{connection="crm",source="lacrm"} 0`) {
		t.Errorf("re-authorized grant still flagged")
	}
	// The store failing keeps the last known values (and /readyz says why).
	b.metrics.SetNeedsReauth("crm", "lacrm", true)
	mu.Lock()
	fail = errors.New("database is locked")
	mu.Unlock()
	if _, body = b.get(t, "/metrics"); !strings.Contains(body, `leadsync_grant_needs_reauth{connection="crm",source="lacrm"} 1`) {
		t.Errorf("a failed grant listing must not clear the gauge")
	}
}

// A run whose start was not reported must not drive runs_in_progress below zero; one that
// was is counted while it runs.
func TestRunsInProgressNeverNegative(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.metrics
	m.RunFinished("once", "crm", "ok", time.Second)
	m.RunStarted("cron", "crm")
	m.RunStarted("cron", "crm")
	m.RunStarted("cron", "liq")
	_, body := b.get(t, "/metrics")
	for _, want := range []string{`leadsync_runs_in_progress{connection="crm",trigger="once"} 0`,
		`leadsync_runs_in_progress{connection="crm",trigger="cron"} 2`, `leadsync_runs_in_progress{connection="liq",trigger="cron"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	m.RunFinished("cron", "crm", "ok", time.Second)
	if _, body = b.get(t, "/metrics"); !strings.Contains(body, `leadsync_runs_in_progress{connection="crm",trigger="cron"} 1`) ||
		!strings.Contains(body, `leadsync_runs_in_progress{connection="liq",trigger="cron"} 1`) {
		t.Errorf("one cron run of each connection still in progress:\n%s", body)
	}
}
