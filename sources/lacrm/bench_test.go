package lacrm_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

// BenchmarkRateUtilization measures how much of LACRM's per-grant limit (120 requests per
// window) a sync uses, and how often it trips it. Each iteration is one window, aligned to
// the fake's fixed windows. By default the window is scaled to 5 s; LACRM_BENCH_REAL_LIMIT=1
// runs the real 120/min for one minute. Goals: achieved/allowed ≥ 0.95, 429 share ≤ 1 %.
func BenchmarkRateUtilization(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for whole rate-limit windows")
	}
	const limit = 120
	window := 5 * time.Second
	if os.Getenv("LACRM_BENCH_REAL_LIMIT") != "" {
		window = time.Minute
	}
	srv := lacrmtest.NewServer(lacrmtest.Options{Seed: 5, Contacts: 3000, PipelineItems: 300,
		RateLimit: simkit.Window{Limit: limit, Interval: window}})
	b.Cleanup(srv.Close)
	perSecond := float64(limit) / window.Seconds()
	cfg := lacrm.Config{
		BaseURL: srv.URL + "/v2/", TokenURL: srv.URL + "/oauth/token.php",
		ClientID: srv.ClientID(), ClientSecret: srv.ClientSecret(), PageSize: 10,
		// The shipped default scaled to the window: 98 % of the limit, burst 2.
		RateLimit: rate.Limit(perSecond * float64(lacrm.DefaultRateLimit) / 2), RateBurst: lacrm.DefaultRateBurst,
	}
	p := srv.Authorize("")
	toks := &memTokens{tok: oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, Expiry: p.Expiry},
		ref: cfg.Refresher(), now: time.Now, sent: map[string]bool{}}
	src, err := lacrm.New(cfg, toks)
	if err != nil {
		b.Fatal(err)
	}
	acct := sources.Account{Source: sources.LACRM, ID: srv.AccountOf(srv.SandboxUser())}

	var ok, throttled, windows int64
	for b.Loop() {
		// Start on a window boundary so the window's allowance is exactly `limit`.
		start := time.Now().Truncate(window).Add(window)
		time.Sleep(time.Until(start))
		srv.Counters().Reset()
		ctx, cancel := context.WithDeadline(context.Background(), start.Add(window))
		for ctx.Err() == nil {
			for _, err := range readAll(src, ctx, acct, "", sources.ReadOptions{Full: true}) {
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
						b.Fatal(err)
					}
					break
				}
			}
		}
		cancel()
		snap := srv.Counters().Snapshot()
		for ep, byStatus := range snap.Requests {
			if ep == "oauth/token" {
				continue
			}
			ok += byStatus["200"]
			throttled += byStatus["429"]
			for st, n := range byStatus {
				if st != "200" && st != "429" {
					b.Logf("%s: %d answers with status %s", ep, n, st)
				}
			}
		}
		windows++
	}
	allowed := float64(limit * windows)
	b.ReportMetric(float64(ok)/allowed, "achieved/allowed")
	b.ReportMetric(100*float64(throttled)/float64(max(ok+throttled, 1)), "%429")
}
