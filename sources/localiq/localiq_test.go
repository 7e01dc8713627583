package localiq_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

func TestAccountsArePagedWithAccessState(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 7, InteractionsPerAdvertiser: 1}, localiq.Config{AccountsPageSize: 2})
	got := b.accounts(t)
	want := b.fake.Advertisers()
	if len(got) != len(want) {
		t.Fatalf("%d accounts, want %d", len(got), len(want))
	}
	for i, a := range got {
		w := want[i]
		if a.Source != sources.LocaliQ || a.ID != w.GMAID || a.Name != w.Name || a.HIPAAProtected != w.HIPAAProtected ||
			a.Active != (w.ActiveState != 0) || a.Meta["active_state"] != string(rune('0'+w.ActiveState)) || a.Meta["privilege_level"] == "" {
			t.Errorf("account %d = %+v, fake has %+v", i, a, w)
		}
	}
	if n := b.fake.Counters().Requests("identities/v3", 200); n != 4 {
		t.Fatalf("identities requests = %d, want 4 pages of 2", n)
	}
}

func TestBackfillStoresEveryLeadExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Seed: 3, InteractionsPerAdvertiser: 160}, localiq.Config{})
	synced := 0
	for _, acct := range b.accounts(t) {
		truth := b.truth(t, acct.ID)
		p := b.run(t, acct, "", sources.ReadOptions{}, 0)
		if truth.Restricted {
			if restrictedErr(p.err) == nil {
				t.Errorf("%s: restricted account gave %v", acct.ID, p.err)
			}
			continue
		}
		if p.err != nil {
			t.Fatalf("%s: %v", acct.ID, p.err)
		}
		synced++
		got := map[string]sources.Lead{}
		for _, l := range p.leads {
			if _, dup := got[l.ID]; dup {
				t.Fatalf("%s: lead %s twice in one pass", acct.ID, l.ID)
			}
			got[l.ID] = l
		}
		if len(got) != len(truth.Leads) {
			t.Fatalf("%s: %d leads, truth has %d", acct.ID, len(got), len(truth.Leads))
		}
		for _, lt := range truth.Leads {
			l, ok := got[lt.ID]
			if !ok {
				t.Fatalf("%s: lead %s missing", acct.ID, lt.ID)
			}
			if l.Kind != lt.Kind || !l.UpdatedAt.Equal(lt.UpdatedAt) || l.AccountID != acct.ID || l.HIPAA != acct.HIPAAProtected {
				t.Fatalf("%s: lead %s = kind %s updated %v, truth kind %s updated %v", acct.ID, l.ID, l.Kind, l.UpdatedAt, lt.Kind, lt.UpdatedAt)
			}
			if l.CreatedAt.IsZero() || l.CreatedAt.Location() != time.UTC || l.CreatedAt.After(l.UpdatedAt) || len(l.Raw) == 0 {
				t.Fatalf("%s: lead %s created %v raw %d bytes", acct.ID, l.ID, l.CreatedAt, len(l.Raw))
			}
			if l.Email == localiq.NonLeadChatEmail {
				t.Fatalf("non-lead chat %s stored", l.ID)
			}
		}
		// The final cursor points past tomorrow (the local tomorrow of far-east advertisers): the
		// next run only re-reads the last days.
		var c struct {
			NextDate string `json:"next_date"`
			Page     int    `json:"page"`
		}
		if err := json.Unmarshal([]byte(p.last), &c); err != nil || c.Page != 0 ||
			c.NextDate != time.Now().UTC().AddDate(0, 0, 2).Format("2006-01-02") {
			t.Fatalf("final cursor %s", p.last)
		}
	}
	if synced < 2 {
		t.Fatalf("only %d accounts synced", synced)
	}
}

func TestResumedCursorContinues(t *testing.T) {
	t.Parallel()
	// One-year windows, so a window spans several pages and the cursor stops mid-window.
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 300}, localiq.Config{Window: 365 * 24 * time.Hour})
	acct := b.accounts(t)[0]
	full := b.run(t, acct, "", sources.ReadOptions{}, 0)
	if full.err != nil {
		t.Fatal(full.err)
	}
	before := b.fake.Counters().Requests("crm/contact_interactions", 0)

	first := b.run(t, acct, "", sources.ReadOptions{}, 3)
	if first.err != nil || first.pages != 3 || !strings.Contains(string(first.last), `"page":`) {
		t.Fatalf("first run: %d pages, cursor %s, err %v", first.pages, first.last, first.err)
	}
	rest := b.run(t, acct, first.last, sources.ReadOptions{}, 0)
	if rest.err != nil {
		t.Fatal(rest.err)
	}
	resumed := b.fake.Counters().Requests("crm/contact_interactions", 0) - before
	if resumed != int64(full.pages) {
		t.Fatalf("interrupted + resumed runs took %d requests, one pass takes %d", resumed, full.pages)
	}
	ids := map[string]int{}
	for _, l := range append(first.leads, rest.leads...) {
		ids[l.ID]++
	}
	for _, lt := range b.truth(t, acct.ID).Leads {
		if ids[lt.ID] != 1 {
			t.Fatalf("lead %s stored %d times across the resume", lt.ID, ids[lt.ID])
		}
	}
	if len(ids) != len(b.truth(t, acct.ID).Leads) {
		t.Fatalf("%d leads, truth %d", len(ids), len(b.truth(t, acct.ID).Leads))
	}
}

func TestIncrementalRunReReadsLastDays(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 100}, localiq.Config{})
	acct := b.accounts(t)[0]
	full := b.run(t, acct, "", sources.ReadOptions{}, 0)
	if full.err != nil {
		t.Fatal(full.err)
	}
	now := time.Now()
	fresh, err := b.fake.AddInteractions(liqtest.NewInteraction{GMAID: acct.ID, EventType: "call"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	yesterday, _ := b.fake.AddInteractions(liqtest.NewInteraction{GMAID: acct.ID, EventType: "form", CreatedAt: now.Add(-24 * time.Hour)}, 1)
	old, _ := b.fake.AddInteractions(liqtest.NewInteraction{GMAID: acct.ID, EventType: "chat", CreatedAt: now.AddDate(0, 0, -8)}, 1)

	before := b.fake.Counters().Requests("crm/contact_interactions", 0)
	inc := b.run(t, acct, full.last, sources.ReadOptions{}, 0)
	if inc.err != nil {
		t.Fatal(inc.err)
	}
	if n := b.fake.Counters().Requests("crm/contact_interactions", 0) - before; n > 2 {
		t.Fatalf("incremental run took %d requests", n)
	}
	got := map[string]int{}
	for _, l := range inc.leads {
		got[l.ID]++
	}
	for _, id := range append(fresh, yesterday...) {
		if got[idString(id)] != 1 {
			t.Fatalf("new interaction %d seen %d times in the incremental pass", id, got[idString(id)])
		}
	}
	// Only a full pass finds an interaction created before the re-read window.
	if got[idString(old[0])] != 0 {
		t.Fatalf("interaction created 8 days ago came in the 3-day re-read")
	}
	// An edit (the lead marked read) shows as a later updated_at on the next run.
	if err := b.fake.EditInteraction(fresh[0], "client"); err != nil {
		t.Fatal(err)
	}
	again := b.run(t, acct, inc.last, sources.ReadOptions{}, 0)
	var want simkit.LeadTruth
	for _, lt := range b.truth(t, acct.ID).Leads {
		if lt.ID == idString(fresh[0]) {
			want = lt
		}
	}
	i := slices.IndexFunc(again.leads, func(l sources.Lead) bool { return l.ID == want.ID })
	if again.err != nil || i < 0 || !again.leads[i].UpdatedAt.Equal(want.UpdatedAt) || again.leads[i].Status != "client" {
		t.Fatalf("edited lead: %v, truth %+v", again.err, want)
	}
	fullAgain := b.run(t, acct, inc.last, sources.ReadOptions{Full: true}, 0)
	if !slices.ContainsFunc(fullAgain.leads, func(l sources.Lead) bool { return l.ID == idString(old[0]) }) {
		t.Fatal("full pass missed the back-dated interaction")
	}
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }

func TestHIPAAAdvertiserIsRestrictedButCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 120, RestrictAllHIPAA: true}, localiq.Config{})
	acct := b.account(t, func(a sources.Account) bool { return a.HIPAAProtected })
	p := b.run(t, acct, "", sources.ReadOptions{}, 0)
	re := restrictedErr(p.err)
	if re == nil || !re.HIPAA || re.AccountID != acct.ID || re.Access() != sources.AccessHIPAARestricted ||
		!strings.Contains(re.Message, "You are not permitted to perform this action.") || !reflect.DeepEqual(re.Fields, sources.PIIFields) {
		t.Fatalf("HIPAA account: %#v (%v)", re, p.err)
	}
	if len(p.leads) != 0 || p.pages != 0 {
		t.Fatalf("restricted account produced %d pages", p.pages)
	}
	// The PII-free counts are still available.
	counts, err := b.src.DailyCounts(context.Background(), acct, time.Now().AddDate(-3, 0, 0), time.Now().AddDate(0, 0, 1))
	if err != nil {
		t.Fatalf("DailyCounts: %v", err)
	}
	byKind := map[string]int{}
	for _, c := range counts {
		byKind[c.Kind] += c.Count
	}
	// Once the role is granted, the leads can be read from the untouched cursor.
	b.fake.SetAgencyCustomer(b.cfg.User, true)
	want := map[string]int{}
	for _, lt := range b.truth(t, acct.ID).Leads {
		want[lt.Kind]++
	}
	if !reflect.DeepEqual(byKind, want) {
		t.Fatalf("daily counts %v, leads by kind %v", byKind, want)
	}
	p = b.run(t, acct, "", sources.ReadOptions{}, 0)
	if p.err != nil || len(p.leads) != len(b.truth(t, acct.ID).Leads) {
		t.Fatalf("after role grant: %d leads, err %v", len(p.leads), p.err)
	}
	for _, l := range p.leads {
		if !l.HIPAA {
			t.Fatalf("lead %s of a HIPAA advertiser without hipaa flag", l.ID)
		}
	}
}

// TestDefaultSandboxReadsOneHIPAAAdvertiser: by default the sandbox user has the Agency
// Customer role on one HIPAA advertiser: its leads are read, flagged hipaa, and the listing
// gives it privilege level 3; the other HIPAA advertisers stay restricted.
func TestDefaultSandboxReadsOneHIPAAAdvertiser(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 20}, localiq.Config{})
	var readable, restricted int
	for _, acct := range b.accounts(t) {
		if !acct.HIPAAProtected {
			continue
		}
		p := b.run(t, acct, "", sources.ReadOptions{}, 0)
		switch re := restrictedErr(p.err); {
		case re != nil && re.Access() == sources.AccessHIPAARestricted && acct.Meta["privilege_level"] == "2":
			restricted++
		case p.err == nil && len(p.leads) > 0 && acct.Meta["privilege_level"] == "3":
			readable++
			for _, l := range p.leads {
				if !l.HIPAA {
					t.Fatalf("%s: lead %s without the hipaa flag", acct.ID, l.ID)
				}
			}
		default:
			t.Errorf("%s (privilege_level %s): %d leads, %v", acct.ID, acct.Meta["privilege_level"], len(p.leads), p.err)
		}
	}
	if readable != 1 || restricted == 0 {
		t.Fatalf("%d readable and %d restricted HIPAA advertisers, want 1 and some", readable, restricted)
	}
}

func TestInactiveAdvertiserIsForbidden(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 10}, localiq.Config{})
	acct := b.account(t, func(a sources.Account) bool { return !a.Active })
	re := restrictedErr(b.run(t, acct, "", sources.ReadOptions{}, 0).err)
	if re == nil || re.HIPAA || re.Access() != sources.AccessForbidden {
		t.Fatalf("inactive account: %#v", re)
	}
}

func TestDailyCountsMatchLeads(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 200}, localiq.Config{})
	acct := b.accounts(t)[0]
	from := time.Now().AddDate(-2, -1, 0)
	to := time.Now().AddDate(0, 0, 2)
	counts, err := b.src.DailyCounts(context.Background(), acct, from, to)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	days := map[time.Time]bool{}
	for _, c := range counts {
		got[c.Kind] += c.Count
		days[c.Day] = true
		if c.Day.Location() != time.UTC || c.Day.Hour() != 0 {
			t.Fatalf("day %v is not midnight UTC", c.Day)
		}
	}
	want := map[string]int{}
	for _, lt := range b.truth(t, acct.ID).Leads {
		want[lt.Kind]++
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, truth %v", got, want)
	}
	// Three report requests (366-day chunks) cover every day of the range once.
	if n := b.fake.Counters().Requests("client_reports/lead_detail", 200); n != 3 {
		t.Fatalf("lead_detail requests = %d", n)
	}
	if wantDays := int(to.Sub(from).Hours()/24) + 1; len(days) < wantDays-1 || len(days) > wantDays {
		t.Fatalf("%d days of counts, want about %d", len(days), wantDays)
	}
}

func TestExpiredTokenIsRefreshedOnceAndRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 2, InteractionsPerAdvertiser: 1}, localiq.Config{})
	// The stored access token was revoked behind our back (another refresh); the refresh
	// token is still good.
	b.creds.tok = &oauth2.Token{AccessToken: "liq_at_revoked", RefreshToken: b.creds.tok.RefreshToken, Expiry: time.Now().Add(time.Hour)}
	if got := len(b.accounts(t)); got != 2 {
		t.Fatalf("%d accounts", got)
	}
	if b.creds.Refreshes() != 1 || b.fake.Counters().Requests("identities/v3", 401) != 1 {
		t.Fatalf("refreshes %d, 401s %d", b.creds.Refreshes(), b.fake.Counters().Requests("identities/v3", 401))
	}
}

func TestRefresherRotatesAndReportsReuse(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 1, TokenTTL: 90 * time.Minute}, localiq.Config{})
	old := b.creds.tok.RefreshToken
	ctx := context.Background()
	tok, err := b.cfg.Refresher().Refresh(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == old || tok.AccessToken == "" || tok.Type() != "Bearer" {
		t.Fatalf("refreshed token: type %q, rotated %v", tok.Type(), tok.RefreshToken != old)
	}
	created, _ := tok.Extra("created_at").(string)
	if created == "" || time.Until(tok.Expiry) < 89*time.Minute || time.Until(tok.Expiry) > 91*time.Minute {
		t.Fatalf("expiry %v created_at %q", tok.Expiry, created)
	}
	_, err = b.cfg.Refresher().Refresh(ctx, old)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("reused refresh token: %v", err)
	}
	if strings.Contains(err.Error(), old) || strings.Contains(string(re.Body), old) {
		t.Fatal("error leaks the refresh token")
	}
	if b.fake.Counters().Get(simkit.CountRefreshReuse) != 1 {
		t.Fatal("the fake did not see the reuse")
	}
}

func TestRefreshIsSentExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 1,
		Faults: simkit.FaultSettings{DropRefreshResponses: 1}}, localiq.Config{})
	_, err := b.cfg.Refresher().Refresh(context.Background(), b.creds.tok.RefreshToken)
	var re *oauth2.RetrieveError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("dropped response: %v (must be a plain, transient error)", err)
	}
	if n := b.fake.Counters().Requests("oauth/token", 0); n != 1 {
		t.Fatalf("token endpoint saw %d requests", n)
	}
}

func TestAuthorizationCodeAndPasswordGrants(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 1}, localiq.Config{})
	u, err := url.Parse(b.cfg.AuthCodeURL("st4te", liqtest.DefaultRedirectURI, "ignored"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Path != "/oauth/authorize" || q.Get("client_id") != liqtest.DefaultClientID || q.Get("response_type") != "code" ||
		q.Get("redirect_uri") != liqtest.DefaultRedirectURI || q.Get("state") != "st4te" || q.Has("code_challenge") {
		t.Fatalf("auth URL %s", u)
	}
	hc := b.fake.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := hc.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, _ := url.Parse(res.Header.Get("Location"))
	tok, err := b.cfg.Exchange(context.Background(), loc.Query().Get("code"), liqtest.DefaultRedirectURI, "")
	if err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("exchange: %v", err)
	}
	// The answers do not name the business user; the token carries it for the token store.
	if s := tok.Extra("subject"); s != b.cfg.User {
		t.Errorf("exchanged token's subject %v, want %s", s, b.cfg.User)
	}
	tok, err = b.cfg.PasswordGrant(context.Background(), b.cfg.User, liqtest.DefaultSandboxPassword)
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("password grant: %v", err)
	}
	if s := tok.Extra("subject"); s != b.cfg.User {
		t.Errorf("password grant's subject %v, want %s", s, b.cfg.User)
	}
	_, err = b.cfg.PasswordGrant(context.Background(), b.cfg.User, "wrong-password")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("bad password: %v", err)
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse(localiq.Config{ClientID: "c"}.AuthCodeURL("s", "https://app.example/cb", ""))
	if u.Scheme+"://"+u.Host+u.Path != "https://api.localiqservices.com/oauth/authorize" {
		t.Fatalf("default auth URL %s", u)
	}
	if _, err := localiq.New(localiq.Config{}, memTokens{&memCreds{}}); err == nil || !strings.Contains(err.Error(), "user") {
		t.Fatalf("missing user: %v", err)
	}
	src, err := localiq.New(localiq.Config{User: "u@example.com"}, memTokens{&memCreds{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range src.Read(context.Background(), sources.Account{ID: "X"}, localiq.StreamInteractions, "{not json", sources.ReadOptions{}) {
		if err == nil || !strings.Contains(err.Error(), "cursor") {
			t.Fatalf("bad cursor: %v", err)
		}
	}
}

func TestRealRateLimitIsRespected(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~2 s at the vendor's 20 requests/second")
	}
	t.Parallel()
	// 30 one-day windows at the real 20/s: every request gets through, with at most a
	// couple of retried 429s (the fake's windows are wall-clock seconds).
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 20, RateLimit: liqtest.DefaultRateLimit},
		localiq.Config{RateLimit: localiq.DefaultRateLimit, Window: 24 * time.Hour, BackfillStart: time.Now().AddDate(0, 0, -29)})
	acct := b.accounts(t)[0]
	p := b.run(t, acct, "", sources.ReadOptions{}, 0)
	if p.err != nil {
		t.Fatal(p.err)
	}
	if p.pages < 30 {
		t.Fatalf("%d pages", p.pages)
	}
	if n := b.fake.Counters().Get(simkit.Count429); n > 2 {
		t.Fatalf("%d requests throttled", n)
	}
}

func TestPassDedupesShiftedPages(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 200}, localiq.Config{Window: 3 * 365 * 24 * time.Hour})
	acct := b.accounts(t)[0]
	seen := map[string]int{}
	pages := 0
	for page, err := range b.src.Read(context.Background(), acct, localiq.StreamInteractions, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, l := range page.Leads {
			seen[l.ID]++
		}
		if pages == 1 {
			// An interaction lands before everything already read: every later page
			// shifts by one, and page 2 starts with the last lead of page 1.
			if _, err := b.fake.AddInteractions(liqtest.NewInteraction{GMAID: acct.ID, EventType: "call",
				CreatedAt: page.Leads[0].CreatedAt.Add(-time.Second)}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pages < 3 {
		t.Fatalf("%d pages", pages)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("lead %s emitted %d times in one pass", id, n)
		}
	}
	if len(seen) != len(b.truth(t, acct.ID).Leads)-1 {
		t.Fatalf("%d leads; truth minus the one inserted behind us is %d", len(seen), len(b.truth(t, acct.ID).Leads)-1)
	}
}

func TestThrottledRequestsAreRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out real one-second windows")
	}
	t.Parallel()
	// The vendor allows less than we think (another app on the same client): 429s, no
	// Retry-After; the source waits for the next window and loses nothing.
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 30, RateLimit: 6},
		localiq.Config{RateLimit: localiq.DefaultRateLimit, Window: 24 * time.Hour, BackfillStart: time.Now().AddDate(0, 0, -13)})
	acct := b.accounts(t)[0]
	p := b.run(t, acct, "", sources.ReadOptions{}, 0)
	if p.err != nil {
		t.Fatal(p.err)
	}
	if b.fake.Counters().Get(simkit.Count429) == 0 {
		t.Fatal("the fake never throttled: the test proves nothing")
	}
	var want int
	for _, lt := range b.truth(t, acct.ID).Leads {
		if lt.UpdatedAt.After(time.Now().AddDate(0, 0, -12)) {
			want++
		}
	}
	if len(p.leads) < want {
		t.Fatalf("%d leads after throttling, want at least %d", len(p.leads), want)
	}
}

func TestBackfillIncludesTheFirstDayInAFarWestZone(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 12, InteractionsPerAdvertiser: 5, HIPAAShare: -1, InactiveShare: -1}, localiq.Config{})
	var west string
	for _, a := range b.fake.Advertisers() {
		if a.TimeZone == "America/Los_Angeles" {
			west = a.GMAID
			break
		}
	}
	if west == "" {
		t.Fatal("no advertiser in America/Los_Angeles")
	}
	// At 02:00 UTC the default backfill starts two years back, on a UTC date whose first
	// hours are still the previous day in Los Angeles.
	now := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	first := now.Add(-localiq.DefaultBackfill).Add(time.Hour)
	ids, err := b.fake.AddInteractions(liqtest.NewInteraction{GMAID: west, EventType: "call", CreatedAt: first}, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.cfg
	cfg.BackfillStart = time.Time{} // the default window
	src, err := localiq.New(cfg, memTokens{b.creds}, localiq.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	b.src = src
	p := b.run(t, b.account(t, func(a sources.Account) bool { return a.ID == west }), "", sources.ReadOptions{}, 0)
	if p.err != nil {
		t.Fatal(p.err)
	}
	for _, l := range p.leads {
		if l.ID == idString(ids[0]) {
			return
		}
	}
	t.Fatalf("the lead created at %v, inside the backfill window that starts %v, was not read (%d leads)",
		first, now.Add(-localiq.DefaultBackfill), len(p.leads))
}

// TestDailyCountsStream: the daily_counts stream reads the last CountDays for a
// HIPAA-restricted advertiser too, and from its cursor re-reads only the last ReRead days.
func TestDailyCountsStream(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{InteractionsPerAdvertiser: 150, RestrictAllHIPAA: true}, localiq.Config{})
	acct := b.account(t, func(a sources.Account) bool { return a.HIPAAProtected })
	read := func(cur sources.Cursor) (counts []sources.DailyCount, next sources.Cursor) {
		t.Helper()
		for p, err := range b.src.Read(context.Background(), acct, localiq.StreamDailyCounts, cur, sources.ReadOptions{}) {
			if err != nil {
				t.Fatalf("daily_counts of a restricted advertiser: %v", err)
			}
			if len(p.Leads) != 0 || p.Next == "" {
				t.Fatalf("a daily_counts page with %d leads, cursor %q", len(p.Leads), p.Next)
			}
			counts, next = append(counts, p.Counts...), p.Next
		}
		return counts, next
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -localiq.CountDays+1)
	counts, cur := read("")
	b.fake.SetAgencyCustomer(b.cfg.User, true) // the ground truth lists readable leads only
	want := len(b.truth(t, acct.ID).Leads)
	got := 0
	for _, c := range counts {
		if c.Day.Before(first.AddDate(0, 0, -1)) || c.Day.After(today.AddDate(0, 0, 1)) {
			t.Fatalf("a count for %v, outside the last %d days", c.Day, localiq.CountDays)
		}
		got += c.Count
	}
	if got == 0 || got > want {
		t.Fatalf("the counts of the last %d days add up to %d; the advertiser has %d leads in all", localiq.CountDays, got, want)
	}
	again, _ := read(cur)
	for _, c := range again {
		if c.Day.Before(today.AddDate(0, 0, -days(localiq.DefaultReRead)-1)) {
			t.Fatalf("from its cursor the stream re-read %v, more than %v back", c.Day, localiq.DefaultReRead)
		}
	}
}

func days(d time.Duration) int { return int(d / (24 * time.Hour)) }

// A backfill carries the fake's read_at, archived_at and call durations onto the leads: the
// times as the vendor's datetimes say (in UTC), the durations in seconds whichever shape the
// fake sent, and the update time the latest of them.
func TestLeadTimesFromTheFake(t *testing.T) {
	t.Parallel()
	b := setup(t, liqtest.Options{Advertisers: 1, InteractionsPerAdvertiser: 200}, localiq.Config{})
	acct := b.accounts(t)[0]
	p := b.run(t, acct, "", sources.ReadOptions{}, 0)
	if p.err != nil || len(p.leads) == 0 {
		t.Fatalf("backfill: %d leads, %v", len(p.leads), p.err)
	}
	var read, archived, calls int
	for _, l := range p.leads {
		var doc struct {
			ReadAt     *string `json:"read_at"`
			ArchivedAt *string `json:"archived_at"`
			Call       struct {
				Duration json.RawMessage `json:"duration"`
			} `json:"call"`
		}
		if err := json.Unmarshal(l.Raw, &doc); err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name string
			doc  *string
			got  time.Time
			n    *int
		}{{"read_at", doc.ReadAt, l.ReadAt, &read}, {"archived_at", doc.ArchivedAt, l.ArchivedAt, &archived}} {
			var want time.Time
			if f.doc != nil {
				v, err := time.Parse(time.RFC3339, *f.doc)
				if err != nil {
					t.Fatalf("lead %s: the fake's %s %q: %v", l.ID, f.name, *f.doc, err)
				}
				want = v.UTC()
				*f.n++
			}
			if !f.got.Equal(want) || (!want.IsZero() && (f.got.Location() != time.UTC || l.UpdatedAt.Before(f.got))) {
				t.Errorf("lead %s: %s %v (updated %v), want %v", l.ID, f.name, f.got, l.UpdatedAt, want)
			}
		}
		var want int64
		if l.Kind == sources.KindCall {
			calls++
			want = fakeSeconds(t, doc.Call.Duration)
		}
		if l.DurationSeconds != want {
			t.Errorf("lead %s (%s): %d seconds, want %d (duration %s)", l.ID, l.Kind, l.DurationSeconds, want, doc.Call.Duration)
		}
	}
	if read == 0 || archived == 0 || calls == 0 || read == len(p.leads) {
		t.Fatalf("%d leads: %d read, %d archived, %d calls; want some of each, and some unread", len(p.leads), read, archived, calls)
	}
}

// fakeSeconds is a duration as the fake writes it: seconds, "mm:ss" or "h:mm:ss".
func fakeSeconds(t *testing.T, raw json.RawMessage) int64 {
	t.Helper()
	var secs int64
	if err := json.Unmarshal(raw, &secs); err == nil {
		return secs
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("call.duration %s", raw)
	}
	for _, part := range strings.Split(s, ":") {
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			t.Fatalf("call.duration %s", raw)
		}
		secs = secs*60 + n
	}
	return secs
}
