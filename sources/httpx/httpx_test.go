package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"golang.org/x/time/rate"
)

// fakeClock is a manual clock whose Sleep records the wait and advances time at once.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	// onSleep (optional) runs before a sleep is recorded, without the lock held.
	onSleep func(d time.Duration)
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.onSleep != nil {
		f.onSleep(d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) Waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.waits)
}

// handler answers the n-th request (from 1) the server has seen.
type handler func(w http.ResponseWriter, r *http.Request, n int64)

type testBundle struct {
	srv    *httptest.Server
	clock  *fakeClock
	hits   atomic.Int64
	client *Client
	stats  *Stats
	ctx    context.Context
	logs   *syncBuffer
}

func setup(t *testing.T, h handler, mod func(*Config)) *testBundle {
	t.Helper()
	b := &testBundle{
		clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		stats: &Stats{},
		logs:  &syncBuffer{},
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r, b.hits.Add(1))
	}))
	t.Cleanup(b.srv.Close)
	cfg := Config{
		Vendor:  "testvendor",
		BaseURL: b.srv.URL,
		Clock:   b.clock.Now,
		Sleep:   b.clock.Sleep,
		Logger:  slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	b.client = New(cfg)
	b.ctx = WithStats(t.Context(), b.stats)
	return b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeCreds hands out tokens in order; Invalidate moves to the next one.
type fakeCreds struct {
	mu          sync.Mutex
	toks        []string
	next        int
	fetched     int
	invalidated []string
}

func (f *fakeCreds) Token(context.Context) (*oauth2.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched++
	return &oauth2.Token{AccessToken: f.toks[min(f.next, len(f.toks)-1)]}, nil
}

func (f *fakeCreds) Invalidate(tok *oauth2.Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated = append(f.invalidated, tok.AccessToken)
	f.next++
}

func ok(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

func status(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *httpx.Error", err, err)
	}
	return e
}

func TestRetryAfter429(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value func(now time.Time) string
		want  time.Duration
	}{
		{"seconds", func(time.Time) string { return "7" }, 7 * time.Second},
		{"http-date", func(now time.Time) string { return now.Add(9 * time.Second).Format(http.TimeFormat) }, 9 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b *testBundle
			b = setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.value(b.clock.Now()))
					status(w, 429, `{"message":"Too Many Requests"}`)
					return
				}
				ok(w, `{"ok":true}`)
			}, nil)
			resp, err := b.client.Do(b.ctx, Request{Path: "/x", Endpoint: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Attempts != 2 || string(resp.Body) != `{"ok":true}` {
				t.Fatalf("attempts %d body %q", resp.Attempts, resp.Body)
			}
			if got := b.clock.Waits(); !slices.Equal(got, []time.Duration{tc.want}) {
				t.Fatalf("waits %v, want [%v]", got, tc.want)
			}
			if r, th, re := b.stats.Requests.Load(), b.stats.Throttled.Load(), b.stats.Retries.Load(); r != 2 || th != 1 || re != 1 {
				t.Fatalf("stats requests=%d throttled=%d retries=%d, want 2 1 1", r, th, re)
			}
		})
	}
}

func TestWait429UsedWithoutRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			w.Header().Set("X-RateLimit-Interval-Milliseconds", "1500")
			status(w, 429, `{"statusCode":429,"message":"Too many requests"}`)
			return
		}
		ok(w, `{}`)
	}, func(c *Config) {
		c.Wait429 = func(h http.Header, _ time.Time) time.Duration {
			ms, _ := time.ParseDuration(h.Get("X-RateLimit-Interval-Milliseconds") + "ms")
			return ms
		}
	})
	if _, err := b.client.Do(b.ctx, Request{Path: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := b.clock.Waits(); !slices.Equal(got, []time.Duration{1500 * time.Millisecond}) {
		t.Fatalf("waits %v, want [1.5s]", got)
	}
}

func Test429WithoutHintsBacksOffWithinMaxWait(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n <= 4 {
			status(w, 429, `{"message":"Too Many Requests"}`)
			return
		}
		ok(w, `{}`)
	}, func(c *Config) { c.MaxWait = 2 * time.Second })
	if _, err := b.client.Do(b.ctx, Request{Path: "x"}); err != nil {
		t.Fatal(err)
	}
	waits := b.clock.Waits()
	if len(waits) != 4 {
		t.Fatalf("waits %v, want 4", waits)
	}
	for _, w := range waits {
		if w <= 0 || w > 2*time.Second {
			t.Fatalf("wait %v outside (0, MaxWait]: %v", w, waits)
		}
	}
}

func TestMaxWaitCapsRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			w.Header().Set("Retry-After", "3600")
			status(w, 429, `{}`)
			return
		}
		ok(w, `{}`)
	}, nil)
	if _, err := b.client.Do(b.ctx, Request{Path: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := b.clock.Waits(); !slices.Equal(got, []time.Duration{DefaultMaxWait}) {
		t.Fatalf("waits %v, want [%v]", got, DefaultMaxWait)
	}
}

func TestAttemptsBound(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	}, func(c *Config) { c.MaxAttempts = 3 })
	_, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "things/list"})
	e := asError(t, err)
	if e.Status != 502 || e.Attempts != 3 || b.hits.Load() != 3 || !e.Temporary() {
		t.Fatalf("got %+v after %d hits", e, b.hits.Load())
	}
	if want := "testvendor: GET things/list: 502 502 Bad Gateway (3 attempts)"; e.Error() != want {
		t.Fatalf("error %q, want %q", e.Error(), want)
	}
}

func TestElapsedBound(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Retry-After", "4")
		status(w, 429, `{}`)
	}, func(c *Config) { c.MaxElapsed = 10 * time.Second })
	_, err := b.client.Do(b.ctx, Request{Path: "x"})
	if e := asError(t, err); e.Status != 429 || e.Attempts != 3 {
		t.Fatalf("got %+v", e)
	}
	// 4 s + 4 s fit in 10 s; a third wait would end past it, so we stop without waiting.
	if got := b.clock.Waits(); !slices.Equal(got, []time.Duration{4 * time.Second, 4 * time.Second}) {
		t.Fatalf("waits %v", got)
	}
}

func Test5xxThenSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch n {
		case 1:
			status(w, 503, `{"message":"busy"}`)
		case 2:
			status(w, 408, ``)
		default:
			ok(w, `{"n":3}`)
		}
	}, nil)
	var out struct{ N int }
	if err := b.client.JSON(b.ctx, Request{Path: "x"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.N != 3 || b.stats.Retries.Load() != 2 || b.stats.Throttled.Load() != 0 {
		t.Fatalf("out %+v retries %d", out, b.stats.Retries.Load())
	}
}

func TestConnectionDroppedMidBodyThenSuccess(t *testing.T) {
	t.Parallel()
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				if n == 1 {
					conn, buf, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"contacts\":[")
					_ = buf.Flush()
					if reset {
						_ = conn.(*net.TCPConn).SetLinger(0) // RST instead of FIN
					}
					_ = conn.Close()
					return
				}
				ok(w, `{"contacts":[1,2]}`)
			}, nil)
			var out struct{ Contacts []int }
			if err := b.client.JSON(b.ctx, Request{Path: "x"}, &out); err != nil {
				t.Fatal(err)
			}
			if len(out.Contacts) != 2 || b.hits.Load() != 2 || len(b.clock.Waits()) != 1 {
				t.Fatalf("out %+v hits %d waits %v", out, b.hits.Load(), b.clock.Waits())
			}
		})
	}
}

func TestTruncatedJSONThenSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			ok(w, `{"contacts":[{"id":"a"},{"i`) // Content-Length matches: only the JSON is short
			return
		}
		ok(w, `{"contacts":[{"id":"a"},{"id":"b"}]}`)
	}, nil)
	var out struct{ Contacts []struct{ ID string } }
	if err := b.client.JSON(b.ctx, Request{Path: "x"}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Contacts) != 2 || out.Contacts[1].ID != "b" {
		t.Fatalf("out %+v", out)
	}
}

func TestMalformedJSONForever(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		ok(w, `{"contacts":[{"id":"a"} {"id":"b"}]}`)
	}, func(c *Config) { c.MaxAttempts = 4 })
	var out map[string]any
	err := b.client.JSON(b.ctx, Request{Path: "/contacts/search", Endpoint: "contacts/search"}, &out)
	e := asError(t, err)
	if e.Attempts != 4 || b.hits.Load() != 4 || e.Message != "malformed JSON at offset 25" || e.Endpoint != "contacts/search" {
		t.Fatalf("got %+v (%v)", e, e)
	}
	if out != nil {
		t.Fatalf("partial decode leaked into out: %v", out)
	}
}

// Valid JSON nested deeper than encoding/json allows will be just as deep on a retry: one
// attempt, and an error that says what is wrong with it.
func TestTooDeepJSONIsFinal(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 10_001) + strings.Repeat("]", 10_001)
	for _, tc := range []struct {
		name string
		call func(b *testBundle) error
	}{
		{"JSON", func(b *testBundle) error {
			var out any
			return b.client.JSON(b.ctx, Request{Path: "x", Endpoint: "x"}, &out)
		}},
		{"JSON validate only", func(b *testBundle) error {
			return b.client.JSON(b.ctx, Request{Path: "x", Endpoint: "x"}, nil)
		}},
		{"Decode", func(b *testBundle) error {
			_, err := b.client.Decode(b.ctx, Request{Path: "x", Endpoint: "x"}, func(body []byte) error {
				var out struct{ Contacts []json.RawMessage }
				if err := json.Unmarshal(body, &out); err != nil {
					return fmt.Errorf("contacts page: %w", err)
				}
				return nil
			})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { ok(w, deep) }, nil)
			e := asError(t, tc.call(b))
			if e.Attempts != 1 || b.hits.Load() != 1 || e.Temporary() {
				t.Fatalf("got %+v after %d requests, want one final attempt", e, b.hits.Load())
			}
			if want := "JSON nested deeper than 10000 at offset 10001"; e.Message != want {
				t.Fatalf("message %q, want %q", e.Message, want)
			}
		})
	}
}

// A decoder's syntax error inside a body that arrived whole (a JSON string holding bad JSON)
// is the vendor's data, not the transport: final.
func TestDecoderSyntaxErrorInCompleteBodyIsFinal(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { ok(w, `{"payload":"{\"a\":"}`) }, nil)
	_, err := b.client.Decode(b.ctx, Request{Path: "x", Endpoint: "x"}, func(body []byte) error {
		var out struct{ Payload string }
		if err := json.Unmarshal(body, &out); err != nil {
			return err
		}
		var inner map[string]any
		return json.Unmarshal([]byte(out.Payload), &inner)
	})
	e := asError(t, err)
	if e.Attempts != 1 || b.hits.Load() != 1 || e.Message != "cannot decode JSON at offset 5" {
		t.Fatalf("got %+v after %d requests", e, b.hits.Load())
	}
}

// A deep body cut short is a truncated response like any other: retried.
func TestTruncatedDeepJSONIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			ok(w, strings.Repeat("[", 10_001)+strings.Repeat("]", 100))
			return
		}
		ok(w, `[[1]]`)
	}, nil)
	var out [][]int
	if err := b.client.JSON(b.ctx, Request{Path: "x"}, &out); err != nil {
		t.Fatal(err)
	}
	if b.hits.Load() != 2 || len(out) != 1 {
		t.Fatalf("requests %d, out %v", b.hits.Load(), out)
	}
}

func TestWrongJSONShapeIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { ok(w, `{"n":"seven"}`) }, nil)
	var out struct{ N int }
	e := asError(t, b.client.JSON(b.ctx, Request{Path: "x"}, &out))
	if e.Attempts != 1 || !strings.Contains(e.Message, "offset") {
		t.Fatalf("got %+v", e)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		ok(w, `{"pad":"`+strings.Repeat("x", 4096)+`"}`)
	}, func(c *Config) { c.MaxBody = 1024 })
	_, err := b.client.Do(b.ctx, Request{Path: "x"})
	e := asError(t, err)
	if e.Status != 200 || e.Attempts != 1 || b.hits.Load() != 1 || !strings.Contains(e.Message, "exceeds 1024 bytes") {
		t.Fatalf("got %+v", e)
	}
}

// authServer accepts only the token "fresh".
func authServer(w http.ResponseWriter, r *http.Request, _ int64) {
	if r.Header.Get("Authorization") != "Bearer fresh" {
		status(w, 401, `{"statusCode":401,"message":"Invalid JWT","error":"Unauthorized"}`)
		return
	}
	ok(w, `{"ok":true}`)
}

func TestAuthRefreshOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, authServer, nil)
	creds := &fakeCreds{toks: []string{"stale", "fresh"}}
	resp, err := b.client.Do(b.ctx, Request{Path: "x", Auth: creds})
	if err != nil {
		t.Fatal(err)
	}
	// Fetched 3 times: the first token, the same one again (not rotated elsewhere), the fresh one.
	if resp.Attempts != 2 || creds.fetched != 3 || !slices.Equal(creds.invalidated, []string{"stale"}) {
		t.Fatalf("attempts %d fetched %d invalidated %v", resp.Attempts, creds.fetched, creds.invalidated)
	}
	if len(b.clock.Waits()) != 0 {
		t.Fatalf("waited %v before the auth retry", b.clock.Waits())
	}
}

func TestAuthTwiceFails(t *testing.T) {
	t.Parallel()
	b := setup(t, authServer, nil)
	creds := &fakeCreds{toks: []string{"stale", "also-stale"}}
	_, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: creds})
	if StatusOf(err) != 401 || b.hits.Load() != 2 || len(creds.invalidated) != 1 {
		t.Fatalf("err %v hits %d invalidated %v", err, b.hits.Load(), creds.invalidated)
	}
	if want := "testvendor: GET x: 401 Unauthorized: Invalid JWT (2 attempts)"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestAuthFailedCustom(t *testing.T) {
	t.Parallel()
	// LACRM: bad credentials are a 400 whose ErrorDescription says so; other 400s are not.
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch {
		case r.URL.Path == "/other":
			status(w, 400, `{"ErrorCode":"MissingParameter","ErrorDescription":"PipelineId is required"}`)
		case r.Header.Get("Authorization") != "Bearer fresh":
			status(w, 400, `{"ErrorCode":"Unauthorized","ErrorDescription":"Invalid credentials"}`)
		default:
			ok(w, `[]`)
		}
	}, func(c *Config) {
		c.AuthFailed = func(status int, body []byte) bool {
			return status == 400 && bytes.Contains(body, []byte("Invalid credentials"))
		}
	})
	creds := &fakeCreds{toks: []string{"stale", "fresh"}}
	if _, err := b.client.Do(b.ctx, Request{Method: "POST", Path: "v2/", Auth: creds}); err != nil {
		t.Fatal(err)
	}
	creds2 := &fakeCreds{toks: []string{"fresh"}}
	_, err := b.client.Do(b.ctx, Request{Method: "POST", Path: "other", Auth: creds2})
	e := asError(t, err)
	if e.Status != 400 || e.Attempts != 1 || len(creds2.invalidated) != 0 || e.Message != "MissingParameter: PipelineId is required" {
		t.Fatalf("got %+v, invalidated %v", e, creds2.invalidated)
	}
}

func TestNoRetry(t *testing.T) {
	t.Parallel()
	t.Run("5xx", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { status(w, 503, `{}`) }, nil)
		_, err := b.client.Do(b.ctx, Request{Method: "POST", Path: "oauth/token", Body: []byte("a=b"), NoRetry: true})
		if StatusOf(err) != 503 || b.hits.Load() != 1 || len(b.clock.Waits()) != 0 {
			t.Fatalf("err %v hits %d", err, b.hits.Load())
		}
	})
	t.Run("401", func(t *testing.T) {
		t.Parallel()
		b := setup(t, authServer, nil)
		creds := &fakeCreds{toks: []string{"stale", "fresh"}}
		_, err := b.client.Do(b.ctx, Request{Method: "POST", Path: "oauth/locationToken", Auth: creds, NoRetry: true})
		if StatusOf(err) != 401 || b.hits.Load() != 1 || len(creds.invalidated) != 1 {
			t.Fatalf("err %v hits %d invalidated %v", err, b.hits.Load(), creds.invalidated)
		}
	})
	// The server reads the request and hangs up without answering, on a reused keep-alive
	// connection: exactly where net/http re-sends a replayable request by itself. The
	// Idempotency-Key header makes this POST replayable in net/http's eyes.
	for _, noRetry := range []bool{true, false} {
		t.Run(fmt.Sprintf("dropped-noretry=%v", noRetry), func(t *testing.T) {
			t.Parallel()
			var tokenHits atomic.Int64
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				if r.URL.Path != "/oauth/token" {
					ok(w, `{}`)
					return
				}
				tokenHits.Add(1)
				_, _ = io.ReadAll(r.Body)
				conn, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				_ = conn.Close()
			}, func(c *Config) {
				c.MaxAttempts = 1 // our layer never retries here: any re-send is net/http's
				c.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			})
			if _, err := b.client.Do(b.ctx, Request{Path: "warm"}); err != nil {
				t.Fatal(err)
			}
			_, err := b.client.Do(b.ctx, Request{
				Method: "POST", Path: "oauth/token", Body: []byte("refresh_token=rt-1"),
				ContentType: "application/x-www-form-urlencoded",
				Header:      http.Header{"Idempotency-Key": {"k1"}}, NoRetry: noRetry,
			})
			if err == nil {
				t.Fatal("dropped connection gave no error")
			}
			switch got := tokenHits.Load(); {
			case noRetry && got != 1:
				t.Fatalf("NoRetry token request reached the server %d times, want 1", got)
			case !noRetry && got < 2:
				t.Fatalf("control: net/http did not re-send (%d hits): this test proves nothing", got)
			}
		})
	}
}

func TestProactiveLimiterSpacing(t *testing.T) {
	t.Parallel()
	// The clock stands still and Sleep records instead of sleeping: each request's wait is
	// what the limiter asked for, however the goroutines are scheduled on a busy machine.
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var (
		mu     sync.Mutex
		sleeps []time.Duration
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ok(w, `{}`) }))
	t.Cleanup(srv.Close)
	c := New(Config{Vendor: "v", BaseURL: srv.URL,
		Clock: func() time.Time { return t0 },
		Sleep: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			sleeps = append(sleeps, d)
			return nil
		},
		Limit: func(bucket string) (rate.Limit, int) {
			if bucket == "slow" {
				return 20, 1 // one request per 50 ms
			}
			return rate.Inf, 1
		}})
	const n = 5
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := c.Do(t.Context(), Request{Path: "x", Bucket: "slow"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// The first request goes at once; the others wait 50, 100, 150 and 200 ms.
	slices.Sort(sleeps)
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond}
	if !slices.Equal(sleeps, want) {
		t.Fatalf("%d requests on a 20/s bucket waited %v, want %v", n, sleeps, want)
	}
	// An unlimited bucket never waits.
	sleeps = nil
	for range n {
		if _, err := c.Do(t.Context(), Request{Path: "x", Bucket: "fast"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(sleeps) != 0 {
		t.Fatalf("an unlimited bucket waited %v", sleeps)
	}
}

func Test429HoldsTheBucket(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			w.Header().Set("Retry-After", "5")
			status(w, 429, `{}`)
			return
		}
		ok(w, `{}`)
	}, nil)
	// While the throttled caller waits, two more callers arrive: the one on the same bucket
	// must wait out the hold before sending, the one on another bucket must not.
	var first atomic.Bool
	var sameWaits, otherWaits []time.Duration
	b.clock.onSleep = func(time.Duration) {
		if !first.CompareAndSwap(false, true) {
			return // the inner callers' own sleeps
		}
		func() {
			before := len(b.clock.Waits())
			if _, err := b.client.Do(b.ctx, Request{Path: "y", Bucket: "other"}); err != nil {
				t.Error(err)
			}
			otherWaits = b.clock.Waits()[before:]
			before = len(b.clock.Waits())
			if _, err := b.client.Do(b.ctx, Request{Path: "y", Bucket: "loc:1"}); err != nil {
				t.Error(err)
			}
			sameWaits = b.clock.Waits()[before:]
		}()
	}
	if _, err := b.client.Do(b.ctx, Request{Path: "x", Bucket: "loc:1"}); err != nil {
		t.Fatal(err)
	}
	if len(otherWaits) != 0 || !slices.Equal(sameWaits, []time.Duration{5 * time.Second}) {
		t.Fatalf("other bucket waited %v, same bucket waited %v (want none and [5s])", otherWaits, sameWaits)
	}
}

func TestCancelStopsWaits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    handler
		cfg  func(*Config)
		req  Request
	}{
		{"retry-after", func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("Retry-After", "30")
			status(w, 429, `{}`)
		}, nil, Request{Path: "x"}},
		{"limiter", func(w http.ResponseWriter, r *http.Request, n int64) { ok(w, `{}`) },
			func(c *Config) { c.Limit = func(string) (rate.Limit, int) { return rate.Every(time.Hour), 1 } },
			Request{Path: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			waiting := make(chan struct{})
			var once sync.Once
			b := setup(t, tc.h, func(c *Config) {
				c.Clock = time.Now
				c.Sleep = func(ctx context.Context, d time.Duration) error {
					once.Do(func() { close(waiting) })
					return sleepCtx(ctx, d) // the real, default sleep
				}
				if tc.cfg != nil {
					tc.cfg(c)
				}
			})
			if tc.name == "limiter" { // spend the burst so the next request must wait an hour
				if _, err := b.client.Do(b.ctx, tc.req); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(b.ctx)
			done := make(chan error, 1)
			go func() { _, err := b.client.Do(ctx, tc.req); done <- err }()
			select {
			case <-waiting:
			case <-time.After(10 * time.Second):
				t.Fatal("never started waiting")
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v, want context.Canceled", err)
				}
				asError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("Do kept waiting after cancel")
			}
		})
	}
}

func TestErrorsNeverLeakSecrets(t *testing.T) {
	t.Parallel()
	const (
		token = "tok-SECRET-9f8e7d"
		email = "jane.doe@example.com"
	)
	leaks := []string{token, email, "jane.doe", "other.person", "user=", "\x1b", "\x00"}
	check := func(t *testing.T, where, s string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(s, l) {
				t.Errorf("%s contains %q: %q", where, l, s)
			}
		}
	}
	bodies := map[string]string{
		"json-echo": `{"message":"user ` + email + ` with token ` + token + " \x1b[31mred\x00" + `","contact":{"email":"other.person@example.org"}}`,
		"html-echo": "<html><body>Bad request for " + email + " Bearer " + token + "</body></html>",
		"json-raw":  `{"contact":{"email":"other.person@example.org","token":"` + token + `"}}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { status(w, 400, body) }, nil)
			_, err := b.client.Do(b.ctx, Request{
				Path: "identities/v3", Endpoint: "identities", Query: url.Values{"user": {email}},
				Auth: &fakeCreds{toks: []string{token}},
			})
			if StatusOf(err) != 400 {
				t.Fatalf("err %v", err)
			}
			check(t, "error", err.Error())
		})
	}
	t.Run("custom-message", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { status(w, 422, bodies["json-echo"]) },
			func(c *Config) { c.Message = func(body []byte) string { return string(body) } })
		_, err := b.client.Do(b.ctx, Request{Path: "x", Query: url.Values{"user": {email}}, Auth: &fakeCreds{toks: []string{token}}})
		check(t, "error", err.Error())
	})
	t.Run("network", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
		}, func(c *Config) { c.MaxAttempts = 2 })
		_, err := b.client.Do(b.ctx, Request{Path: "identities/v3", Query: url.Values{"user": {email}}, Auth: &fakeCreds{toks: []string{token}}})
		if e := asError(t, err); e.Status != 0 || !e.Temporary() {
			t.Fatalf("got %+v", e)
		}
		check(t, "error", err.Error())
		if !strings.Contains(b.logs.String(), "httpx: retrying") {
			t.Fatalf("no retry logged: %q", b.logs.String())
		}
		check(t, "log", b.logs.String())
	})
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		status(w, 403, `{"name":"not_authorized","message":"You are not permitted to perform this action."}`)
	}, func(c *Config) { c.Vendor = "localiq" })
	_, err := b.client.Do(b.ctx, Request{Path: "crm/contact_interactions", Query: url.Values{"global_master_advertiser_id": {"USA_1"}}})
	const want = "localiq: GET crm/contact_interactions: 403 not_authorized: You are not permitted to perform this action. (1 attempt)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if asError(t, err).Temporary() {
		t.Fatal("403 reported temporary")
	}
}

type recObserver struct {
	mu       sync.Mutex
	statuses []int
	reasons  []string
}

func (o *recObserver) Request(vendor, endpoint string, status int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.statuses = append(o.statuses, status)
}

func (o *recObserver) Retry(vendor, endpoint, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reasons = append(o.reasons, reason)
}

func TestObserverAndTune(t *testing.T) {
	t.Parallel()
	obs := &recObserver{}
	var tuned atomic.Int64
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("X-RateLimit-Max", "100")
		switch n {
		case 1:
			status(w, 429, `{}`)
		case 2:
			status(w, 500, `{}`)
		default:
			ok(w, `{}`)
		}
	}, func(c *Config) {
		c.Observer = obs
		c.Limit = func(string) (rate.Limit, int) { return 1000, 10 }
		c.Tune = func(bucket string, h http.Header, l *rate.Limiter) {
			if bucket == "loc:1" && h.Get("X-RateLimit-Max") == "100" {
				tuned.Add(1)
				l.SetLimit(10)
			}
		}
	})
	if _, err := b.client.Do(b.ctx, Request{Path: "x", Bucket: "loc:1"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(obs.statuses, []int{429, 500, 200}) || !slices.Equal(obs.reasons, []string{"429", "5xx"}) || tuned.Load() != 3 {
		t.Fatalf("statuses %v reasons %v tuned %d", obs.statuses, obs.reasons, tuned.Load())
	}
	if l := b.client.bucket("loc:1").lim.Limit(); l != 10 {
		t.Fatalf("Tune did not reach the bucket's limiter: limit %v", l)
	}
}

func TestRequestShape(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, query, auth, ua, ct, version, body string
	}
	got := make(chan seen, 2)
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("User-Agent"),
			r.Header.Get("Content-Type"), r.Header.Get("Version"), string(body)}
		ok(w, `{}`)
	}, func(c *Config) { c.BaseURL += "/api/" })
	_, err := b.client.Do(b.ctx, Request{
		Method: "POST", Path: "/contacts/search", Body: []byte(`{"locationId":"L"}`), ContentType: "application/json",
		Header: http.Header{"Version": {"2021-07-28"}}, Auth: &fakeCreds{toks: []string{"t1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s != (seen{"POST", "/api/contacts/search", "", "Bearer t1", defaultUserAgent(), "application/json", "2021-07-28", `{"locationId":"L"}`}) {
		t.Fatalf("server saw %+v", s)
	}
	// An absolute next-page URL keeps its own query and gets Query merged in.
	if _, err := b.client.Do(b.ctx, Request{Path: b.srv.URL + "/crm/next?page=2", Query: url.Values{"x": {"1"}}}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.path != "/crm/next" || s.query != "page=2&x=1" || s.auth != "" {
		t.Fatalf("server saw %+v", s)
	}
}

func TestInvalidURLIsPermanent(t *testing.T) {
	t.Parallel()
	c := New(Config{Vendor: "v"}) // no BaseURL
	_, err := c.Do(t.Context(), Request{Path: "x"})
	if e := asError(t, err); e.Attempts != 0 || e.Temporary() || !strings.Contains(e.Error(), "invalid URL") {
		t.Fatalf("got %+v", e)
	}
}

// rotatingGrant is a vendor grant and the token store in one. Like LocaliQ, a refresh revokes
// the previous access token; like the store, Token refreshes only after Invalidate of the
// token it holds, and otherwise hands out whatever another caller rotated to.
type rotatingGrant struct {
	mu        sync.Mutex
	gen       int
	held      string // what Token hands out
	valid     string // the one access token the API accepts
	invalid   bool   // held was invalidated
	refreshes int    // refreshes caused by the client under test
}

func newRotatingGrant() *rotatingGrant {
	g := &rotatingGrant{}
	g.rotateLocked()
	return g
}

func (g *rotatingGrant) rotateLocked() {
	g.gen++
	g.held = fmt.Sprintf("tok%d", g.gen)
	g.valid = g.held
}

// rotate is a refresh by another goroutine sharing the grant.
func (g *rotatingGrant) rotate() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotateLocked()
}

// revoke makes the vendor refuse the current token without a rotation.
func (g *rotatingGrant) revoke() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.valid = ""
}

func (g *rotatingGrant) accepts(r *http.Request) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.valid != "" && r.Header.Get("Authorization") == "Bearer "+g.valid
}

func (g *rotatingGrant) Token(context.Context) (*oauth2.Token, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.invalid {
		g.invalid = false
		g.refreshes++
		g.rotateLocked()
	}
	return &oauth2.Token{AccessToken: g.held}, nil
}

func (g *rotatingGrant) Invalidate(tok *oauth2.Token) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if tok.AccessToken == g.held {
		g.invalid = true
	}
}

func (g *rotatingGrant) Refreshes() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refreshes
}

// A request refused because another goroutine rotated the token while it was in flight is
// re-sent with the rotated token: no refresh of its own, no attempt spent.
func TestTokenRotatedElsewhereIsRetriedWithoutRefreshOrAttempt(t *testing.T) {
	t.Parallel()
	g := newRotatingGrant()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n <= 3 {
			g.rotate() // lands between the client's Token and the vendor's check
		}
		if !g.accepts(r) {
			status(w, 401, `{"error":"invalid_token"}`)
			return
		}
		ok(w, `{"ok":true}`)
	}, func(c *Config) { c.MaxAttempts = 2 })
	resp, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: g})
	if err != nil {
		t.Fatalf("%v (%d requests, %d refreshes)", err, b.hits.Load(), g.Refreshes())
	}
	if resp.Attempts != 1 || b.hits.Load() != 4 || g.Refreshes() != 0 || len(b.clock.Waits()) != 0 {
		t.Fatalf("attempts %d, requests %d, refreshes %d, waits %v", resp.Attempts, b.hits.Load(), g.Refreshes(), b.clock.Waits())
	}
}

// A grant rotated by others faster than this call can use it ends in a 401, not a loop.
func TestEndlessRotationElsewhereIsBounded(t *testing.T) {
	t.Parallel()
	g := newRotatingGrant()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		g.rotate()
		status(w, 401, `{"error":"invalid_token"}`)
	}, nil)
	_, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: g})
	if StatusOf(err) != 401 || b.hits.Load() != 1+maxRotations || g.Refreshes() != 0 {
		t.Fatalf("err %v, requests %d, refreshes %d", err, b.hits.Load(), g.Refreshes())
	}
}

// A token refused while the store still hands it out is refreshed once; when the refreshed
// token is later revoked by a rotation elsewhere, the call moves on to the rotated token
// without a second refresh.
func TestRefreshOnceThenFollowRotationElsewhere(t *testing.T) {
	t.Parallel()
	g := newRotatingGrant()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch n {
		case 1:
			g.revoke()
		case 2: // the refreshed token works, but the vendor is busy
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case 3:
			g.rotate()
		}
		if !g.accepts(r) {
			status(w, 401, `{"error":"invalid_token"}`)
			return
		}
		ok(w, `{"ok":true}`)
	}, func(c *Config) { c.MaxAttempts = 3 })
	resp, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: g})
	if err != nil {
		t.Fatalf("%v (%d requests, %d refreshes)", err, b.hits.Load(), g.Refreshes())
	}
	if resp.Attempts != 3 || b.hits.Load() != 4 || g.Refreshes() != 1 {
		t.Fatalf("attempts %d, requests %d, refreshes %d", resp.Attempts, b.hits.Load(), g.Refreshes())
	}
}

// The token this call refreshed, refused again while the store still hands it out, is final:
// one refresh per call.
func TestRefreshedTokenRefusedAgainIsFinal(t *testing.T) {
	t.Parallel()
	g := newRotatingGrant()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		g.revoke()
		status(w, 401, `{"error":"invalid_token"}`)
	}, nil)
	_, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: g})
	if StatusOf(err) != 401 || b.hits.Load() != 3 || g.Refreshes() != 1 {
		t.Fatalf("err %v, requests %d, refreshes %d", err, b.hits.Load(), g.Refreshes())
	}
}

// flakyCreds fails its first Token calls with err, then hands out "fresh".
type flakyCreds struct {
	fakeCreds
	failures int
	err      error
}

func (f *flakyCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	f.mu.Lock()
	if f.failures > 0 {
		f.failures--
		f.mu.Unlock()
		return nil, f.err
	}
	f.mu.Unlock()
	return f.fakeCreds.Token(ctx)
}

func TestTransientTokenFailureIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, authServer, nil)
	creds := &flakyCreds{fakeCreds: fakeCreds{toks: []string{"fresh"}}, failures: 2,
		err: errors.New("refresh: POST oauth/token: 502 Bad Gateway")}
	resp, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: creds})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 3 || len(b.clock.Waits()) != 2 || b.hits.Load() != 1 {
		t.Fatalf("attempts %d, waits %v, hits %d", resp.Attempts, b.clock.Waits(), b.hits.Load())
	}
}

func TestNeedsReauthIsNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, authServer, nil)
	creds := &flakyCreds{fakeCreds: fakeCreds{toks: []string{"fresh"}}, failures: 5,
		err: fmt.Errorf("grant x: %w", sources.ErrNeedsReauth)}
	_, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: creds})
	if !errors.Is(err, sources.ErrNeedsReauth) || len(b.clock.Waits()) != 0 || b.hits.Load() != 0 {
		t.Fatalf("err %v, waits %v, hits %d", err, b.clock.Waits(), b.hits.Load())
	}
}

// Each attempt takes the current token, after its wait: a token taken before a backoff or a
// rate-limit wait may have been rotated (or have expired) by the time the request goes,
// which would cost a needless 401 and a retry.
func TestEachAttemptTakesTheCurrentToken(t *testing.T) {
	t.Parallel()
	g := newRotatingGrant()
	var refused atomic.Int64
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if !g.accepts(r) {
			refused.Add(1)
			status(w, 401, `{"error":"invalid_token"}`)
			return
		}
		if n == 1 {
			g.rotate() // another caller refreshes while this one backs off
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ok(w, `{"ok":true}`)
	}, nil)
	if _, err := b.client.Do(b.ctx, Request{Path: "x", Endpoint: "x", Auth: g}); err != nil {
		t.Fatal(err)
	}
	if b.hits.Load() != 2 || refused.Load() != 0 {
		t.Fatalf("requests %d, of which refused %d: the retry after the backoff must carry the rotated token",
			b.hits.Load(), refused.Load())
	}
}

func TestThrottledAnswersDoNotSpendAttempts(t *testing.T) {
	t.Parallel()
	// Ten 429s, two 502s, then success: the 429s are waited out (MaxThrottled), and the two
	// failures fit in MaxAttempts = 3.
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch {
		case n <= 10:
			status(w, 429, `{}`)
		case n <= 12:
			status(w, 502, `{}`)
		default:
			ok(w, `{}`)
		}
	}, func(c *Config) { c.MaxAttempts = 3 })
	if _, err := b.client.Do(b.ctx, Request{Path: "x"}); err != nil {
		t.Fatalf("gave up on a vendor that only asked to slow down: %v", err)
	}
	if b.hits.Load() != 13 {
		t.Fatalf("%d hits, want 13", b.hits.Load())
	}
}

func TestMaxThrottledBounds429s(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		status(w, 429, `{}`)
	}, func(c *Config) { c.MaxThrottled = 5 })
	_, err := b.client.Do(b.ctx, Request{Path: "x"})
	if e := asError(t, err); e.Status != 429 || e.Attempts != 5 || b.hits.Load() != 5 {
		t.Fatalf("got %+v after %d hits", e, b.hits.Load())
	}
}

// At debug, each attempt is one line: method, the endpoint's stable name, status, duration
// and attempt number; never the path's ids, the query, or a token.
func TestRequestDebugLine(t *testing.T) {
	t.Parallel()
	const token = "tok-SECRET-9f8e7d"
	answer := func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			status(w, 503, `{}`)
			return
		}
		status(w, 200, `{}`)
	}
	logTo := func(w io.Writer, level slog.Level) func(*Config) {
		return func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})) }
	}
	var logs syncBuffer
	b := setup(t, answer, logTo(&logs, slog.LevelDebug))
	_, err := b.client.Do(b.ctx, Request{Method: http.MethodPost, Path: "contacts/C-4711", Endpoint: "contacts/{id}",
		Query: url.Values{"email": {"jane.doe@example.com"}}, Auth: &fakeCreds{toks: []string{token}}})
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for line := range strings.Lines(logs.String()) {
		for _, leak := range []string{token, "jane.doe", "C-4711", "email=", "Bearer"} {
			if strings.Contains(line, leak) {
				t.Errorf("debug line contains %q: %s", leak, line)
			}
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec["msg"] == "vendor request" {
			lines = append(lines, rec)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d request lines, want one per attempt (2):\n%s", len(lines), logs.String())
	}
	for i, want := range []float64{503, 200} {
		rec := lines[i]
		if rec["level"] != "DEBUG" || rec["method"] != "POST" || rec["endpoint"] != "contacts/{id}" || rec["vendor"] != "testvendor" ||
			rec["status"] != want || rec["attempt"] != float64(i+1) {
			t.Errorf("attempt %d: %v", i+1, rec)
		}
		if _, ok := rec["duration"]; !ok {
			t.Errorf("attempt %d has no duration: %v", i+1, rec)
		}
	}

	var info syncBuffer
	b = setup(t, answer, logTo(&info, slog.LevelInfo))
	if _, err := b.client.Do(b.ctx, Request{Path: "contacts", Endpoint: "contacts"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(info.String(), "vendor request") {
		t.Errorf("request lines at info: %s", info.String())
	}
}
