package localiq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// BenchmarkRateUtilization syncs four advertisers concurrently against liqtest at the
// vendor's real limit (20 requests/second per client, fixed one-second windows) for about
// 12 s, and reports how much of the allowance the source used and how many requests the
// vendor throttled. Goals: utilization >= 0.95, 429 share <= 1 %.
//
//	go test -run '^$' -bench RateUtilization ./sources/localiq/
func BenchmarkRateUtilization(b *testing.B) {
	if testing.Short() {
		b.Skip("runs ~12 s at the vendor's real rate limit")
	}
	const (
		runFor     = 12 * time.Second
		perSecond  = liqtest.DefaultRateLimit
		advertiser = 4
	)
	bn := setup(b, liqtest.Options{Advertisers: advertiser, InteractionsPerAdvertiser: 40, HIPAAShare: -1, InactiveShare: -1,
		RateLimit: perSecond}, localiq.Config{RateLimit: perSecond, Window: 24 * time.Hour})
	accts := bn.accounts(b)
	counters := bn.fake.Counters()
	counters.Reset()

	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, acct := range accts {
		wg.Go(func() {
			// Full passes over one-day windows: one request per day, round and round.
			for ctx.Err() == nil {
				for _, err := range bn.src.Read(ctx, acct, localiq.StreamInteractions, "", sources.ReadOptions{Full: true}) {
					if err != nil {
						if ctx.Err() == nil {
							b.Errorf("%s: %v", acct.ID, err)
						}
						break
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	ok := counters.Requests("crm/contact_interactions", 200)
	throttled := counters.Get(simkit.Count429)
	total := counters.TotalRequests()
	util := float64(ok) / (elapsed.Seconds() * perSecond)
	share := float64(throttled) / float64(max(total, 1))
	b.ReportMetric(util, "utilization")
	b.ReportMetric(100*share, "%429")
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "req/s")
	b.Logf("%d requests answered in %v (%d ok, %d throttled): utilization %.3f, 429 share %.2f%%",
		total, elapsed.Round(time.Millisecond), ok, throttled, util, 100*share)
}
