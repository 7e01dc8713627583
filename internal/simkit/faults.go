// Package simkit is the machinery shared by the vendor fakes that make up crmsim: fault
// injection, counters, fixed-window rate limits, an OAuth grant registry with single-use
// refresh tokens, a settable clock, and deterministic fake people.
package simkit

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// FaultSettings are the injected faults, as fractions of requests (0..1). They apply to API
// and token endpoints, never to /_admin/ or the authorization pages.
type FaultSettings struct {
	Rate429      float64       `json:"rate_429"`
	Rate5xx      float64       `json:"rate_5xx"`
	RateReset    float64       `json:"rate_reset"`    // connection closed mid-body
	RateTruncate float64       `json:"rate_truncate"` // JSON body cut short, connection kept
	LatencyRate  float64       `json:"latency_rate"`  // fraction of requests delayed by Latency
	Latency      time.Duration `json:"latency"`
	// DropRefreshResponses is how many upcoming successful refreshes rotate the token and
	// then drop the response (the client never sees the new pair).
	DropRefreshResponses int `json:"drop_refresh_responses"`
}

// Faults holds the current settings; safe for concurrent use and changeable at run time.
type Faults struct {
	mu  sync.Mutex
	s   FaultSettings
	rnd *rand.Rand
}

// NewFaults starts with settings s and a seeded random source (runs are reproducible for a
// given seed and request order).
func NewFaults(seed uint64, s FaultSettings) *Faults {
	return &Faults{s: s, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Get returns the current settings.
func (f *Faults) Get() FaultSettings {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

// Set replaces the settings.
func (f *Faults) Set(s FaultSettings) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s = s
}

// TakeDropRefresh reports whether this refresh's response must be dropped, consuming one.
func (f *Faults) TakeDropRefresh() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.s.DropRefreshResponses > 0 {
		f.s.DropRefreshResponses--
		return true
	}
	return false
}

type fault int

const (
	faultNone fault = iota
	fault429
	fault5xx
	faultReset
	faultTruncate
)

func (f *Faults) draw() (fault, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var delay time.Duration
	if f.s.LatencyRate > 0 && f.rnd.Float64() < f.s.LatencyRate {
		delay = f.s.Latency
	}
	x := f.rnd.Float64()
	for _, c := range []struct {
		rate float64
		f    fault
	}{{f.s.Rate429, fault429}, {f.s.Rate5xx, fault5xx}, {f.s.RateReset, faultReset}, {f.s.RateTruncate, faultTruncate}} {
		if x < c.rate {
			return c.f, delay
		}
		x -= c.rate
	}
	return faultNone, delay
}

// Middleware injects the configured faults into next. on429 writes the vendor's own 429
// answer (body and headers). Each injected fault is counted in c (faults_429, ...); wrap
// the result in CountRequests to count the answers by endpoint and status.
func (f *Faults) Middleware(next http.Handler, c *Counters, on429 func(http.ResponseWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ft, delay := f.draw()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		switch ft {
		case fault429:
			c.Inc("faults_429")
			on429(w)
			return
		case fault5xx:
			c.Inc("faults_5xx")
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
			return
		case faultReset, faultTruncate:
			rec := &recorder{header: http.Header{}, status: http.StatusOK}
			next.ServeHTTP(rec, r)
			body := rec.buf.Bytes()
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			cut := len(body) / 2
			if ft == faultReset {
				c.Inc("faults_reset")
				// Promise the whole body, send half, then drop the connection.
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.WriteHeader(rec.status)
				_, _ = w.Write(body[:cut])
				if fl, ok := w.(http.Flusher); ok {
					fl.Flush()
				}
				panic(http.ErrAbortHandler)
			}
			c.Inc("faults_truncate")
			w.Header().Set("Content-Length", strconv.Itoa(cut))
			w.WriteHeader(rec.status)
			_, _ = w.Write(body[:cut])
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recorder buffers a handler's answer so a fault can mangle it.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.buf.Write(p)
}

// DropResponse aborts the connection without an answer: used after a refresh rotated the
// token when a DropRefreshResponses fault is pending.
func DropResponse() { panic(http.ErrAbortHandler) }
