package localiq_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// memCreds is an in-memory sources.Credentials: it refreshes through the source's
// Refresher when the token is near expiry or was invalidated by a 401.
type memCreds struct {
	mu        sync.Mutex
	tok       *oauth2.Token
	refresher localiq.Refresher
	stale     bool
	refreshes int
}

func (c *memCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stale || time.Until(c.tok.Expiry) < 10*time.Second {
		t, err := c.refresher.Refresh(ctx, c.tok.RefreshToken)
		if err != nil {
			return nil, err
		}
		c.tok, c.stale = t, false
		c.refreshes++
	}
	return c.tok, nil
}

func (c *memCreds) Invalidate(tok *oauth2.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok != nil && tok.AccessToken == c.tok.AccessToken {
		c.stale = true
	}
}

func (c *memCreds) Refreshes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshes
}

type memTokens struct{ creds *memCreds }

func (m memTokens) Grant() sources.Credentials                         { return m.creds }
func (m memTokens) Account(string, sources.Minter) sources.Credentials { return m.creds }

type bundle struct {
	fake  *liqtest.Server
	cfg   localiq.Config
	creds *memCreds
	src   *localiq.Source
}

// setup starts a fake (real clock) and a source on a grant of its sandbox user. Unless the
// options say otherwise both sides run with a high limit, so tests stay fast; the
// benchmark uses the vendor's real 20/s.
func setup(t testing.TB, opts liqtest.Options, cfg localiq.Config) *bundle {
	t.Helper()
	if opts.RateLimit == 0 {
		opts.RateLimit = 2000
	}
	fake := liqtest.NewServer(opts)
	t.Cleanup(fake.Close)
	cfg.BaseURL = fake.URL
	cfg.ClientID, cfg.ClientSecret = liqtest.DefaultClientID, liqtest.DefaultClientSecret
	cfg.User = fake.Options().SandboxUser
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 2000
	}
	if cfg.BackfillStart.IsZero() {
		cfg.BackfillStart = time.Now().AddDate(-3, 0, 0)
	}
	p := fake.Authorize("")
	creds := &memCreds{tok: &oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, Expiry: p.Expiry}, refresher: cfg.Refresher()}
	src, err := localiq.New(cfg, memTokens{creds})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{fake: fake, cfg: cfg, creds: creds, src: src}
}

func (b *bundle) accounts(t testing.TB) []sources.Account {
	t.Helper()
	var out []sources.Account
	for a, err := range b.src.Accounts(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func (b *bundle) account(t testing.TB, pred func(sources.Account) bool) sources.Account {
	t.Helper()
	for _, a := range b.accounts(t) {
		if pred(a) {
			return a
		}
	}
	t.Fatal("no matching account")
	return sources.Account{}
}

// pass is the result of one Leads run.
type pass struct {
	leads []sources.Lead
	pages int
	last  sources.Cursor
	err   error
}

// run reads up to maxPages pages (0: all).
func (b *bundle) run(t testing.TB, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions, maxPages int) pass {
	t.Helper()
	var p pass
	p.last = cur
	for page, err := range b.src.Read(context.Background(), acct, localiq.StreamInteractions, cur, opts) {
		if err != nil {
			p.err = err
			return p
		}
		p.leads = append(p.leads, page.Leads...)
		p.pages++
		p.last = page.Next
		if maxPages > 0 && p.pages >= maxPages {
			return p
		}
	}
	return p
}

func (b *bundle) truth(t testing.TB, gmaid string) simkit.AccountTruth {
	t.Helper()
	for _, at := range b.fake.GroundTruth() {
		if at.AccountID == gmaid {
			return at
		}
	}
	t.Fatalf("no truth for %s", gmaid)
	return simkit.AccountTruth{}
}

func restrictedErr(err error) *sources.RestrictedError {
	var re *sources.RestrictedError
	if errors.As(err, &re) {
		return re
	}
	return nil
}
