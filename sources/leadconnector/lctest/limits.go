package lctest

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// limiter enforces the vendor's two fixed windows per resource (a location or the company):
// a burst of max per interval and a daily quota. Windows are aligned to the interval.
type limiter struct {
	mu       sync.Mutex
	clock    simkit.Clock
	max      int
	interval time.Duration
	daily    int
	buckets  map[string]*bucket
}

type bucket struct {
	burstStart time.Time
	burstUsed  int
	dayStart   time.Time
	dayUsed    int
}

// quota is what the X-RateLimit-* headers report.
type quota struct {
	max, remaining, daily, dailyRemaining int
	interval                              time.Duration
}

func newLimiter(clock simkit.Clock, max int, interval time.Duration, daily int) *limiter {
	return &limiter{clock: clock, max: max, interval: interval, daily: daily, buckets: map[string]*bucket{}}
}

func (l *limiter) set(max int, interval time.Duration, daily int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max, l.interval, l.daily = max, interval, daily
	l.buckets = map[string]*bucket{}
}

// take spends one request of resource; ok is false when either window is used up.
func (l *limiter) take(resource string) (bool, quota) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b := l.buckets[resource]
	if b == nil {
		b = &bucket{}
		l.buckets[resource] = b
	}
	if ws := now.Truncate(l.interval); !ws.Equal(b.burstStart) {
		b.burstStart, b.burstUsed = ws, 0
	}
	if ds := now.Truncate(24 * time.Hour); !ds.Equal(b.dayStart) {
		b.dayStart, b.dayUsed = ds, 0
	}
	ok := b.burstUsed < l.max && b.dayUsed < l.daily
	if ok {
		b.burstUsed++
		b.dayUsed++
	}
	return ok, quota{max: l.max, remaining: l.max - b.burstUsed, daily: l.daily,
		dailyRemaining: l.daily - b.dayUsed, interval: l.interval}
}

// fresh is the quota reported on answers that no resource is charged for (token endpoint,
// requests rejected before authentication).
func (l *limiter) fresh() quota {
	l.mu.Lock()
	defer l.mu.Unlock()
	return quota{max: l.max, remaining: l.max, daily: l.daily, dailyRemaining: l.daily, interval: l.interval}
}

// empty is the quota reported with an injected 429.
func (l *limiter) empty() quota {
	q := l.fresh()
	q.remaining = 0
	return q
}

func (q quota) write(h http.Header) {
	h.Set("X-RateLimit-Max", strconv.Itoa(q.max))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.remaining))
	h.Set("X-RateLimit-Interval-Milliseconds", strconv.FormatInt(q.interval.Milliseconds(), 10))
	h.Set("X-RateLimit-Limit-Daily", strconv.Itoa(q.daily))
	h.Set("X-RateLimit-Daily-Remaining", strconv.Itoa(q.dailyRemaining))
}

// Body429 is the sandbox's 429 answer (the vendor documents none; no Retry-After either).
const Body429 = `{"statusCode":429,"message":"Too many requests"}`

func write429(w http.ResponseWriter, q quota) {
	q.write(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(Body429)))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(Body429))
}
