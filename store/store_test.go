package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/store"
	"github.com/leadsync/leadsync/store/internal/tokensrv"
)

const conn = "lacrm-main"

// backend is one database the conformance suite runs on.
type backend struct {
	name string
	// newDB returns a store URL, the options it needs, and a raw handle for inspecting rows.
	newDB func(t testing.TB) (url string, opts store.Options, raw *sql.DB, files []string)
}

var backends = []backend{
	{"sqlite", func(t testing.TB) (string, store.Options, *sql.DB, []string) {
		path := filepath.Join(t.TempDir(), "state", "tokens.db")
		raw, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return "sqlite://" + path, store.Options{}, raw, []string{path, path + "-wal"}
	}},
	{"postgres", func(t testing.TB) (string, store.Options, *sql.DB, []string) {
		dsn, schema := pgtest.Schema(t)
		raw, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return dsn, store.Options{PostgresSchema: schema}, raw, nil
	}},
}

// forEachBackend runs the conformance test fn on every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// syncBuffer collects log output from many goroutines.
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

type testBundle struct {
	st    *store.Store
	url   string
	opts  store.Options
	raw   *sql.DB
	files []string
	srv   *tokensrv.Server
	cli   *tokensrv.Client
	clock *simkit.ManualClock
	logs  *syncBuffer
	first *oauth2.Token // the grant saved by setup
}

func newKey(t testing.TB) []byte {
	k := make([]byte, store.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// setup opens a store on b with a manual clock, a token server sharing it, and a saved grant.
func setup(t testing.TB, b backend) *testBundle {
	t.Helper()
	url, opts, raw, files := b.newDB(t)
	clock := simkit.NewManualClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	logs := &syncBuffer{}
	opts.Key = newKey(t)
	opts.Clock = clock.Now
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := tokensrv.New(tokensrv.Options{Clock: clock, TTL: time.Hour})
	t.Cleanup(srv.Close)
	tb := &testBundle{url: url, opts: opts, raw: raw, files: files, srv: srv, cli: srv.Client(clock.Now), clock: clock, logs: logs}
	tb.st = tb.open(t)
	tb.first = srv.Authorize()
	if err := tb.st.Save(context.Background(), conn, tb.first); err != nil {
		t.Fatal(err)
	}
	return tb
}

// open opens another Store on the same database, as another process would.
func (tb *testBundle) open(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), tb.url, tb.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (tb *testBundle) grant(st *store.Store) sources.Credentials {
	return st.Tokens(conn, tb.cli).Grant()
}

func (tb *testBundle) refreshes() int64 { return tb.srv.Counters.Get(simkit.CountRefreshes) }

func (tb *testBundle) tokenRequests() int64 { return tb.srv.Counters.Get(tokensrv.CountTokenRequests) }

// expire moves the clock into the refresh margin of the current token.
func (tb *testBundle) expire() {
	tb.clock.Advance(time.Hour - store.DefaultRefreshMargin + time.Second)
}

func mustToken(t *testing.T, c sources.Credentials) *oauth2.Token {
	t.Helper()
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

// apiOK asserts the server accepts tok.
func (tb *testBundle) apiOK(t *testing.T, tok *oauth2.Token) {
	t.Helper()
	st, _, err := tb.cli.Call(context.Background(), tok.AccessToken, "")
	if err != nil || st != http.StatusOK {
		t.Fatalf("API call with stored token: status %d, err %v", st, err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		tok := mustToken(t, tb.grant(tb.st))
		if tok.AccessToken != tb.first.AccessToken || !tok.Expiry.Equal(tb.first.Expiry.Truncate(time.Millisecond)) {
			t.Fatalf("got token expiring %s, want the saved one expiring %s", tok.Expiry, tb.first.Expiry)
		}
		if tok.RefreshToken != "" {
			t.Error("the refresh token must never leave the store")
		}
		if got := tok.Extra("subject"); got != "owner@example.com" {
			t.Errorf("extra subject = %v", got)
		}
		if tok.Extra("access_token") != nil {
			t.Error("token extras kept a copy of the access token")
		}
		tb.apiOK(t, tok)
		if ts, err := store.TokenSource(context.Background(), tb.grant(tb.st)).Token(); err != nil || ts.AccessToken != tok.AccessToken {
			t.Errorf("TokenSource adapter: %v", err)
		}
		if n := tb.refreshes(); n != 0 {
			t.Errorf("%d refreshes for a fresh token", n)
		}
		// A second process sees the same grant.
		tok2 := mustToken(t, tb.grant(tb.open(t)))
		if tok2.AccessToken != tok.AccessToken {
			t.Error("another store instance read a different token")
		}
		st, err := tb.st.Status(context.Background())
		if err != nil || len(st) != 1 {
			t.Fatalf("Status = %v, %v", st, err)
		}
		g := st[0]
		if g.Connection != conn || g.Subject != "owner@example.com" || strings.Join(g.Scopes, " ") != "contacts.read pipeline.read" ||
			g.NeedsReauth || !g.Expiry.Equal(tok.Expiry) {
			t.Errorf("Status = %+v", g)
		}
	})
}

func TestMissingGrantNeedsLogin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		_, err := tb.st.Tokens("other", tb.cli).Grant().Token(context.Background())
		if !errors.Is(err, store.ErrNoGrant) || !errors.Is(err, sources.ErrNeedsReauth) ||
			!strings.Contains(err.Error(), "leadsync auth login other") {
			t.Fatalf("err = %v", err)
		}
		if err := tb.st.Forget(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		if _, err := tb.grant(tb.st).Token(context.Background()); !errors.Is(err, store.ErrNoGrant) {
			t.Fatalf("after Forget: %v", err)
		}
		if err := tb.st.Forget(context.Background(), conn); !errors.Is(err, store.ErrNoGrant) {
			t.Fatalf("second Forget: %v", err)
		}
	})
}

// rawDump is every row of the store's tables, as text, plus the SQLite files' bytes.
func (tb *testBundle) rawDump(t *testing.T) string {
	t.Helper()
	var out strings.Builder
	for _, table := range []string{"grants", "account_tokens", "store_meta"} {
		rows, err := tb.raw.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&out, "%s|", v)
			}
			n++
		}
		rows.Close()
		if n == 0 && table == "grants" {
			t.Fatalf("table %s is empty: the dump would prove nothing", table)
		}
	}
	for _, f := range tb.files {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		out.Write(b)
	}
	return out.String()
}

func TestEncryptedAtRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		tb.expire()
		tok := mustToken(t, tb.grant(tb.st)) // a refresh: prev_refresh_token is filled too
		acct := mustToken(t, tb.st.Tokens(conn, tb.cli).Account("loc-1", tb.minter(tb.st, "loc-1")))
		dump := tb.rawDump(t)
		if !strings.Contains(dump, "owner@example.com") {
			t.Fatal("the dump does not contain the grant's metadata: it reads the wrong place")
		}
		for _, secret := range []string{tb.first.AccessToken, tb.first.RefreshToken, tok.AccessToken, acct.AccessToken, tokensrv.Prefix + "_"} {
			if strings.Contains(dump, secret) {
				t.Errorf("token store rows/files contain a token value (%.6s...)", secret)
			}
		}
		if strings.Contains(tb.logs.String(), tokensrv.Prefix+"_") {
			t.Errorf("logs contain a token value:\n%s", tb.logs.String())
		}
		if len(tb.files) > 0 {
			for _, f := range tb.files {
				if fi, err := os.Stat(f); err == nil && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %s, want 0600", f, fi.Mode().Perm())
				}
			}
		}
	})
}

func (tb *testBundle) minter(st *store.Store, account string) sources.Minter {
	return func(ctx context.Context) (*oauth2.Token, error) {
		g, err := tb.grant(st).Token(ctx)
		if err != nil {
			return nil, err
		}
		return tb.cli.Mint(ctx, g.AccessToken, account)
	}
}

func TestWrongKeyIsAClearError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		opts := tb.opts
		opts.Key = newKey(t)
		_, err := store.Open(context.Background(), tb.url, opts)
		if !errors.Is(err, store.ErrKeyMismatch) || !strings.Contains(err.Error(), "token store key does not match") {
			t.Fatalf("open with another key: %v", err)
		}
	})
}

func TestRotateKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		acct := mustToken(t, tb.st.Tokens(conn, tb.cli).Account("loc-1", tb.minter(tb.st, "loc-1")))
		newK := newKey(t)
		if err := tb.st.RotateKey(ctx, newK); err != nil {
			t.Fatal(err)
		}
		if tok := mustToken(t, tb.grant(tb.st)); tok.AccessToken != tb.first.AccessToken {
			t.Error("grant changed by key rotation")
		}
		if _, err := store.Open(ctx, tb.url, tb.opts); !errors.Is(err, store.ErrKeyMismatch) {
			t.Fatalf("old key still opens the store: %v", err)
		}
		opts := tb.opts
		opts.Key = newK
		tb.opts = opts
		st2 := tb.open(t)
		if tok := mustToken(t, st2.Tokens(conn, tb.cli).Account("loc-1", tb.minter(st2, "loc-1"))); tok.AccessToken != acct.AccessToken {
			t.Error("account token lost by key rotation")
		}
		// The refresh token survived too.
		tb.expire()
		tb.apiOK(t, mustToken(t, tb.grant(st2)))
		if tb.refreshes() != 1 {
			t.Errorf("refreshes = %d", tb.refreshes())
		}
	})
}

func TestConcurrentRefreshIsSingle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		// Three store instances stand for three processes; each has many goroutines.
		stores := []*store.Store{tb.st, tb.open(t), tb.open(t)}
		for round := range 5 {
			tb.expire()
			var wg sync.WaitGroup
			toks := make(chan string, 60)
			errs := make(chan error, 60)
			for i := range 60 {
				wg.Go(func() {
					tok, err := tb.grant(stores[i%len(stores)]).Token(context.Background())
					if err != nil {
						errs <- err
						return
					}
					toks <- tok.AccessToken
				})
			}
			wg.Wait()
			close(toks)
			close(errs)
			for err := range errs {
				t.Fatalf("round %d: %v", round, err)
			}
			seen := map[string]bool{}
			for tok := range toks {
				seen[tok] = true
			}
			if len(seen) != 1 {
				t.Fatalf("round %d: callers got %d different tokens, want 1", round, len(seen))
			}
			if got := tb.refreshes(); got != int64(round+1) {
				t.Fatalf("round %d: %d refreshes, want %d", round, got, round+1)
			}
		}
		if n := tb.srv.Counters.Get(simkit.CountRefreshReuse); n != 0 {
			t.Fatalf("server saw %d refresh-token reuses", n)
		}
		st, _ := tb.st.Status(context.Background())
		if st[0].LastRefreshAt.IsZero() || st[0].NeedsReauth {
			t.Errorf("Status after refreshes: %+v", st[0])
		}
	})
}

func TestInvalidateRefreshesOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		other := tb.open(t)
		g, g2 := tb.grant(tb.st), tb.grant(other)
		old := mustToken(t, g)
		g.Invalidate(old)
		fresh := mustToken(t, g)
		if fresh.AccessToken == old.AccessToken || tb.refreshes() != 1 {
			t.Fatalf("after Invalidate: same token=%t, refreshes=%d", fresh.AccessToken == old.AccessToken, tb.refreshes())
		}
		tb.apiOK(t, fresh)
		// Another process rejected the old token too: the stored one already differs, so
		// it is used as is.
		g2.Invalidate(old)
		if tok := mustToken(t, g2); tok.AccessToken != fresh.AccessToken || tb.refreshes() != 1 {
			t.Fatalf("stale Invalidate caused a refresh (refreshes=%d)", tb.refreshes())
		}
	})
}

func TestInvalidGrantIsTerminal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		for _, g := range tb.srv.Tokens.Grants() {
			tb.srv.Tokens.RevokeGrant(g.ID)
		}
		tb.expire()
		g := tb.grant(tb.st)
		_, err := g.Token(context.Background())
		if !errors.Is(err, sources.ErrNeedsReauth) || !strings.Contains(err.Error(), "leadsync auth login "+conn) ||
			!strings.Contains(err.Error(), conn) {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), tokensrv.Prefix+"_") {
			t.Fatalf("error leaks a token: %v", err)
		}
		calls := tb.tokenRequests()
		for range 5 {
			if _, err := tb.grant(tb.open(t)).Token(context.Background()); !errors.Is(err, sources.ErrNeedsReauth) {
				t.Fatalf("later call: %v", err)
			}
		}
		if tb.tokenRequests() != calls {
			t.Fatalf("the vendor was called again for a grant that needs re-authorization")
		}
		st, _ := tb.st.Status(context.Background())
		if !st[0].NeedsReauth || !strings.Contains(st[0].Reason, "invalid_grant") || strings.Contains(st[0].Reason, tokensrv.Prefix+"_") {
			t.Fatalf("Status = %+v", st[0])
		}
		// `leadsync auth login` saves a new grant: everything works again.
		if err := tb.st.Save(context.Background(), conn, tb.srv.Authorize()); err != nil {
			t.Fatal(err)
		}
		tb.apiOK(t, mustToken(t, g))
		tb.expire()
		tb.apiOK(t, mustToken(t, g))
		if st, _ := tb.st.Status(context.Background()); st[0].NeedsReauth {
			t.Fatal("needs_reauth not cleared by Save")
		}
	})
}

func TestTransientFailureKeepsRefreshToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		g := tb.grant(tb.st)
		cur := mustToken(t, g)

		// Ahead of expiry, a failed refresh still hands out the valid current token.
		tb.expire()
		tb.srv.FailNext(1, http.StatusBadGateway)
		if tok := mustToken(t, g); tok.AccessToken != cur.AccessToken {
			t.Fatal("got a different token after a failed refresh")
		}
		// Past expiry the failure is reported, without token values, as transient.
		tb.clock.Advance(store.DefaultRefreshMargin)
		tb.srv.FailNext(1, http.StatusBadGateway)
		_, err := g.Token(context.Background())
		if !errors.Is(err, store.ErrRefreshFailed) || errors.Is(err, sources.ErrNeedsReauth) {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), tokensrv.Prefix+"_") || !strings.Contains(err.Error(), "502") {
			t.Fatalf("error leaks a token or hides the cause: %v", err)
		}
		// The kept refresh token still works: no reuse, the grant is healthy.
		tb.apiOK(t, mustToken(t, g))
		if tb.refreshes() != 1 || tb.srv.Counters.Get(simkit.CountRefreshReuse) != 0 {
			t.Fatalf("refreshes=%d reuse=%d", tb.refreshes(), tb.srv.Counters.Get(simkit.CountRefreshReuse))
		}
		if strings.Contains(tb.logs.String(), tokensrv.Prefix+"_") {
			t.Error("logs contain a token value")
		}
	})
}

// A response lost after the vendor rotated is the one unavoidable loss: the next refresh
// presents the spent token, LACRM revokes the grant, and the store lands in needs_reauth
// once, without a retry loop.
func TestLostRotationEndsInNeedsReauth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		tb.srv.OnRefresh(func(p tokensrv.Phase) bool { return p == tokensrv.PhaseRotated })
		tb.expire()
		g := tb.grant(tb.st)
		tb.clock.Advance(store.DefaultRefreshMargin) // expired: the failure surfaces
		if _, err := g.Token(context.Background()); !errors.Is(err, store.ErrRefreshFailed) {
			t.Fatalf("dropped response: %v", err)
		}
		tb.srv.OnRefresh(nil)
		_, err := g.Token(context.Background())
		if !errors.Is(err, sources.ErrNeedsReauth) {
			t.Fatalf("after the lost rotation: %v", err)
		}
		calls := tb.tokenRequests()
		for range 3 {
			_, _ = g.Token(context.Background())
		}
		if tb.tokenRequests() != calls || tb.srv.Counters.Get(simkit.CountRefreshReuse) != 1 {
			t.Fatalf("token requests went on (%d → %d) or reuse != 1", calls, tb.tokenRequests())
		}
	})
}

func TestMintedAccountTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		other := tb.open(t)
		var wg sync.WaitGroup
		toks := make([]*oauth2.Token, 20)
		for i := range toks {
			wg.Go(func() {
				st := tb.st
				if i%2 == 1 {
					st = other
				}
				toks[i] = mustToken(t, st.Tokens(conn, tb.cli).Account("loc-1", tb.minter(st, "loc-1")))
			})
		}
		wg.Wait()
		minted := tb.srv.Counters.Get(tokensrv.CountMinted)
		if minted < 1 || minted > 2 { // one per store instance at most
			t.Fatalf("minted %d tokens for 20 concurrent callers in 2 processes", minted)
		}
		acct := tb.st.Tokens(conn, tb.cli).Account("loc-1", tb.minter(tb.st, "loc-1"))
		tok := mustToken(t, acct)
		if st, _, _ := tb.cli.Call(context.Background(), tok.AccessToken, "loc-1"); st != http.StatusOK {
			t.Fatalf("minted token rejected: %d", st)
		}
		if tok.Extra("locationId") != "loc-1" {
			t.Error("minted token lost its metadata")
		}
		// Cached: no new mint while fresh, even in a new process.
		_ = mustToken(t, other.Tokens(conn, tb.cli).Account("loc-1", tb.minter(other, "loc-1")))
		if n := tb.srv.Counters.Get(tokensrv.CountMinted); n != minted {
			t.Fatalf("minted again while cached (%d → %d)", minted, n)
		}
		// Invalidate drops it; near expiry re-mints.
		acct.Invalidate(tok)
		tok2 := mustToken(t, acct)
		if tok2.AccessToken == tok.AccessToken || tb.srv.Counters.Get(tokensrv.CountMinted) != minted+1 {
			t.Fatal("Invalidate did not re-mint exactly once")
		}
		tb.expire()
		tok3 := mustToken(t, acct)
		if tok3.AccessToken == tok2.AccessToken {
			t.Fatal("near-expiry account token not re-minted")
		}
		st, _ := tb.st.Status(context.Background())
		if st[0].AccountTokens != 1 {
			t.Errorf("Status account tokens = %d", st[0].AccountTokens)
		}
		// A new login drops tokens minted from the old grant.
		if err := tb.st.Save(context.Background(), conn, tb.srv.Authorize()); err != nil {
			t.Fatal(err)
		}
		if st, _ := tb.st.Status(context.Background()); st[0].AccountTokens != 0 {
			t.Errorf("account tokens survived a new login: %d", st[0].AccountTokens)
		}
	})
}

func TestStatusAndPrintingHoldNoSecrets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		tokens := tb.st.Tokens(conn, tb.cli)
		_ = mustToken(t, tokens.Account("loc-1", tb.minter(tb.st, "loc-1")))
		st, err := tb.st.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(st)
		printed := string(j) + fmt.Sprintf("%v %+v %#v %s %v %v", st, st, st, tokens, tokens.Grant(), tokens.Account("x", nil))
		if strings.Contains(printed, tokensrv.Prefix+"_") {
			t.Fatalf("status or credentials print a token: %s", printed)
		}
		if !strings.Contains(printed, "owner@example.com") {
			t.Fatal("status lacks the subject")
		}
	})
}

func TestSecretRedaction(t *testing.T) {
	t.Parallel()
	s := store.Secret("sbx_at_topsecret")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "tok", s)
	j, _ := json.Marshal(struct{ T store.Secret }{s})
	out := fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s) + s.String() + buf.String() + string(j)
	if strings.Contains(out, "topsecret") || !strings.Contains(out, store.Redacted) {
		t.Fatalf("secret printed: %s", out)
	}
	if s.Reveal() != "sbx_at_topsecret" {
		t.Fatal("Reveal lost the value")
	}
}

// The token store reads the one URL grammar (internal/dburl): a relative sqlite:// path is
// relative to the working directory.
func TestOpenURLs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // relative paths resolve here; t.Chdir rules out t.Parallel
	for _, u := range []string{"sqlite://rel.db", "sqlite://sub/rel.db", filepath.Join(dir, "bare.db"), "sqlite://" + filepath.Join(dir, "abs.db")} {
		st, err := store.Open(context.Background(), u, store.Options{Key: newKey(t)})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		st.Close()
	}
	for _, f := range []string{"rel.db", "sub/rel.db", "bare.db", "abs.db"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	for _, u := range []string{"mysql://x", "bare.db", "sqlite:rel.db", "sqlite://"} {
		if _, err := store.Open(context.Background(), u, store.Options{Key: newKey(t)}); err == nil || !strings.HasPrefix(err.Error(), "store: token store URL: ") {
			t.Errorf("%s: %v, want it refused as a token store URL", u, err)
		}
	}
	if _, err := store.Open(context.Background(), "sqlite://bare.db", store.Options{Key: []byte("short")}); err == nil {
		t.Error("short key accepted")
	}
}
