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

// countingWriter counts a request when its status is decided, before any byte of the answer
// can reach the client: a test that reads the counters once its client has the answer must
// find it counted.
type countingWriter struct {
	http.ResponseWriter
	count   func(status int)
	counted bool
}

func (w *countingWriter) countOnce(status int) {
	if !w.counted {
		w.counted = true
		w.count(status)
	}
}

func (w *countingWriter) WriteHeader(code int) {
	w.countOnce(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.countOnce(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// Flush passes flushes through (the reset fault needs it); a flush sends an implicit 200.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		w.countOnce(http.StatusOK)
		f.Flush()
	}
}

// CountRequests counts every answer of next under endpoint(r). A handler that aborts before
// answering (a dropped response) is counted as a 200, the status it would have sent.
func CountRequests(next http.Handler, c *Counters, endpoint func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, count: func(status int) { c.Request(endpoint(r), status) }}
		// Deferred so that a panic (http.ErrAbortHandler) is counted before the connection drops.
		defer cw.countOnce(http.StatusOK)
		next.ServeHTTP(cw, r)
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
