// Package ops is the daemon's operational surface: Prometheus metrics, the /metrics,
// /healthz and /readyz endpoint, and systemd notifications (readiness, status, watchdog).
package ops

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

// Account sync outcomes (the outcome label).
const (
	OutcomeOK         = "ok"
	OutcomeFailed     = "failed"
	OutcomeRestricted = "restricted" // a 403 (HIPAA or forbidden): expected, not a failure
)

// Token refresh results (the result label).
const (
	RefreshOK           = "ok"
	RefreshFailed       = "failed"        // transient: network, 5xx, "Location is not active"
	RefreshInvalidGrant = "invalid_grant" // terminal: the grant needs `leadsync auth login`
)

// Metrics holds every leadsync metric on its own registry. Labels carry vendor, connection,
// endpoint and account ids only: never lead data or tokens. All methods are safe for
// concurrent use, and are no-ops on a nil *Metrics (handy in tests of other packages).
type Metrics struct {
	// Registry holds the leadsync metrics plus the Go runtime and process collectors.
	Registry *prometheus.Registry

	runs            *prometheus.CounterVec
	runsInProgress  *prometheus.GaugeVec
	runDuration     *prometheus.HistogramVec
	runLastFinished *prometheus.GaugeVec
	leadsWritten    *prometheus.CounterVec
	recordsRejected *prometheus.CounterVec
	accountsSynced  *prometheus.CounterVec
	accountDuration *prometheus.HistogramVec
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	throttled       *prometheus.CounterVec
	retries         *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	needsReauth     *prometheus.GaugeVec
	needsRotation   *prometheus.GaugeVec
	rotationPending *prometheus.GaugeVec
	accounts        *accountCollector
	webhooks        webhookMetrics

	mu         sync.Mutex
	inProgress map[runKey]int // runs started and not finished
	grants     func(ctx context.Context) ([]GrantState, error)
	rotations  []GrantState
	pending    func() []string
}

// GrantState is one configured connection's grant, for leadsync_grant_needs_reauth.
type GrantState struct {
	Connection, Source string
	// NeedsReauth: the grant was rejected (invalid_grant) or there is none yet; either way
	// `leadsync auth login` is the fix.
	NeedsReauth bool
	// NeedsRotation: the vendor refused a static token (a Private Integration Token, an API
	// key) that its secret still holds; a new token in the secret is the fix.
	NeedsRotation bool
}

// ScrapeTimeout bounds the grant listing done for each scrape.
const ScrapeTimeout = 2 * time.Second

// NewMetrics builds the metrics on a fresh registry. version is exported as
// leadsync_build_info{version}.
func NewMetrics(version string) *Metrics {
	const ns = "leadsync"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "runs_total",
			Help: "Connections' sync runs finished, by connection, trigger (cron, once, backfill) and status (ok, failed, cancelled).",
		}, []string{"connection", "trigger", "status"}),
		runsInProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "runs_in_progress",
			Help: "Connections' sync runs currently running, by connection and trigger.",
		}, []string{"connection", "trigger"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "run_duration_seconds",
			Help:    "Duration of connections' sync runs, by connection and trigger.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400},
		}, []string{"connection", "trigger"}),
		runLastFinished: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "run_last_finished_timestamp_seconds",
			Help: "Unix time a connection's last run of a trigger finished with a status.",
		}, []string{"connection", "trigger", "status"}),
		leadsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "leads_written_total",
			Help: "Leads inserted or changed in the warehouse, by connection and source.",
		}, []string{"connection", "source"}),
		recordsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "records_rejected_total",
			Help: "Vendor records that could not be read (no id, too deeply nested, refused by the database), quarantined in rejected_records, by source.",
		}, []string{"source"}),
		accountsSynced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "accounts_synced_total",
			Help: "Account syncs finished, by connection, source and outcome (ok, failed, restricted).",
		}, []string{"connection", "source", "outcome"}),
		accountDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "account_sync_duration_seconds",
			Help:    "Duration of one account's sync, by source.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"source"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "http_requests_total",
			Help: "Vendor API requests (each attempt), by vendor, endpoint and HTTP status (\"error\": no response).",
		}, []string{"vendor", "endpoint", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "http_request_duration_seconds",
			Help:    "Vendor API request latency (each attempt), by vendor and endpoint.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"vendor", "endpoint"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "http_throttled_total",
			Help: "Vendor API answers 429 Too Many Requests, by vendor and endpoint.",
		}, []string{"vendor", "endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "http_retries_total",
			Help: "Vendor API requests retried, by vendor, endpoint and reason (429, 5xx, network, decode, auth).",
		}, []string{"vendor", "endpoint", "reason"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "token_refreshes_total",
			Help: "OAuth token refreshes, by source and result (ok, failed, invalid_grant).",
		}, []string{"source", "result"}),
		needsReauth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "grant_needs_reauth",
			Help: "1 when a connection's grant was rejected (invalid_grant) and needs `leadsync auth login`.",
		}, []string{"connection", "source"}),
		needsRotation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "credential_needs_rotation",
			Help: "1 when the vendor refused a connection's static token (Private Integration Token, API key) and its secret needs a new one.",
		}, []string{"connection", "source"}),
		rotationPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "token_rotation_pending",
			Help: "1 while a connection's rotated token pair is held in memory only: the token store refused its write, which is retried until it lands.",
		}, []string{"connection", "source"}),
		accounts:   newAccountCollector(time.Now),
		webhooks:   newWebhookMetrics(ns),
		inProgress: map[runKey]int{},
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "build_info", Help: "Always 1; the version label says which leadsync runs.",
	}, []string{"version"})
	buildInfo.WithLabelValues(version).Set(1)
	m.Registry.MustRegister(
		m.runs, m.runsInProgress, m.runDuration, m.runLastFinished, m.leadsWritten, m.recordsRejected,
		m.accountsSynced, m.accountDuration, m.requests, m.requestDuration, m.throttled,
		m.retries, m.refreshes, m.needsReauth, m.needsRotation, m.rotationPending, m.accounts, buildInfo,
		m.webhooks.received, m.webhooks.rejected, m.webhooks.accepted, m.webhooks.backlog,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format. Each scrape first
// re-reads the grants (WatchGrants), so the needs-reauth gauge follows `leadsync auth login`
// run by another process.
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.syncGrants(r.Context())
		m.syncRotations()
		h.ServeHTTP(w, r)
	})
}

// WatchGrants sets where leadsync_grant_needs_reauth comes from: list is called (bounded by
// ScrapeTimeout) before each scrape. The token store is the truth, shared with other
// processes; SetNeedsReauth only makes a change visible before the next scrape.
func (m *Metrics) WatchGrants(list func(ctx context.Context) ([]GrantState, error)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.grants = list
}

// WatchRotations sets where leadsync_token_rotation_pending comes from: pending names the
// connections whose rotated pair is not yet durable (the token store's own memory, so it
// answers while the store's database is down), read before each scrape.
func (m *Metrics) WatchRotations(conns []GrantState, pending func() []string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotations, m.pending = conns, pending
}

func (m *Metrics) syncRotations() {
	m.mu.Lock()
	conns, pending := m.rotations, m.pending
	m.mu.Unlock()
	if pending == nil {
		return
	}
	now := pending()
	for _, c := range conns {
		v := 0.0
		if slices.Contains(now, c.Connection) {
			v = 1
		}
		m.rotationPending.WithLabelValues(c.Connection, c.Source).Set(v)
	}
}

func (m *Metrics) syncGrants(ctx context.Context) {
	m.mu.Lock()
	list := m.grants
	m.mu.Unlock()
	if list == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ScrapeTimeout)
	defer cancel()
	gs, err := list(ctx)
	if err != nil {
		return // keep the last known values; /readyz reports the store's failure
	}
	for _, g := range gs {
		m.SetNeedsReauth(g.Connection, g.Source, g.NeedsReauth)
		m.needsRotation.WithLabelValues(g.Connection, g.Source).Set(boolGauge(g.NeedsRotation))
	}
}

// runKey is a connection's runs of one trigger.
type runKey struct{ connection, trigger string }

// RunStarted counts a connection's run in progress; pair it with RunFinished.
func (m *Metrics) RunStarted(trigger, connection string) {
	if m == nil {
		return
	}
	k := runKey{connection, trigger}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inProgress[k]++
	m.runsInProgress.WithLabelValues(connection, trigger).Set(float64(m.inProgress[k]))
}

// RunFinished records a connection's finished run (status: sink.RunOK, RunFailed,
// RunCancelled). A run whose start was not reported leaves runs_in_progress alone rather
// than below zero.
func (m *Metrics) RunFinished(trigger, connection, status string, d time.Duration) {
	if m == nil {
		return
	}
	k := runKey{connection, trigger}
	m.mu.Lock()
	if m.inProgress[k] > 0 {
		m.inProgress[k]--
	}
	m.runsInProgress.WithLabelValues(connection, trigger).Set(float64(m.inProgress[k]))
	m.mu.Unlock()
	m.runs.WithLabelValues(connection, trigger, status).Inc()
	m.runDuration.WithLabelValues(connection, trigger).Observe(d.Seconds())
	m.runLastFinished.WithLabelValues(connection, trigger, status).Set(float64(m.accounts.now().Unix()))
}

// LeadsWritten adds leads inserted or updated by a connection's page commits.
func (m *Metrics) LeadsWritten(connection, source string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.leadsWritten.WithLabelValues(connection, source).Add(float64(n))
}

// AccountSynced records the outcome of one account's sync. OutcomeOK stamps the account's
// last success, which drives leadsync_account_lag_seconds; OutcomeRestricted sets
// leadsync_account_restricted until the next OutcomeOK (a failure leaves it as it was).
func (m *Metrics) AccountSynced(connection, source, account, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.accountsSynced.WithLabelValues(connection, source, outcome).Inc()
	m.accountDuration.WithLabelValues(source).Observe(d.Seconds())
	m.accounts.synced(accountKey{connection, source, account}, outcome)
}

// SeedAccount sets an account's last success from the warehouse (accounts.last_synced_at)
// at startup, so the lag survives restarts. A zero time only registers the account.
func (m *Metrics) SeedAccount(connection, source, account string, lastSuccess time.Time) {
	if m == nil {
		return
	}
	m.accounts.seed(accountKey{connection, source, account}, lastSuccess)
}

// RecordsRejected counts records quarantined in rejected_records.
func (m *Metrics) RecordsRejected(source string, n int) {
	if m == nil {
		return
	}
	m.recordsRejected.WithLabelValues(source).Add(float64(n))
}

// AccountsListed drops the series of the connection's accounts missing from its complete
// listing (an uninstalled location, a removed advertiser), so they do not raise lag alerts
// forever.
func (m *Metrics) AccountsListed(connection, source string, accounts []string) {
	if m == nil {
		return
	}
	m.accounts.keepOnly(connection, source, accounts)
}

// TokenRefreshed records a refresh attempt of a grant's token; err nil is a success, an
// invalid_grant (sources.ErrNeedsReauth or *oauth2.RetrieveError) is terminal.
func (m *Metrics) TokenRefreshed(source string, err error) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(source, RefreshResult(err)).Inc()
}

// RefreshResult classifies a refresh error into a result label.
func RefreshResult(err error) string {
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		return RefreshOK
	case errors.Is(err, sources.ErrNeedsReauth), errors.As(err, &re) && re.ErrorCode == "invalid_grant":
		return RefreshInvalidGrant
	}
	return RefreshFailed
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SetNeedsReauth flags (or clears, after `auth login`) a connection whose grant was revoked.
func (m *Metrics) SetNeedsReauth(connection, source string, needs bool) {
	if m == nil {
		return
	}
	v := 0.0
	if needs {
		v = 1
	}
	m.needsReauth.WithLabelValues(connection, source).Set(v)
}

// Request implements the httpx Observer: one attempt's status (0 = no response) and latency.
func (m *Metrics) Request(vendor, endpoint string, status int, d time.Duration) {
	if m == nil {
		return
	}
	code := "error"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(vendor, endpoint, code).Inc()
	m.requestDuration.WithLabelValues(vendor, endpoint).Observe(d.Seconds())
	if status == http.StatusTooManyRequests {
		m.throttled.WithLabelValues(vendor, endpoint).Inc()
	}
}

// Retry implements the httpx Observer: a request about to be re-sent, and why.
func (m *Metrics) Retry(vendor, endpoint, reason string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(vendor, endpoint, reason).Inc()
}

type accountKey struct{ connection, source, account string }

type accountState struct {
	lastSuccess time.Time // zero: none known
	since       time.Time // when this process first saw the account
	restricted  bool      // the last sync ended in a 403 (an expected state)
}

// accountCollector exports each account's last success and its lag, computed at scrape time
// so that the lag keeps growing while an account is stuck.
type accountCollector struct {
	now            func() time.Time
	mu             sync.Mutex
	accounts       map[accountKey]*accountState
	lastDesc       *prometheus.Desc
	lagDesc        *prometheus.Desc
	restrictedDesc *prometheus.Desc
}

func newAccountCollector(now func() time.Time) *accountCollector {
	labels := []string{"connection", "source", "account"}
	return &accountCollector{
		now:      now,
		accounts: map[accountKey]*accountState{},
		lastDesc: prometheus.NewDesc("leadsync_account_last_success_timestamp_seconds",
			"Unix time of the account's last successful sync.", labels, nil),
		lagDesc: prometheus.NewDesc("leadsync_account_lag_seconds",
			"Seconds since the account's last successful sync (or since leadsync first saw it, if none).", labels, nil),
		restrictedDesc: prometheus.NewDesc("leadsync_account_restricted",
			"1 when the account's last sync hit a 403 (HIPAA or forbidden): its leads are withheld, which is expected.", labels, nil),
	}
}

func (c *accountCollector) state(k accountKey) *accountState {
	s := c.accounts[k]
	if s == nil {
		s = &accountState{since: c.now()}
		c.accounts[k] = s
	}
	return s
}

func (c *accountCollector) synced(k accountKey, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state(k)
	switch outcome {
	case OutcomeOK:
		s.lastSuccess = c.now()
		s.restricted = false
	case OutcomeRestricted:
		s.restricted = true
	}
}

func (c *accountCollector) seed(k accountKey, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.state(k); last.After(s.lastSuccess) {
		s.lastSuccess = last
	}
}

func (c *accountCollector) keepOnly(connection, source string, accounts []string) {
	listed := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		listed[a] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.accounts {
		if k.connection == connection && k.source == source && !listed[k.account] {
			delete(c.accounts, k)
		}
	}
}

func (c *accountCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastDesc
	ch <- c.lagDesc
	ch <- c.restrictedDesc
}

func (c *accountCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for k, s := range c.accounts {
		ref := s.since
		if !s.lastSuccess.IsZero() {
			ref = s.lastSuccess
			ch <- prometheus.MustNewConstMetric(c.lastDesc, prometheus.GaugeValue,
				float64(s.lastSuccess.UnixMilli())/1000, k.connection, k.source, k.account)
		}
		ch <- prometheus.MustNewConstMetric(c.lagDesc, prometheus.GaugeValue,
			max(0, now.Sub(ref).Seconds()), k.connection, k.source, k.account)
		restricted := 0.0
		if s.restricted {
			restricted = 1
		}
		ch <- prometheus.MustNewConstMetric(c.restrictedDesc, prometheus.GaugeValue,
			restricted, k.connection, k.source, k.account)
	}
}

// webhookMetrics are the webhook endpoint's (issue #19).
type webhookMetrics struct {
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
	accepted *prometheus.CounterVec
	backlog  prometheus.Gauge
}

func newWebhookMetrics(ns string) webhookMetrics {
	return webhookMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhooks_received_total",
			Help: "Webhook deliveries received, by vendor, whatever became of them.",
		}, []string{"vendor"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhooks_rejected_total",
			Help: "Webhook deliveries not stored, by vendor and reason (bad_signature, stale, replay, too_large, backlog, store_error, ...).",
		}, []string{"vendor", "reason"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhooks_accepted_total",
			Help: "Webhook events stored in the inbox, by vendor and op (upsert, delete, stage, status, install, uninstall, ignore).",
		}, []string{"vendor", "op"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "webhook_inbox_backlog",
			Help: "Webhook events in the inbox not yet applied, as last counted by the endpoint.",
		}),
	}
}

// WebhookReceived counts a delivery as it arrives.
func (m *Metrics) WebhookReceived(vendor string) {
	if m != nil {
		m.webhooks.received.WithLabelValues(vendor).Inc()
	}
}

// WebhookRejected counts a delivery answered without being stored; reason is a bounded label.
func (m *Metrics) WebhookRejected(vendor, reason string) {
	if m != nil {
		m.webhooks.rejected.WithLabelValues(vendor, reason).Inc()
	}
}

// WebhookAccepted counts events stored in the inbox.
func (m *Metrics) WebhookAccepted(vendor, op string, n int) {
	if m != nil && n > 0 {
		m.webhooks.accepted.WithLabelValues(vendor, op).Add(float64(n))
	}
}

// SetWebhookBacklog records the inbox's pending events.
func (m *Metrics) SetWebhookBacklog(n int64) {
	if m != nil {
		m.webhooks.backlog.Set(float64(n))
	}
}
