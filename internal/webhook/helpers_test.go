package webhook

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// memReplays is the in-memory ReplayChecker of the tests; the inbox's unique key is the real one.
type memReplays struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error // returned by Seen when set
}

func (m *memReplays) Seen(_ context.Context, vendor, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	return m.seen[vendor+"\x00"+id], nil
}

// accept records an id, as the inbox does when it stores the event.
func (m *memReplays) accept(vendor, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	m.seen[vendor+"\x00"+id] = true
}

// fakeClock is the verifier's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// testRSAKey is generated once: 2048 bits is slow enough to share.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	got, ok := ReasonOf(err)
	if !ok || got != want {
		t.Fatalf("error %v: reason %q (a rejection: %v), want %q", err, got, ok, want)
	}
}
