package lacrm_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

var epoch = time.Date(2026, 3, 2, 15, 4, 5, 0, time.UTC)

// memTokens is an in-memory sources.Tokens over the real Refresher. It records whether a
// refresh token was ever sent twice.
type memTokens struct {
	mu        sync.Mutex
	tok       oauth2.Token
	ref       lacrm.Refresher
	now       func() time.Time
	sent      map[string]bool
	refreshes int
	resent    bool
}

func (m *memTokens) Grant() sources.Credentials                         { return m }
func (m *memTokens) Account(string, sources.Minter) sources.Credentials { return m }

func (m *memTokens) Token(ctx context.Context) (*oauth2.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tok.AccessToken != "" && m.now().Add(time.Minute).Before(m.tok.Expiry) {
		t := m.tok
		return &t, nil
	}
	if m.sent[m.tok.RefreshToken] {
		m.resent = true
	}
	m.sent[m.tok.RefreshToken] = true
	t, err := m.ref.Refresh(ctx, m.tok.RefreshToken)
	if err != nil {
		return nil, err
	}
	m.tok = *t
	m.refreshes++
	return t, nil
}

func (m *memTokens) Invalidate(tok *oauth2.Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tok != nil && tok.AccessToken == m.tok.AccessToken {
		m.tok.AccessToken = ""
	}
}

type bundle struct {
	srv   *lacrmtest.Server
	clock *simkit.ManualClock
	cfg   lacrm.Config
	toks  *memTokens
	src   *lacrm.Source
	acct  sources.Account
}

// setup starts a fake on a manual clock (rate limit off unless fopts sets one) and a source
// with no proactive limit, so tests run at full speed.
func setup(t *testing.T, fopts lacrmtest.Options, mod func(*lacrm.Config), opts ...lacrm.Option) *bundle {
	t.Helper()
	clock := simkit.NewManualClock(epoch)
	fopts.Clock = clock
	if fopts.Seed == 0 {
		fopts.Seed = 11
	}
	if fopts.RateLimit == (simkit.Window{}) {
		fopts.RateLimit = simkit.Window{Limit: -1}
	}
	srv := lacrmtest.NewServer(fopts)
	t.Cleanup(srv.Close)
	cfg := lacrm.Config{
		BaseURL: srv.URL + "/v2/", AuthURL: srv.URL + "/oauth/authorize.php", TokenURL: srv.URL + "/oauth/token.php",
		ClientID: srv.ClientID(), ClientSecret: srv.ClientSecret(),
		PageSize: 25, RateLimit: rate.Inf, Clock: clock.Now, HTTP: srv.Client(),
	}
	if mod != nil {
		mod(&cfg)
	}
	p := srv.Authorize("")
	toks := &memTokens{
		tok: oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, Expiry: p.Expiry},
		ref: cfg.Refresher(), now: clock.Now, sent: map[string]bool{},
	}
	src, err := lacrm.New(cfg, toks, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{srv: srv, clock: clock, cfg: cfg, toks: toks, src: src}
	for a, err := range src.Accounts(context.Background()) {
		if err != nil {
			t.Fatalf("Accounts: %v", err)
		}
		b.acct = a
	}
	return b
}

// store is a stand-in sink: upserts by id, counting writes of leads and deals.
type store struct {
	leads  map[string]sources.Lead
	deals  map[string]sources.Deal
	dict   map[string]sources.DictEntry // by kind:id
	writes int
	cursor sources.Cursor
	pages  int
}

func newStore() *store {
	return &store{leads: map[string]sources.Lead{}, deals: map[string]sources.Deal{}, dict: map[string]sources.DictEntry{}}
}

// put stores a page's rows.
func (s *store) put(p sources.Page) {
	for _, l := range p.Leads {
		s.leads[l.ID] = l
		s.writes++
	}
	for _, d := range p.Deals {
		s.deals[d.ID] = d
		s.writes++
	}
	for _, e := range p.Dictionary {
		s.dict[e.Kind+":"+e.ID] = e
	}
}

// rows is how many leads and deals the store holds.
func (s *store) rows() int { return len(s.leads) + len(s.deals) }

// sync runs one pass from the store's cursor; stopAfter > 0 simulates a crash after that
// many committed pages. each (optional) runs after every committed page.
func (b *bundle) sync(t *testing.T, s *store, opts sources.ReadOptions, stopAfter int, each func(page int)) error {
	t.Helper()
	n := 0
	for p, err := range readAll(b.src, context.Background(), b.acct, s.cursor, opts) {
		if err != nil {
			return err
		}
		s.put(p)
		s.cursor = p.Next
		s.pages++
		n++
		if each != nil {
			each(n)
		}
		if stopAfter > 0 && n == stopAfter {
			return nil
		}
	}
	return nil
}

// truthRow is a lead or a deal of the fake's ground truth.
type truthRow struct {
	ID      string
	Deal    bool
	Updated time.Time
}

// truthRows are the fake's live contacts and pipeline items.
func (b *bundle) truthRows(t *testing.T) []truthRow {
	t.Helper()
	truth := b.srv.GroundTruth()
	if len(truth) != 1 || truth[0].AccountID != b.acct.ID {
		t.Fatalf("account %q, truth %v", b.acct.ID, truth)
	}
	var out []truthRow
	for _, l := range truth[0].Leads {
		out = append(out, truthRow{ID: l.ID, Updated: l.UpdatedAt})
	}
	for _, r := range truth[0].Records {
		if r.Table == sources.TableDeals {
			out = append(out, truthRow{ID: r.ID, Deal: true, Updated: r.Updated})
		}
	}
	return out
}

// wantTruth checks that the store holds exactly the fake's ground truth: its contacts as
// leads, its items as deals, and (after a pass that read them) its dictionary.
func (b *bundle) wantTruth(t *testing.T, s *store) {
	t.Helper()
	rows := b.truthRows(t)
	if s.rows() != len(rows) {
		t.Errorf("stored %d leads and %d deals, ground truth has %d rows", len(s.leads), len(s.deals), len(rows))
	}
	for _, want := range rows {
		var updated time.Time
		var ok bool
		if want.Deal {
			var d sources.Deal
			d, ok = s.deals[want.ID]
			updated = d.UpdatedAt
		} else {
			var l sources.Lead
			l, ok = s.leads[want.ID]
			updated = l.UpdatedAt
			if ok && (l.Kind != sources.KindContact || l.AccountID != b.acct.ID) {
				t.Errorf("lead %s: kind %s account %s", want.ID, l.Kind, l.AccountID)
			}
		}
		switch {
		case !ok:
			t.Errorf("%s missing (deal %v)", want.ID, want.Deal)
		case !updated.Equal(want.Updated):
			t.Errorf("%s updated %v, want %v", want.ID, updated, want.Updated)
		}
	}
	if len(s.dict) > 0 {
		b.wantDictionary(t, s)
	}
}

// wantDictionary checks that the store's dictionary is exactly the fake's.
func (b *bundle) wantDictionary(t *testing.T, s *store) {
	t.Helper()
	var want []string
	for _, r := range b.srv.GroundTruth()[0].Records {
		if r.Table == sources.TableDictionary {
			want = append(want, r.ID)
		}
	}
	if got := slices.Sorted(maps.Keys(s.dict)); !slices.Equal(got, want) {
		t.Errorf("dictionary entries %v,\nground truth %v", got, want)
	}
}

func TestAccountIsTheGrantsCompany(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 1, PipelineItems: 1}, nil)
	if b.acct.ID != b.srv.AccountOf(b.srv.SandboxUser()) || b.acct.Name == "" || b.acct.Source != sources.LACRM {
		t.Fatalf("account = %+v, want the sandbox user's company %s", b.acct, b.srv.AccountOf(b.srv.SandboxUser()))
	}
	// A configured account id needs no request.
	b2 := setup(t, lacrmtest.Options{Contacts: 1}, func(c *lacrm.Config) { c.AccountID, c.AccountName = "42", "Configured" })
	if b2.acct.ID != "42" || b2.acct.Name != "Configured" {
		t.Fatalf("configured account = %+v", b2.acct)
	}
	if n := b2.srv.Counters().Requests("v2/GetUser", 0); n != 0 {
		t.Fatalf("GetUser called %d times with account_id configured", n)
	}
}

func TestSyncStoresEveryLeadExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 130, PipelineItems: 70}, nil)
	s := newStore()
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	if s.writes != s.rows() {
		t.Errorf("%d writes for %d leads and deals: a first pass should read each once", s.writes, s.rows())
	}
	// Field mapping, ids as strings.
	for _, l := range s.leads {
		if len(l.ID) < 25 || strings.Trim(l.ID, "0123456789") != "" {
			t.Fatalf("lead id %q is not LACRM's long decimal string", l.ID)
		}
		if l.FirstName == "" || l.LastName == "" || !strings.Contains(l.Email, "@") || l.Phone == "" || l.Company == "" {
			t.Fatalf("contact %s mapped without name/email/phone/company", l.ID)
		}
		var raw map[string]any
		if err := json.Unmarshal(l.Raw, &raw); err != nil || raw["ContactId"] != l.ID || raw["Lead Source"] == nil {
			t.Fatalf("contact %s Raw is not the vendor JSON with custom fields", l.ID)
		}
		if l.Channel == "" || l.Channel != raw["Lead Source"] {
			t.Fatalf("contact %s: channel %q, want its Lead Source", l.ID, l.Channel)
		}
		if l.CreatedAt.Location() != time.UTC || l.UpdatedAt.Before(l.CreatedAt) {
			t.Fatalf("lead %s times %v / %v", l.ID, l.CreatedAt, l.UpdatedAt)
		}
	}
	for _, d := range s.deals {
		if len(d.ID) < 25 || strings.Trim(d.ID, "0123456789") != "" {
			t.Fatalf("deal id %q is not LACRM's long decimal string", d.ID)
		}
		var raw struct {
			ContactID      string                  `json:"ContactId"`
			PipelineID     string                  `json:"PipelineId"`
			StatusID       string                  `json:"StatusId"`
			Value          float64                 `json:"Estimated Value"`
			StatusMetaData struct{ IsActive bool } `json:"StatusMetaData"`
		}
		if err := json.Unmarshal(d.Raw, &raw); err != nil {
			t.Fatalf("deal %s: Raw is not the item: %v", d.ID, err)
		}
		if _, ok := s.leads[d.ContactID]; !ok || d.ContactID != raw.ContactID {
			t.Fatalf("deal %s: contact %q is not its item's live contact", d.ID, d.ContactID)
		}
		if d.PipelineID != raw.PipelineID || d.StageID != raw.StatusID || d.Status == "" {
			t.Fatalf("deal %s: pipeline %s stage %s status %q, not its item's", d.ID, d.PipelineID, d.StageID, d.Status)
		}
		if (d.StatusCategory == sources.StatusOpen) != raw.StatusMetaData.IsActive {
			t.Fatalf("deal %s: category %s for an item whose status is active=%v", d.ID, d.StatusCategory, raw.StatusMetaData.IsActive)
		}
		if d.Value == 0 || d.Value != raw.Value {
			t.Fatalf("deal %s: value %v, want its Estimated Value %v", d.ID, d.Value, raw.Value)
		}
		if d.CreatedAt.Location() != time.UTC || d.UpdatedAt.Before(d.CreatedAt) || d.HIPAA {
			t.Fatalf("deal %s times %v / %v, hipaa %v", d.ID, d.CreatedAt, d.UpdatedAt, d.HIPAA)
		}
	}
	// A second, incremental pass reads only the lookback window.
	writes := s.writes
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	if again := s.writes - writes; again > 10 {
		t.Errorf("incremental pass with nothing new re-read %d leads and deals", again)
	}
	if b.toks.resent || b.srv.Counters().Get(simkit.CountRefreshReuse) != 0 {
		t.Fatal("a refresh token was sent twice")
	}
}

func TestResumeAfterCrashContinues(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 100, PipelineItems: 30}, nil)
	s := newStore()
	if err := b.sync(t, s, sources.ReadOptions{}, 2, nil); err != nil {
		t.Fatal(err)
	}
	if len(s.leads) != 50 {
		t.Fatalf("after 2 pages: %d leads, want 50", len(s.leads))
	}
	before := b.srv.Counters().Requests("v2/GetContacts", 0)
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	// The resumed pass starts at page 3: 100 contacts in 4 pages, 2 of them left.
	if n := b.srv.Counters().Requests("v2/GetContacts", 0) - before; n != 2 {
		t.Errorf("resumed pass made %d GetContacts calls, want 2 (pages 3 and 4)", n)
	}
	if s.writes != s.rows() {
		t.Errorf("%d writes for %d leads and deals", s.writes, s.rows())
	}
}

func TestUpdatesDuringPagingAreCaughtNextPass(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 100, PipelineItems: 40}, nil)
	truth := b.srv.GroundTruth()[0]
	var oldest simkit.LeadTruth
	for _, l := range truth.Leads {
		if l.Kind == sources.KindContact && (oldest.ID == "" || l.UpdatedAt.Before(oldest.UpdatedAt)) {
			oldest = l
		}
	}
	var created, createdItem string
	s := newStore()
	err := b.sync(t, s, sources.ReadOptions{}, 0, func(page int) {
		if page != 1 {
			return
		}
		// Mid-pass: the oldest contact (on the last page) jumps to the front, a new contact
		// and a new pipeline item appear. The page-number paging misses the first two.
		b.clock.Advance(time.Minute)
		if err := b.srv.UpdateContact(oldest.ID); err != nil {
			t.Error(err)
		}
		var err error
		if created, err = b.srv.CreateContact(""); err != nil {
			t.Error(err)
		}
		if createdItem, err = b.srv.CreatePipelineItem("", "", created); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Page-number paging over a moving sort skips them in this pass, as on the real API.
	if _, ok := s.leads[oldest.ID]; ok {
		t.Fatal("the contact updated mid-pass was seen by the same pass: the fake's paging is not moving")
	}
	b.clock.Advance(time.Minute)
	writes := s.writes
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	_, ok1 := s.leads[oldest.ID]
	_, ok2 := s.leads[created]
	_, ok3 := s.deals[createdItem]
	if !ok1 || !ok2 || !ok3 {
		t.Errorf("changed mid-pass and not picked up by the next pass: updated contact %v, new contact %v, new item %v", !ok1, !ok2, !ok3)
	}
	if again := s.writes - writes; again > 15 {
		t.Errorf("the incremental pass re-read %d leads; it should stop at the watermark", again)
	}
}

func TestExpiredAccessTokenRefreshesOnceAndRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 60, PipelineItems: 10}, nil)
	// The store believes its token is good for a day; the vendor expires it after an hour.
	b.toks.mu.Lock()
	b.toks.tok.Expiry = epoch.Add(24 * time.Hour)
	b.toks.mu.Unlock()
	b.clock.Advance(61 * time.Minute)
	s := newStore()
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	c := b.srv.Counters()
	if b.toks.refreshes != 1 || c.Get(simkit.CountRefreshes) != 1 || c.Get(simkit.CountRefreshReuse) != 0 {
		t.Fatalf("refreshes: store %d, vendor %d, reuse %d; want 1, 1, 0", b.toks.refreshes, c.Get(simkit.CountRefreshes), c.Get(simkit.CountRefreshReuse))
	}
}

func TestRefreshesDuringLongSyncNeverReuse(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 200, PipelineItems: 50}, func(c *lacrm.Config) { c.PageSize = 10 })
	s := newStore()
	// Each page takes 20 minutes of vendor time: the 1 h tokens rotate several times.
	err := b.sync(t, s, sources.ReadOptions{}, 0, func(int) { b.clock.Advance(20 * time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	c := b.srv.Counters()
	if c.Get(simkit.CountRefreshes) < 5 || c.Get(simkit.CountRefreshReuse) != 0 || b.toks.resent {
		t.Fatalf("refreshes %d, reuse %d, resent %v: want several refreshes and no reuse",
			c.Get(simkit.CountRefreshes), c.Get(simkit.CountRefreshReuse), b.toks.resent)
	}
}

func TestThrottledRequestsWaitForRetryAfter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var waits []time.Duration
	var clock *simkit.ManualClock
	b := setup(t, lacrmtest.Options{Contacts: 100, PipelineItems: 20, RateLimit: simkit.Window{Limit: 3, Interval: 10 * time.Second}}, nil,
		lacrm.WithHTTPX(func(c *httpx.Config) {
			// Waiting is advancing the vendor's clock: no real sleeping.
			c.Sleep = func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
				clock.Advance(d)
				return ctx.Err()
			}
		}))
	clock = b.clock
	s := newStore()
	if err := b.sync(t, s, sources.ReadOptions{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
	n429 := b.srv.Counters().Get(simkit.Count429)
	mu.Lock()
	defer mu.Unlock()
	if n429 == 0 || len(waits) != int(n429) {
		t.Fatalf("%d 429s, %d waits: each 429 should be waited out once", n429, len(waits))
	}
	for _, w := range waits {
		if w < time.Second || w > 10*time.Second || w%time.Second != 0 {
			t.Fatalf("waited %v: not the vendor's Retry-After", w)
		}
	}
}

func TestRevokedGrantFailsCleanly(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 10, PipelineItems: 5}, nil)
	for _, g := range b.srv.Tokens().Grants() {
		b.srv.RevokeGrant(g.ID)
	}
	err := b.sync(t, newStore(), sources.ReadOptions{}, 0, nil)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("sync with a revoked grant: %v, want invalid_grant from the refresh", err)
	}
	if strings.Contains(err.Error(), "lacrm_") {
		t.Fatalf("error leaks a token: %v", err)
	}
	if n := b.srv.Counters().Requests("oauth/token", 0); n != 1 {
		t.Fatalf("%d token requests, want exactly 1", n)
	}
}

func TestRefresherSendsOneRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 1, PipelineItems: 1, Faults: simkit.FaultSettings{DropRefreshResponses: 1}}, nil)
	ctx := context.Background()
	p := b.srv.Authorize("")
	ref := b.cfg.Refresher()

	// A dropped response is a transient error, after exactly one request.
	_, err := ref.Refresh(ctx, p.Refresh)
	var re *oauth2.RetrieveError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("dropped response: %v, want a plain (transient) error", err)
	}
	if n := b.srv.Counters().Requests("oauth/token", 0); n != 1 {
		t.Fatalf("%d token requests, want 1: refresh must never be re-sent", n)
	}

	p2 := b.srv.Authorize("")
	tok, err := ref.Refresh(ctx, p2.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == p2.Access || tok.RefreshToken == p2.Refresh || !tok.Expiry.Equal(epoch.Add(time.Hour)) || tok.TokenType != "Bearer" {
		t.Fatalf("refreshed token: expiry %v type %q, rotated %v", tok.Expiry, tok.TokenType, tok.RefreshToken != p2.Refresh)
	}
	// Presenting it again is rejected with invalid_grant, and the message holds no token.
	_, err = ref.Refresh(ctx, p2.Refresh)
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("reuse: %v, want *oauth2.RetrieveError invalid_grant", err)
	}
	if strings.Contains(err.Error(), p2.Refresh) || re.Body != nil {
		t.Fatalf("error carries the token or the body: %v", err)
	}

	// ...and it revoked the whole grant, the fresh pair included.
	if _, err := ref.Refresh(ctx, tok.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh token of a revoked grant: %v", err)
	}

	p3 := b.srv.Authorize("")
	bad := b.cfg
	bad.ClientSecret = "wrong"
	_, err = bad.Refresher().Refresh(ctx, p3.Refresh)
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Fatalf("wrong secret: %v, want invalid_client", err)
	}
	if _, err := ref.Refresh(ctx, p3.Refresh); err != nil {
		t.Fatalf("a failed client authentication spent the refresh token: %v", err)
	}
}

func TestAuthCodeURLAndExchange(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 1, PipelineItems: 1}, nil)
	redirect := "http://127.0.0.1:53682/callback"
	u := b.cfg.AuthCodeURL("xyz", redirect, "ignored-challenge")
	pu, _ := url.Parse(u)
	q := pu.Query()
	if q.Get("redirect_url") != redirect || q.Has("redirect_uri") || q.Has("code_challenge") || q.Get("client_id") != b.cfg.ClientID {
		t.Fatalf("AuthCodeURL = %s", u)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "xyz" {
		t.Fatalf("consent redirect %q", resp.Header.Get("Location"))
	}
	tok, err := b.cfg.Exchange(context.Background(), loc.Query().Get("code"), redirect, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || !tok.Expiry.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("exchanged token incomplete (expiry %v)", tok.Expiry)
	}
	// The answer does not name the user: one GetUser call with the new token does.
	if s, _ := tok.Extra("subject").(string); !strings.Contains(s, "@") {
		t.Errorf("exchanged token's subject %q, want the user's email", s)
	}
	if _, err := b.cfg.Exchange(context.Background(), loc.Query().Get("code"), redirect, ""); err == nil {
		t.Fatal("a code was accepted twice")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []lacrm.Config{{PageSize: 10001}, {Lookback: -time.Second}, {BaseURL: "ftp://x"}} {
		if _, err := lacrm.New(c, &memTokens{}); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestFullPassAndSince(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 60, PipelineItems: 20}, nil)
	s := newStore()
	var stats httpx.Stats
	since := epoch.Add(-60 * 24 * time.Hour)
	for p, err := range readAll(b.src, httpx.WithStats(context.Background(), &stats), b.acct, "", sources.ReadOptions{Since: since}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Leads {
			if l.UpdatedAt.Before(since) {
				t.Fatalf("lead %s updated %v, before the backfill start", l.ID, l.UpdatedAt)
			}
		}
		for _, d := range p.Deals {
			if d.UpdatedAt.Before(since) {
				t.Fatalf("deal %s updated %v, before the backfill start", d.ID, d.UpdatedAt)
			}
		}
		s.put(p)
		s.cursor = p.Next
	}
	recent := 0
	for _, r := range b.truthRows(t) {
		if !r.Updated.Before(since) {
			recent++
		}
	}
	if s.rows() != recent || recent == 0 {
		t.Fatalf("backfill from %v stored %d leads and deals, want %d", since, s.rows(), recent)
	}
	if total := b.srv.Counters().TotalRequests() - b.srv.Counters().Requests("v2/GetUser", 0); stats.Requests.Load() != total {
		t.Errorf("the pass counted %d requests, the vendor saw %d", stats.Requests.Load(), total)
	}
	// A full pass ignores the watermark and the backfill start is the configured one (none).
	if err := b.sync(t, s, sources.ReadOptions{Full: true}, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.wantTruth(t, s)
}

func TestFullPassSeesEveryRecordEditedDuringIt(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 300, PipelineItems: 100}, nil)
	records := b.truthRows(t)
	seen := map[string]bool{}
	pages, edits := 0, 0
	for p, err := range readAll(b.src, context.Background(), b.acct, "", sources.ReadOptions{Full: true}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Leads {
			seen[l.ID] = true
		}
		for _, d := range p.Deals {
			seen[d.ID] = true
		}
		pages++
		// While the pass is under way, a user edits three records a second: each moves to
		// the front of the LastUpdate order.
		for range 3 {
			b.clock.Advance(time.Second)
			l := records[(edits*7919)%len(records)]
			edits++
			var err error
			if l.Deal {
				err = b.srv.UpdatePipelineItem(l.ID)
			} else {
				err = b.srv.UpdateContact(l.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var missed []string
	for _, l := range b.truthRows(t) {
		if !seen[l.ID] {
			missed = append(missed, l.ID)
		}
	}
	if len(missed) > 0 {
		t.Fatalf("the full pass missed %d of %d live records (%d edits over %d pages): the worker would soft-delete them",
			len(missed), len(records), edits, pages)
	}
}
