package leadconnector

import (
	"net/http"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestDailyQuotaRunningLowSlowsTheBucket(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // 12 h until the daily reset
	h := http.Header{}
	h.Set("X-RateLimit-Limit-Daily", "200000")
	h.Set("X-RateLimit-Daily-Remaining", "150000")
	if got := dailyPace(h, now); got != rate.Inf {
		t.Fatalf("plenty left: pace %v, want no daily limit", got)
	}
	h.Set("X-RateLimit-Daily-Remaining", "4320") // 4,320 requests over 43,200 s
	if got := dailyPace(h, now); got < 0.0999 || got > 0.1001 {
		t.Fatalf("running low: pace %v req/s, want 0.1", got)
	}
	h.Set("X-RateLimit-Daily-Remaining", "0")
	if got := dailyPace(h, now); got != rate.Every(time.Minute) {
		t.Fatalf("quota spent: pace %v, want the one-a-minute floor", got)
	}
	h.Set("X-RateLimit-Daily-Remaining", "1")
	h.Set("X-RateLimit-Max", "100")
	h.Set("X-RateLimit-Interval-Milliseconds", "10000")
	l := rate.NewLimiter(rate.Inf, 1)
	tune(locationBucket("L"), h, l)
	if l.Limit() >= 1 {
		t.Fatalf("tune kept the burst pace %v with the daily quota nearly spent", l.Limit())
	}
}
