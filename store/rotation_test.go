package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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

var errDiskFull = errors.New("database or disk is full")

// waitUntil polls cond until it holds, failing the test after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// durable reports whether st's row for conn holds a token expiring at expiry.
func durable(t *testing.T, st *store.Store, expiry time.Time) bool {
	t.Helper()
	gs, err := st.Status(context.Background())
	return err == nil && len(gs) == 1 && gs[0].Expiry.Equal(expiry.Truncate(time.Millisecond))
}

// The token store's disk fills right after the vendor rotated the pair: the new pair is
// used from memory, the spent refresh token is never sent again, and the write lands once
// the disk has room.
func TestDiskFullAfterVendorAnswered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		g := tb.grant(tb.st)
		old := mustToken(t, g)
		tb.srv.OnRefresh(func(p tokensrv.Phase) bool {
			if p == tokensrv.PhaseRotated {
				store.FailWrites(tb.st, errDiskFull)
			}
			return false
		})
		tb.expire()
		tb.clock.Advance(store.DefaultRefreshMargin) // expired: only a new token will do
		tok, err := g.Token(ctx)
		if err != nil {
			t.Fatalf("the vendor answered with a new pair, but Token failed: %v", err)
		}
		if tok.AccessToken == old.AccessToken {
			t.Fatal("Token handed out the expired token instead of the rotated one")
		}
		tb.apiOK(t, tok)
		calls := tb.tokenRequests()
		for range 3 {
			if again := mustToken(t, g); again.AccessToken != tok.AccessToken {
				t.Fatal("the rotated token is not the one in use")
			}
		}
		if tb.tokenRequests() != calls {
			t.Fatalf("refreshed again while the rotated pair was pending (%d → %d token requests)", calls, tb.tokenRequests())
		}
		if got := tb.st.PendingRotations(); len(got) != 1 || got[0] != conn {
			t.Fatalf("PendingRotations = %q while the disk is full", got)
		}

		store.FailWrites(tb.st, nil)
		waitUntil(t, "the rotated pair is durable", func() bool { return len(tb.st.PendingRotations()) == 0 })
		other := tb.open(t)
		if !durable(t, other, tok.Expiry) {
			t.Fatal("the pending write landed but another process does not read the rotated pair")
		}
		tb.expire()
		tb.apiOK(t, mustToken(t, tb.grant(other)))
		if n := tb.srv.Counters.Get(simkit.CountRefreshReuse); n != 0 {
			t.Fatalf("the vendor saw %d reuses of a spent refresh token", n)
		}
		logs := tb.logs.String()
		if strings.Contains(logs, "LOST") || !strings.Contains(logs, "not yet durable") {
			t.Errorf("want a truthful \"not yet durable\" message and no \"LOST\", logs:\n%s", logs)
		}
		if strings.Contains(logs, tokensrv.Prefix+"_") {
			t.Error("logs contain a token value")
		}
	})
}

// Two processes share the store; A's writes fail after the vendor rotated. B must not
// refresh with the stored refresh token, which A spent, until A's write lands.
func TestOtherProcessNeverSpendsAPendingRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		a, bst := tb.st, tb.open(t)
		ga, gb := tb.grant(a), tb.grant(bst)
		old := mustToken(t, ga)
		tb.srv.OnRefresh(func(p tokensrv.Phase) bool {
			if p == tokensrv.PhaseRotated {
				store.FailWrites(a, errDiskFull)
			}
			return false
		})
		ga.Invalidate(old)
		tokA := mustToken(t, ga)
		tb.srv.OnRefresh(nil)
		if tokA.AccessToken == old.AccessToken {
			t.Fatal("A did not get the rotated token")
		}
		// B's API call was rejected too. Past the token call timeout, A's refresh is no
		// longer in flight: B must not wait for it, nor refresh with what is stored.
		tb.clock.Advance(store.DefaultTokenCallTimeout + 11*time.Second)
		calls := tb.tokenRequests()
		gb.Invalidate(old)
		_, err := gb.Token(ctx)
		if !errors.Is(err, store.ErrRefreshFailed) || errors.Is(err, sources.ErrNeedsReauth) ||
			!strings.Contains(err.Error(), "not yet durable") {
			t.Fatalf("B while A's rotation is pending: %v", err)
		}
		if tb.tokenRequests() != calls || tb.srv.Counters.Get(simkit.CountRefreshReuse) != 0 {
			t.Fatalf("B called the token endpoint (%d → %d requests, %d reuses) while A's pair was pending",
				calls, tb.tokenRequests(), tb.srv.Counters.Get(simkit.CountRefreshReuse))
		}
		tb.apiOK(t, mustToken(t, ga)) // A keeps working from memory

		store.FailWrites(a, nil)
		waitUntil(t, "A's rotated pair is durable", func() bool { return len(a.PendingRotations()) == 0 })
		if tok := mustToken(t, gb); tok.AccessToken != tokA.AccessToken {
			t.Fatal("B does not use A's rotated token once it is durable")
		}
		gb.Invalidate(tokA)
		tb.apiOK(t, mustToken(t, gb)) // and B can refresh it
		if n := tb.srv.Counters.Get(simkit.CountRefreshReuse); n != 0 {
			t.Fatalf("%d refresh-token reuses", n)
		}
	})
}

// tcpProxy forwards loopback connections to a server and can cut them all, as a server
// outage would, and restore service.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *tcpProxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Cut drops every connection and refuses new ones until Restore.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// The PostgreSQL token store goes down right after LACRM (which revokes a grant on any
// refresh-token reuse) rotated the pair, and comes back after several failed writes. The
// grant keeps working throughout, another process waits for the rotation instead of
// spending the old refresh token, and the vendor records no reuse.
func TestPostgresOutageDuringRefresh(t *testing.T) {
	t.Parallel()
	dsn, schema := pgtest.Schema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	sb := newLACRMSandbox(t, time.Hour)
	logs, blogs := &syncBuffer{}, &syncBuffer{}
	key := newKey(t)
	open := func(url string, logs *syncBuffer) *store.Store {
		st, err := store.Open(context.Background(), url, store.Options{Key: key, PostgresSchema: schema,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := open(u.String(), logs) // through the proxy
	bst := open(dsn, blogs)     // another process, with its own path to the server
	ctx := context.Background()
	if err := a.Save(ctx, conn, sb.authorize()); err != nil {
		t.Fatal(err)
	}
	refresher := lacrmRefresher(sb)
	ga, gb := a.Tokens(conn, refresher).Grant(), bst.Tokens(conn, refresher).Grant()
	old := mustToken(t, ga)
	sb.onRefresh(func(p tokensrv.Phase) bool {
		if p == tokensrv.PhaseRotated {
			proxy.Cut() // the server is gone before the client reads the new pair
		}
		return false
	})
	ga.Invalidate(old)
	tok, err := ga.Token(ctx)
	sb.onRefresh(nil)
	if err != nil {
		t.Fatalf("the vendor answered with a new pair, but Token failed: %v", err)
	}
	httpc := &http.Client{Timeout: 10 * time.Second}
	apiOK := func(access string) {
		t.Helper()
		if st, _, err := callLACRM(ctx, httpc, sb.url, access); err != nil || st != http.StatusOK {
			t.Fatalf("API call: status %d, err %v", st, err)
		}
	}
	apiOK(tok.AccessToken)
	// B's API call was rejected too: it waits for A's rotation rather than spend the
	// refresh token A spent.
	type result struct {
		access string
		err    error
	}
	bres := make(chan result, 1)
	go func() {
		gb.Invalidate(old)
		tk, err := gb.Token(ctx)
		if err != nil {
			bres <- result{err: err}
			return
		}
		bres <- result{access: tk.AccessToken}
	}()
	waitUntil(t, "A's write failed a few times", func() bool { return strings.Count(logs.String(), "retrying the write") >= 3 })
	apiOK(mustToken(t, ga).AccessToken)
	if got := a.PendingRotations(); len(got) != 1 {
		t.Fatalf("PendingRotations = %q during the outage", got)
	}
	proxy.Restore()
	waitUntil(t, "A's rotated pair is durable", func() bool { return len(a.PendingRotations()) == 0 })
	r := <-bres
	if r.err != nil || r.access != tok.AccessToken {
		t.Fatalf("B after the outage: same token as A=%t, err %v", r.access == tok.AccessToken, r.err)
	}
	gb.Invalidate(tok)
	apiOK(mustToken(t, gb).AccessToken)
	c := sb.counters()
	if c.Get(simkit.CountRefreshReuse) != 0 || c.Get(simkit.CountRevokedGrants) != 0 {
		t.Fatalf("reuse=%d revoked=%d", c.Get(simkit.CountRefreshReuse), c.Get(simkit.CountRevokedGrants))
	}
	if all := logs.String() + blogs.String(); leaks(all) || strings.Contains(all, "LOST") {
		t.Errorf("logs leak a token or claim a loss:\n%s", all)
	}
}

// An access token that lives less than the refresh margin (crmsim --token-ttl 2m against
// the default 5 min) is refreshed once past half its life, not on every call.
func TestShortLivedTokenIsNotRefreshedOnEveryCall(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		url, opts, _, _ := b.newDB(t)
		clock := simkit.NewManualClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		opts.Key, opts.Clock = newKey(t), clock.Now
		srv := tokensrv.New(tokensrv.Options{Clock: clock, TTL: 2 * time.Minute})
		t.Cleanup(srv.Close)
		st, err := store.Open(context.Background(), url, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Save(context.Background(), conn, srv.Authorize()); err != nil {
			t.Fatal(err)
		}
		cli := srv.Client(clock.Now)
		g := st.Tokens(conn, cli).Grant()
		acct := st.Tokens(conn, cli).Account("loc-1", func(ctx context.Context) (*oauth2.Token, error) {
			gt, err := g.Token(ctx)
			if err != nil {
				return nil, err
			}
			return cli.Mint(ctx, gt.AccessToken, "loc-1")
		})
		calls := func() {
			for range 20 {
				mustToken(t, g)
				mustToken(t, acct)
			}
		}
		calls()
		if n, m := srv.Counters.Get(simkit.CountRefreshes), srv.Counters.Get(tokensrv.CountMinted); n != 0 || m != 1 {
			t.Fatalf("a fresh 2-minute token: %d refreshes and %d mints for 20 calls, want 0 and 1", n, m)
		}
		gs, err := st.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !gs[0].RefreshAt.Equal(clock.Now().Add(time.Minute)) {
			t.Fatalf("Status: refresh at %v, want half-way through the token's life", gs[0].RefreshAt)
		}
		clock.Advance(61 * time.Second) // past half its life
		calls()
		if n, m := srv.Counters.Get(simkit.CountRefreshes), srv.Counters.Get(tokensrv.CountMinted); n != 1 || m != 2 {
			t.Fatalf("past half its life: %d refreshes and %d mints for 20 calls, want 1 and 2", n, m)
		}
	})
}

// The store stays unwritable through shutdown: the rotated pair is sealed into a recovery
// file (0600, no token in clear), and the next start applies it before anything else.
func TestShutdownSealsTheUnwrittenPairForTheNextStart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		opts := tb.opts
		opts.RecoveryDir = filepath.Join(t.TempDir(), "state")
		a, err := store.Open(ctx, tb.url, opts)
		if err != nil {
			t.Fatal(err)
		}
		tb.srv.OnRefresh(func(p tokensrv.Phase) bool {
			if p == tokensrv.PhaseRotated {
				store.FailWrites(a, errDiskFull)
			}
			return false
		})
		tb.expire()
		tb.clock.Advance(store.DefaultRefreshMargin)
		tok := mustToken(t, tb.grant(a))
		tb.srv.OnRefresh(nil)
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if err := a.Shutdown(sctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		files, _ := filepath.Glob(filepath.Join(opts.RecoveryDir, "*"))
		if len(files) != 1 {
			t.Fatalf("recovery files: %q", files)
		}
		fi, err := os.Stat(files[0])
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("recovery file: %v %v", fi, err)
		}
		raw, _ := os.ReadFile(files[0])
		if strings.Contains(string(raw), tokensrv.Prefix+"_") || strings.Contains(string(raw), conn) {
			t.Fatal("the recovery file is not sealed")
		}
		if logs := tb.logs.String(); strings.Contains(logs, "LOST") || !strings.Contains(logs, "recovery file") {
			t.Errorf("want the pair reported as sealed in a recovery file, not lost; logs:\n%s", logs)
		}

		calls := tb.tokenRequests()
		next, err := store.Open(ctx, tb.url, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { next.Close() })
		if files, _ := filepath.Glob(filepath.Join(opts.RecoveryDir, "*")); len(files) != 0 {
			t.Fatalf("the recovery file was not removed: %q", files)
		}
		if got := mustToken(t, tb.grant(next)); got.AccessToken != tok.AccessToken || tb.tokenRequests() != calls {
			t.Fatal("the next start does not use the recovered pair")
		}
		gs, _ := next.Status(ctx)
		if gs[0].RefreshingBy != "" {
			t.Errorf("the recovered pair left the rotation intent of %s on the grant", gs[0].RefreshingBy)
		}
		tb.expire()
		tb.apiOK(t, mustToken(t, tb.grant(next)))
		if n := tb.srv.Counters.Get(simkit.CountRefreshReuse); n != 0 || tb.refreshes() != 2 {
			t.Fatalf("reuse=%d refreshes=%d", n, tb.refreshes())
		}
	})
}

// A store that cannot record the refresh intent does not call the vendor: nothing is spent.
func TestNoTokenRequestWithoutADurableIntent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		g := tb.grant(tb.st)
		store.FailWrites(tb.st, errDiskFull)
		tb.expire()
		tb.clock.Advance(store.DefaultRefreshMargin)
		_, err := g.Token(context.Background())
		if !errors.Is(err, store.ErrRefreshFailed) || !strings.Contains(err.Error(), "vendor was not called") {
			t.Fatalf("err = %v", err)
		}
		if n := tb.tokenRequests(); n != 0 {
			t.Fatalf("%d token requests while the intent could not be written", n)
		}
		store.FailWrites(tb.st, nil)
		tb.clock.Advance(time.Minute) // past the failure cooldown
		tb.apiOK(t, mustToken(t, g))
		if tb.refreshes() != 1 || tb.srv.Counters.Get(simkit.CountRefreshReuse) != 0 {
			t.Fatalf("refreshes=%d reuse=%d", tb.refreshes(), tb.srv.Counters.Get(simkit.CountRefreshReuse))
		}
	})
}

// A store created before the rotation intent existed (version 1) upgrades in place and keeps
// its grant.
func TestStoreUpgradesInPlace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		if err := tb.st.Close(); err != nil {
			t.Fatal(err)
		}
		rw := tb.raw
		if b.name == "sqlite" {
			var err error
			if rw, err = sql.Open("sqlite3", "file:"+tb.files[0]+"?_busy_timeout=5000"); err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
		}
		for _, q := range []string{`DROP TABLE static_rejections`, `ALTER TABLE grants DROP COLUMN rotating_by`,
			`ALTER TABLE grants DROP COLUMN rotating_since_ms`, `DELETE FROM store_migrations WHERE version_id >= 2`} {
			if _, err := rw.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		st := tb.open(t)
		if tok := mustToken(t, tb.grant(st)); tok.AccessToken != tb.first.AccessToken {
			t.Fatal("the upgraded store lost the grant")
		}
		tb.expire()
		tb.apiOK(t, mustToken(t, tb.grant(st)))
	})
}

// A process killed (SIGKILL, no Shutdown) while its rotated pair is not yet durable has
// already sealed it into its recovery file, which the next start applies.
func TestKilledWithAPendingPairLeavesItsRecoveryFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		opts := tb.opts
		opts.RecoveryDir = filepath.Join(t.TempDir(), "state")
		killed, err := store.Open(ctx, tb.url, opts)
		if err != nil {
			t.Fatal(err)
		}
		tb.srv.OnRefresh(func(p tokensrv.Phase) bool {
			if p == tokensrv.PhaseRotated {
				store.FailWrites(killed, errDiskFull) // for good: this process never writes again
			}
			return false
		})
		tb.expire()
		tb.clock.Advance(store.DefaultRefreshMargin)
		tok := mustToken(t, tb.grant(killed))
		tb.srv.OnRefresh(nil)
		t.Cleanup(func() { killed.Close() })
		if files, _ := filepath.Glob(filepath.Join(opts.RecoveryDir, "*")); len(files) != 1 {
			t.Fatalf("recovery files while the pair is pending: %q, want this process's one", files)
		}

		calls := tb.tokenRequests()
		next, err := store.Open(ctx, tb.url, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { next.Close() })
		if got := mustToken(t, tb.grant(next)); got.AccessToken != tok.AccessToken || tb.tokenRequests() != calls {
			t.Fatal("the next start does not use the pair the killed process had received")
		}
	})
}

// An intent left by a process on another host (which this one cannot check) is taken over
// once it has stayed unchanged, while this process reads the database, far longer than a
// live owner takes to call the vendor and land its write: a worker lost for good must not
// leave its grant stuck until someone runs `leadsync auth login`.
func TestForeignIntentIsTakenOverWhenItStaysTooLong(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		tb := setup(t, b)
		ctx := context.Background()
		rw := tb.raw
		if len(tb.files) > 0 { // the SQLite handle is read-only
			var err error
			if rw, err = sql.Open("sqlite3", "file:"+tb.files[0]+"?_busy_timeout=5000"); err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
		}
		tb.clock.Advance(time.Hour + time.Second) // the token has expired
		// Another host's process claimed the grant, then vanished before calling the vendor.
		if _, err := rw.ExecContext(ctx, `UPDATE grants SET rotating_by = 'elsewhere/boot/42/7/cafe#1', rotating_since_ms = $1`,
			tb.clock.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		// The refresh waits on the intent (in the background; this caller gives up first).
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := tb.grant(tb.st).Token(wctx); err == nil {
			t.Fatal("a token from a grant another process is refreshing")
		}
		if n := tb.tokenRequests(); n != 0 {
			t.Fatalf("%d token requests while another process may hold the rotated pair", n)
		}
		tb.clock.Advance(store.DefaultTokenCallTimeout + 45*time.Second)
		tok := mustToken(t, tb.grant(tb.st))
		tb.apiOK(t, tok)
		if n := tb.srv.Counters.Get(simkit.CountRefreshReuse); n != 0 || tb.refreshes() != 1 {
			t.Fatalf("takeover: reuse=%d refreshes=%d, want 0 and 1", n, tb.refreshes())
		}
	})
}
