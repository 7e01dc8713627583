package simkit

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Well-known counter names, shared by the three fakes so tests read them alike.
const (
	CountTokenGrants   = "token_grants"   // tokens issued by code or password grants
	CountRefreshes     = "refreshes"      // successful refreshes
	CountRefreshReuse  = "refresh_reuse"  // a used refresh token presented again (outside any grace)
	CountRevokedGrants = "revoked_grants" // grants revoked (LACRM reuse, admin)
	Count429           = "status_429"     // every 429 answered, limits and faults alike
)

// Counters counts requests by endpoint and status, plus named events. Safe for concurrent use.
type Counters struct {
	mu       sync.Mutex
	requests map[string]map[int]int64
	named    map[string]int64
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	return &Counters{requests: map[string]map[int]int64{}, named: map[string]int64{}}
}

// Request counts one answered request.
func (c *Counters) Request(endpoint string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.requests[endpoint]
	if m == nil {
		m = map[int]int64{}
		c.requests[endpoint] = m
	}
	m[status]++
	if status == http.StatusTooManyRequests {
		c.named[Count429]++
	}
}

// Inc adds one to a named counter.
func (c *Counters) Inc(name string) { c.Add(name, 1) }

// Add adds n to a named counter.
func (c *Counters) Add(name string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.named[name] += n
}

// Get reads a named counter.
func (c *Counters) Get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.named[name]
}

// Requests returns how many requests an endpoint answered with status (0: any status).
func (c *Counters) Requests(endpoint string, status int) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for st, v := range c.requests[endpoint] {
		if status == 0 || st == status {
			n += v
		}
	}
	return n
}

// TotalRequests is every request counted, over all endpoints.
func (c *Counters) TotalRequests() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, m := range c.requests {
		for _, v := range m {
			n += v
		}
	}
	return n
}

// Snapshot is the JSON form served by /_admin/counters.
type Snapshot struct {
	Requests map[string]map[string]int64 `json:"requests"` // endpoint → status → count
	Counters map[string]int64            `json:"counters"`
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{Requests: map[string]map[string]int64{}, Counters: map[string]int64{}}
	for ep, m := range c.requests {
		s.Requests[ep] = map[string]int64{}
		for st, v := range m {
			s.Requests[ep][strconv.Itoa(st)] = v
		}
	}
	for k, v := range c.named {
		s.Counters[k] = v
	}
	return s
}

// Reset zeroes everything.
func (c *Counters) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = map[string]map[int]int64{}
	c.named = map[string]int64{}
}

// StatusRecorder wraps a ResponseWriter to learn the status a handler answered.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader records the status.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (s *StatusRecorder) Write(p []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// Flush passes flushes through (the reset fault needs it).
func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// CountRequests counts every answer of next under endpoint(r).
func CountRequests(next http.Handler, c *Counters, endpoint func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &StatusRecorder{ResponseWriter: w}
		defer func() {
			st := rec.Status
			if st == 0 {
				st = http.StatusOK
			}
			c.Request(endpoint(r), st)
		}()
		next.ServeHTTP(rec, r)
	})
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
