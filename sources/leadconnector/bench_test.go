package leadconnector

import (
	"context"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

// BenchmarkRateUtilization syncs one location against the fake with the vendor's real limit
// (100 requests per 10 s, fixed windows) for about 30 s of wall time and reports how much of
// the allowance it used (goal ≥ 0.95) and the share of requests answered 429 (goal ≤ 1 %).
func BenchmarkRateUtilization(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for 30 s of wall time")
	}
	srv := lctest.NewServer(lctest.Options{Seed: 3, Locations: 1, ContactsPerLocation: 3000})
	defer srv.Close()
	cfg := Config{BaseURL: srv.URL, AuthURL: srv.URL + "/oauth/chooselocation", ClientID: lctest.DefaultClientID,
		ClientSecret: lctest.DefaultClientSecret, AppID: srv.AppID(), CompanyID: srv.CompanyID()}
	p := srv.Authorize("")
	tokens := &memTokens{now: time.Now, refresher: cfg.Refresher(), accounts: map[string]*memAccount{},
		grant: &oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, Expiry: p.Expiry}}
	src, err := New(cfg, tokens)
	if err != nil {
		b.Fatal(err)
	}
	acct := sources.Account{Source: sources.LeadConnector, ID: srv.LocationIDs()[0]}
	const run = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()

	b.ResetTimer()
	start := time.Now()
	for ctx.Err() == nil { // full passes, back to back, until the time is up
		for _, err := range src.Read(ctx, acct, StreamContacts, "", sources.ReadOptions{Full: true}) {
			if err != nil && ctx.Err() == nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	ok := srv.Counters().Requests("contacts/search", http.StatusOK)
	throttled := srv.Counters().Requests("contacts/search", http.StatusTooManyRequests)
	allowed := float64(lctest.DefaultBurst) * elapsed.Seconds() / lctest.DefaultInterval.Seconds()
	b.ReportMetric(float64(ok)/allowed, "utilization")
	b.ReportMetric(100*float64(throttled)/float64(max(ok+throttled, 1)), "429-%")
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "req/s")
}
