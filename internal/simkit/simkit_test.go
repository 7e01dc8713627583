package simkit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRegistryRefreshIsSingleUse(t *testing.T) {
	t.Parallel()
	clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := NewRegistry(clock, "x", time.Hour)
	g, p := r.NewGrant("user", nil)

	res := r.Refresh(p.Refresh, false)
	if res.Outcome != RefreshOK || res.Pair.Refresh == p.Refresh {
		t.Fatalf("first refresh: %+v", res)
	}
	again := r.Refresh(p.Refresh, false)
	if again.Outcome != RefreshReused || again.Pair.Access != res.Pair.Access || again.Grant != g.ID {
		t.Fatalf("second use must be reported as reuse with the first answer: %+v", again)
	}
	if st, _, _ := r.Check(p.Access); st != AccessValid {
		t.Fatalf("old access token without revokeOldAccess: %v", st)
	}
	res2 := r.Refresh(res.Pair.Refresh, true)
	if st, _, _ := r.Check(res.Pair.Access); res2.Outcome != RefreshOK || st != AccessRevoked {
		t.Fatalf("revokeOldAccess must revoke the previous access token: %v %v", res2.Outcome, st)
	}
	clock.Advance(2 * time.Hour)
	if st, _, _ := r.Check(res2.Pair.Access); st != AccessExpired {
		t.Fatalf("expired token: %v", st)
	}
	r.RevokeGrant(g.ID)
	if out := r.Refresh(res2.Pair.Refresh, false); out.Outcome != RefreshRevoked {
		t.Fatalf("refresh on a revoked grant: %v", out.Outcome)
	}
	if out := r.Refresh("nope", false); out.Outcome != RefreshUnknown {
		t.Fatalf("unknown token: %v", out.Outcome)
	}
}

func TestMintedTokensSurviveRefreshRevocation(t *testing.T) {
	t.Parallel()
	r := NewRegistry(RealClock{}, "x", time.Hour)
	g, p := r.NewGrant("user", nil)
	m := r.IssueAccess(g.ID, map[string]string{"location": "L1"})
	r.Refresh(p.Refresh, true)
	st, _, meta := r.Check(m.Access)
	if st != AccessValid || meta["location"] != "L1" {
		t.Fatalf("minted token: %v %v", st, meta)
	}
}

func TestAuthCodesAreSingleUseAndBound(t *testing.T) {
	t.Parallel()
	clock := NewManualClock(time.Now())
	a := NewAuthCodes(clock)
	c := a.Issue("client", "http://127.0.0.1/cb", "me", "", "", time.Minute)
	if _, _, _, ok := a.Redeem(c, "other", "http://127.0.0.1/cb"); ok {
		t.Fatal("code redeemed by another client")
	}
	c = a.Issue("client", "http://127.0.0.1/cb", "me", "", "", time.Minute)
	if sub, _, _, ok := a.Redeem(c, "client", "http://127.0.0.1/cb"); !ok || sub != "me" {
		t.Fatal("valid code refused")
	}
	if _, _, _, ok := a.Redeem(c, "client", "http://127.0.0.1/cb"); ok {
		t.Fatal("code redeemed twice")
	}
	c = a.Issue("client", "http://127.0.0.1/cb", "me", "", "", time.Minute)
	clock.Advance(2 * time.Minute)
	if _, _, _, ok := a.Redeem(c, "client", "http://127.0.0.1/cb"); ok {
		t.Fatal("expired code redeemed")
	}
}

func TestLimiterFixedWindow(t *testing.T) {
	t.Parallel()
	clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := NewLimiter(clock, Window{Limit: 3, Interval: 10 * time.Second})
	for i := 2; i >= 0; i-- {
		ok, rem, _ := l.Take("a")
		if !ok || rem != i {
			t.Fatalf("take: ok=%v remaining=%d want %d", ok, rem, i)
		}
	}
	if ok, _, reset := l.Take("a"); ok || !reset.Equal(clock.Now().Add(10*time.Second)) {
		t.Fatalf("over the limit: ok=%v reset=%v", ok, reset)
	}
	if ok, _, _ := l.Take("b"); !ok {
		t.Fatal("buckets must be independent")
	}
	clock.Advance(10 * time.Second)
	if ok, _, _ := l.Take("a"); !ok {
		t.Fatal("a new window must allow again")
	}
}

func faultServer(t *testing.T, s FaultSettings) (*httptest.Server, *Counters) {
	t.Helper()
	c := NewCounters()
	f := NewFaults(1, s)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"hello": strings.Repeat("x", 100)})
	})
	srv := httptest.NewServer(CountRequests(f.Middleware(h, c, func(w http.ResponseWriter) {
		WriteJSON(w, http.StatusTooManyRequests, map[string]string{"message": "slow down"})
	}), c, func(*http.Request) string { return "ep" }))
	t.Cleanup(srv.Close)
	return srv, c
}

func TestFaultsMangleAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		s      FaultSettings
		status int
		check  func(t *testing.T, body []byte, err error)
	}{
		{"429", FaultSettings{Rate429: 1}, 429, nil},
		{"5xx", FaultSettings{Rate5xx: 1}, 502, nil},
		{"truncate", FaultSettings{RateTruncate: 1}, 200, func(t *testing.T, body []byte, err error) {
			if err != nil || len(body) == 0 || strings.HasSuffix(string(body), "}") {
				t.Fatalf("want a cut JSON body read cleanly, got %q, %v", body, err)
			}
		}},
		{"reset", FaultSettings{RateReset: 1}, 200, func(t *testing.T, body []byte, err error) {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("want an unexpected EOF mid-body, got %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, c := faultServer(t, tc.s)
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.check != nil {
				tc.check(t, body, err)
			}
			if c.Requests("ep", tc.status) != 1 {
				t.Fatalf("counters: %+v", c.Snapshot())
			}
		})
	}
}

func TestDropRefreshIsCounted(t *testing.T) {
	t.Parallel()
	f := NewFaults(1, FaultSettings{DropRefreshResponses: 1})
	if !f.TakeDropRefresh() || f.TakeDropRefresh() {
		t.Fatal("exactly one drop must be taken")
	}
}

// A test that reads the counters right after its client got an answer must see that answer
// counted, even while the handler's goroutine has not returned yet.
func TestRequestIsCountedBeforeItsAnswerArrives(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		answer func(w http.ResponseWriter)
	}{
		// Bigger than net/http's write buffer, so the body is on the wire before the handler
		// returns.
		{"large body", http.StatusOK, func(w http.ResponseWriter) {
			WriteJSON(w, http.StatusOK, map[string]string{"data": strings.Repeat("x", 64<<10)})
		}},
		{"implicit 200 flushed", http.StatusOK, func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "2")
			_, _ = w.Write([]byte("{}"))
			w.(http.Flusher).Flush()
		}},
		{"status only", http.StatusTeapot, func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusTeapot)
			w.(http.Flusher).Flush()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewCounters()
			release := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.answer(w)
				// The server goroutine is descheduled after writing: the client has the answer.
				<-release
			})
			srv := httptest.NewServer(CountRequests(h, c, func(*http.Request) string { return "ep" }))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if n := c.Requests("ep", tc.status); n != 1 {
				t.Fatalf("answered %d, then counted %d requests with it; the counters: %+v", resp.StatusCode, n, c.Snapshot())
			}
		})
	}
}
