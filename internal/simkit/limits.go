package simkit

import (
	"sync"
	"time"
)

// Window is a fixed-window limit: Limit requests per Interval.
type Window struct {
	Limit    int
	Interval time.Duration
}

// Limiter enforces a Window per bucket (a location, a client, a grant). Safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	clock   Clock
	w       Window
	buckets map[string]*windowState
}

type windowState struct {
	start time.Time
	used  int
}

// NewLimiter enforces w; a zero Limit disables it.
func NewLimiter(clock Clock, w Window) *Limiter {
	return &Limiter{clock: clock, w: w, buckets: map[string]*windowState{}}
}

// Set changes the window (at run time).
func (l *Limiter) Set(w Window) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w = w
}

// Take spends one request from bucket. It reports whether the request is allowed, how many
// remain in the current window, and when the window resets.
func (l *Limiter) Take(bucket string) (ok bool, remaining int, reset time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.w.Limit <= 0 {
		return true, 0, now
	}
	st := l.buckets[bucket]
	if st == nil || !now.Before(st.start.Add(l.w.Interval)) {
		// Windows are aligned to the interval, like the vendors' counters.
		st = &windowState{start: now.Truncate(l.w.Interval)}
		l.buckets[bucket] = st
	}
	reset = st.start.Add(l.w.Interval)
	if st.used >= l.w.Limit {
		return false, 0, reset
	}
	st.used++
	return true, l.w.Limit - st.used, reset
}
