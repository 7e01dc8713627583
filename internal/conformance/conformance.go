// Package conformance is the suite every vendor's source passes against its own fake, as
// river's riverdrivertest is for its drivers: through the real app, worker and warehouse, on
// SQLite and on PostgreSQL. A vendor package runs it with one call in a test:
//
//	conformance.Run(t, sources.LeadConnector, conformance.Vendor{Mutate: ..., Delete: ...})
//
// It checks, for that vendor alone:
//   - a backfill equals the fake's ground truth;
//   - a sync stopped after any page boundary resumes from the committed cursor and ends
//     equal to the ground truth;
//   - accounts the vendor answers 403 for are restricted, and the others sync;
//   - 429s, 5xx answers, dropped connections and truncated bodies are retried;
//   - a malformed page fails the account with a clear error and commits nothing of it;
//   - an incremental run after changes at the vendor sees them (Vendor.Mutate);
//   - a full pass notices deletes (Vendor.Delete).
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/worker"
)

// Vendor is what the suite needs to know of a vendor beyond its registration: how to change
// its fake's data (the fakes' admin calls are the vendor's own).
type Vendor struct {
	// Mutate adds and updates leads of account at the fake, as an incremental run must
	// see them (nil: that part is skipped).
	Mutate func(s *testenv.Sandbox, account string) error
	// Delete deletes at least one lead of account at the fake (nil: the vendor has no
	// deletes, and that part is skipped).
	Delete func(s *testenv.Sandbox, account string) error
	// Options adjusts the sandbox (sizes: enough pages to cross boundaries).
	Options func(*testenv.Options)
	// Configure adjusts the connection's options (the vendor's own type), e.g. small pages.
	Configure func(config.Options)
	// StaticAuth runs the suite on the vendor's static-token connection (the sandbox's
	// --static-auth configuration) instead of its OAuth one.
	StaticAuth bool
}

// Run runs the suite for the vendor registered as name, on both dialects.
func Run(t *testing.T, name string, v Vendor) {
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				name string
				run  func(s *suite, t *testing.T)
			}{
				{"backfill", (*suite).backfill},
				{"resume-at-every-page-boundary", (*suite).resume},
				{"restricted", (*suite).restricted},
				{"transient-faults", (*suite).faults},
				{"malformed-page", (*suite).malformed},
				{"incremental", (*suite).incremental},
				{"full-pass-deletes", (*suite).deletes},
			} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(newSuite(t, name, dialect, v, c.name == "malformed-page"), t)
				})
			}
		})
	}
}

type suite struct {
	vendor string
	conn   string
	v      Vendor
	env    *testenv.Env
	app    *app.App
	cut    *truncator // the source's HTTP answers, which the malformed-page test cuts short
	seed   uint64     // the sandbox's data
}

// newSuite starts a sandbox and wires leadsync to it. quickRetries shortens retry waits to
// at most 50 ms (for a test that fails every answer: the waits prove nothing there).
func newSuite(t *testing.T, vendor, dialect string, v Vendor, quickRetries bool) *suite {
	t.Helper()
	return seededSuite(t, vendor, dialect, v, quickRetries, uint64(time.Now().UnixNano()))
}

// seededSuite is newSuite on the sandbox data of seed (logged, to reproduce a failure).
func seededSuite(t *testing.T, vendor, dialect string, v Vendor, quickRetries bool, seed uint64) *suite {
	t.Helper()
	t.Logf("sandbox seed %d", seed)
	opts := testenv.Small(seed)
	if v.Options != nil {
		v.Options(&opts)
	}
	opts.StaticAuth = v.StaticAuth
	env := testenv.New(t, opts, dialect)
	conn := sandbox.ConnectionName(vendor)
	cfg := env.Config(t)
	if c := cfg.Connection(conn); c != nil && v.Configure != nil {
		v.Configure(c.Options)
	}
	cut := &truncator{base: http.DefaultTransport}
	cut.after.Store(math.MaxInt64)
	hx := func(h *httpx.Config) {
		h.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: cut}
		if quickRetries {
			h.Sleep = func(ctx context.Context, d time.Duration) error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(min(d, 50*time.Millisecond)):
					return nil
				}
			}
		}
	}
	a := testenv.Authorize(t, env.AppWith(t, cfg, app.Options{HTTPX: hx}))
	if c, err := a.Conn(conn); err != nil || c.Static != v.StaticAuth {
		t.Fatalf("connection %s: static tokens %v, want %v (%v)", conn, err == nil && c.Static, v.StaticAuth, err)
	}
	return &suite{vendor: vendor, conn: conn, v: v, env: env, app: a, cut: cut, seed: seed}
}

// sync runs the vendor's connection once (full: a full pass).
func (s *suite) sync(t *testing.T, full bool) worker.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := s.app.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce, Connections: []string{s.conn}, Full: full})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// requireTruth fails unless the warehouse holds exactly the vendor's ground truth.
func (s *suite) requireTruth(t *testing.T) {
	t.Helper()
	var mine []string
	for _, d := range s.env.Diff(t) {
		if strings.HasPrefix(d, s.vendor+"/") {
			mine = append(mine, d)
		}
	}
	if len(mine) > 0 {
		if len(mine) > 20 {
			mine = append(mine[:20], fmt.Sprintf("... and %d more", len(mine)-20))
		}
		t.Fatalf("the warehouse differs from %s's ground truth:\n%s", s.vendor, strings.Join(mine, "\n"))
	}
}

func (s *suite) truth() []simkit.AccountTruth {
	var out []simkit.AccountTruth
	for _, at := range s.env.Sandbox.GroundTruth() {
		if at.Source == s.vendor {
			out = append(out, at)
		}
	}
	return out
}

// readable is the first account of the vendor whose leads can be read and that has some.
func (s *suite) readable(t *testing.T) string {
	t.Helper()
	for _, at := range s.truth() {
		if !at.Restricted && len(at.Leads) > 3 {
			return at.AccountID
		}
	}
	t.Fatalf("the %s fake has no readable account with leads", s.vendor)
	return ""
}

func (s *suite) requireOK(t *testing.T, what string, res worker.Result) {
	t.Helper()
	if !res.OK() {
		t.Fatalf("%s: run %s: %v", what, res.Status, res.Failures)
	}
}

func (s *suite) backfill(t *testing.T) {
	res := s.sync(t, false)
	s.requireOK(t, "backfill", res)
	s.requireTruth(t)
	var leads int
	for _, at := range s.truth() {
		if !at.Restricted {
			leads += len(at.Leads)
		}
	}
	if res.Stats.LeadsWritten != int64(leads) {
		t.Fatalf("backfill wrote %d leads, the vendor has %d readable", res.Stats.LeadsWritten, leads)
	}
	// Every stream of every readable account is in the ledger, ok.
	st, err := s.app.Sink.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := len(s.source(t).Streams())
	for _, a := range st {
		if a.Source != s.vendor || a.Access != sources.AccessOK {
			continue
		}
		if len(a.Streams) != want {
			t.Errorf("account %s: %d streams recorded, the source has %d", a.AccountID, len(a.Streams), want)
		}
		for _, ss := range a.Streams {
			if ss.LastOutcome != worker.OutcomeOK {
				t.Errorf("account %s stream %s: outcome %q", a.AccountID, ss.Name, ss.LastOutcome)
			}
		}
	}
}

// errStopped is what the stopping source says after its pages: a crash between two pages.
var errStopped = errors.New("conformance: stopped after the page boundary")

// stopAfter wraps a source: after n pages in all, every page sequence ends in errStopped.
type stopAfter struct {
	sources.Source
	left atomic.Int64
}

func (s *stopAfter) Read(ctx context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if s.left.Load() <= 0 {
			yield(sources.Page{}, errStopped)
			return
		}
		for p, err := range s.Source.Read(ctx, a, stream, cur, o) {
			if err != nil {
				yield(p, err)
				return
			}
			if s.left.Add(-1) < 0 {
				yield(sources.Page{}, errStopped)
				return
			}
			if !yield(p, nil) {
				return
			}
		}
	}
}

// countPages is a source wrapper that counts the pages the worker reads.
type countPages struct {
	sources.Source
	n atomic.Int64
}

func (s *countPages) Read(ctx context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		for p, err := range s.Source.Read(ctx, a, stream, cur, o) {
			if err == nil {
				s.n.Add(1)
			}
			if !yield(p, err) || err != nil {
				return
			}
		}
	}
}

// wrap puts w in place of the vendor's source in the worker; the returned function puts the
// original back.
func (s *suite) wrap(t *testing.T, w func(sources.Source) sources.Source) (restore func()) {
	t.Helper()
	for i := range s.app.Worker.Connections {
		c := &s.app.Worker.Connections[i]
		if c.Name == s.conn {
			orig := c.Source
			c.Source = w(orig)
			return func() { c.Source = orig }
		}
	}
	t.Fatalf("no worker connection %s", s.conn)
	return nil
}

// resume stops a backfill after each page boundary in turn (a fresh environment each time,
// at most 4 boundaries spread over the pass, the first and the last among them), then lets it finish: the end state is the
// ground truth, and no page is written twice.
func (s *suite) resume(t *testing.T) {
	counter := &countPages{}
	restore := s.wrap(t, func(src sources.Source) sources.Source { counter.Source = src; return counter })
	s.requireOK(t, "counting backfill", s.sync(t, false))
	restore()
	pages := int(counter.n.Load())
	if pages < 2 {
		t.Fatalf("the backfill read %d pages: too few to cross a boundary (raise the fake's sizes with Vendor.Options)", pages)
	}
	var boundaries []int
	for i := range min(4, pages-1) {
		boundaries = append(boundaries, 1+i*(pages-2)/max(1, min(4, pages-1)-1))
	}
	for _, k := range slices.Compact(boundaries) {
		t.Run(fmt.Sprintf("after-page-%d-of-%d", k, pages), func(t *testing.T) {
			// The same data as the counting backfill: how many pages a pass reads depends on it.
			s := seededSuite(t, s.vendor, s.env.Dialect, s.v, false, s.seed)
			stop := &stopAfter{}
			stop.left.Store(int64(k))
			restore := s.wrap(t, func(src sources.Source) sources.Source { stop.Source = src; return stop })
			first := s.sync(t, false)
			restore()
			if first.OK() {
				t.Fatalf("a run stopped after %d of %d pages reported ok", k, pages)
			}
			for _, f := range first.Failures {
				if !errors.Is(f, errStopped) {
					t.Fatalf("a failure other than the stop: %v", f)
				}
			}
			second := s.sync(t, false)
			s.requireOK(t, "resumed run", second)
			s.requireTruth(t)
			if total := first.Stats.LeadsWritten + second.Stats.LeadsWritten; total > int64(s.env.LeadCount(t)) {
				t.Fatalf("the two runs wrote %d leads for %d stored: a committed page was written again", total, s.env.LeadCount(t))
			}
		})
	}
}

func (s *suite) restricted(t *testing.T) {
	var restricted []string
	for _, at := range s.truth() {
		if at.Restricted {
			restricted = append(restricted, at.AccountID)
		}
	}
	if len(restricted) == 0 {
		t.Skipf("the %s fake has no restricted account", s.vendor)
	}
	s.requireOK(t, "run with restricted accounts", s.sync(t, false))
	s.requireTruth(t)
	st, err := s.app.Sink.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	access := map[string]string{}
	for _, a := range st {
		if a.Source == s.vendor {
			access[a.AccountID] = a.Access
		}
	}
	for _, id := range restricted {
		if access[id] == sources.AccessOK || access[id] == "" {
			t.Errorf("account %s answers 403 but its access is %q", id, access[id])
		}
	}
	// The 403 restricts the streams the vendor refuses, and the others sync.
	for _, a := range st {
		if a.Source != s.vendor {
			continue
		}
		outcomes := map[string]string{}
		for _, ss := range a.Streams {
			outcomes[ss.Name] = ss.LastOutcome
		}
		src := s.source(t)
		for _, want := range src.Streams() {
			o := outcomes[want.Name]
			if !slices.Contains(restricted, a.AccountID) && o != worker.OutcomeOK {
				t.Errorf("account %s stream %s: outcome %q, want ok", a.AccountID, want.Name, o)
			}
			if slices.Contains(restricted, a.AccountID) && o != worker.OutcomeOK && o != worker.OutcomeRestricted {
				t.Errorf("restricted account %s stream %s: outcome %q", a.AccountID, want.Name, o)
			}
		}
		if slices.Contains(restricted, a.AccountID) && !slices.Contains(slices.Collect(maps.Values(outcomes)), worker.OutcomeRestricted) {
			t.Errorf("restricted account %s: no stream restricted: %v", a.AccountID, outcomes)
		}
	}
}

// source is the vendor's source in the worker.
func (s *suite) source(t *testing.T) sources.Source {
	t.Helper()
	for _, c := range s.app.Worker.Connections {
		if c.Name == s.conn {
			return c.Source
		}
	}
	t.Fatalf("no worker connection %s", s.conn)
	return nil
}

func (s *suite) faults(t *testing.T) {
	s.env.Sandbox.SetFaults(simkit.FaultSettings{Rate429: 0.05, Rate5xx: 0.05, RateReset: 0.02, RateTruncate: 0.02,
		LatencyRate: 0.05, Latency: 100 * time.Millisecond})
	s.requireOK(t, "run under faults", s.sync(t, false))
	s.env.Sandbox.SetFaults(simkit.FaultSettings{})
	s.requireTruth(t)
}

// malformed cuts every answer of the source short from the middle of a backfill on: the
// accounts fail with "malformed JSON", the warehouse holds exactly the pages read before
// (nothing of a page half-way), and a run after the cut ends equal to the ground truth.
func (s *suite) malformed(t *testing.T) {
	clean := s.sync(t, false)
	s.requireOK(t, "counting backfill", clean)
	requests := clean.Stats.Requests

	s = newSuite(t, s.vendor, s.env.Dialect, s.v, true)
	s.cut.after.Store(requests / 2)
	seen := &seenLeads{ids: map[string]bool{}}
	restore := s.wrap(t, func(src sources.Source) sources.Source { seen.Source = src; return seen })
	res := s.sync(t, false)
	restore()
	s.cut.after.Store(math.MaxInt64)
	if res.OK() || len(res.Failures) == 0 {
		t.Fatalf("answers cut short after %d of %d requests, and the run says %s", requests/2, requests, res.Status)
	}
	for _, f := range res.Failures {
		if !strings.Contains(f.Error(), "malformed JSON") {
			t.Errorf("the error does not say the answer was malformed: %v", f)
		}
	}
	stored, read := s.env.LeadCount(t), seen.count()
	t.Logf("answers cut after %d of %d requests: %d leads read before, %d stored", requests/2, requests, read, stored)
	if stored != read {
		t.Fatalf("the warehouse holds %d leads; the pages read before the cut held %d", stored, read)
	}
	if read == 0 {
		t.Fatalf("no page was read before the cut: the test proves nothing (give the fake more pages)")
	}
	s.requireOK(t, "run after the cut", s.sync(t, false))
	s.requireTruth(t)
}

// truncator is an HTTP transport that, after `after` requests, cuts every answer's body in
// half (a truncated page: valid HTTP, malformed JSON).
type truncator struct {
	base  http.RoundTripper
	after atomic.Int64
	n     atomic.Int64
}

func (tr *truncator) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tr.base.RoundTrip(r)
	if err != nil || tr.n.Add(1) <= tr.after.Load() {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	half := body[:len(body)/2]
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(half)), int64(len(half))
	resp.Header.Set("Content-Length", strconv.Itoa(len(half)))
	return resp, nil
}

// seenLeads is a source wrapper that records the leads of the pages the worker was given.
type seenLeads struct {
	sources.Source
	mu  sync.Mutex
	ids map[string]bool
}

func (s *seenLeads) Read(ctx context.Context, a sources.Account, stream string, cur sources.Cursor, o sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		for p, err := range s.Source.Read(ctx, a, stream, cur, o) {
			if err == nil {
				s.mu.Lock()
				for _, l := range p.Leads {
					s.ids[l.AccountID+"/"+l.ID] = true
				}
				s.mu.Unlock()
			}
			if !yield(p, err) || err != nil {
				return
			}
		}
	}
}

func (s *seenLeads) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *suite) incremental(t *testing.T) {
	if s.v.Mutate == nil {
		t.Skipf("no Mutate for %s", s.vendor)
	}
	s.requireOK(t, "backfill", s.sync(t, false))
	if err := s.v.Mutate(s.env.Sandbox, s.readable(t)); err != nil {
		t.Fatal(err)
	}
	res := s.sync(t, false)
	s.requireOK(t, "incremental run", res)
	s.requireTruth(t)
	if res.Stats.LeadsWritten == 0 {
		t.Fatal("the incremental run wrote nothing after changes at the vendor")
	}
}

func (s *suite) deletes(t *testing.T) {
	if s.v.Delete == nil {
		t.Skipf("%s has no deletes", s.vendor)
	}
	s.requireOK(t, "backfill", s.sync(t, false))
	if err := s.v.Delete(s.env.Sandbox, s.readable(t)); err != nil {
		t.Fatal(err)
	}
	s.requireOK(t, "full pass", s.sync(t, true))
	s.requireTruth(t) // compares live leads: the deleted ones must be soft-deleted
}
