package leadconnector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
)

// subScopes is a grant that may read forms and surveys (DefaultScopes does not list them yet).
var subScopes = append(slices.Clone(DefaultScopes), "forms.readonly", "surveys.readonly")

// queryLog records the query of every submissions request the source sends.
type queryLog struct {
	mu      sync.Mutex
	queries []url.Values // in order
	paths   []string
}

func (l *queryLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/submissions") {
		l.mu.Lock()
		l.queries = append(l.queries, r.URL.Query())
		l.paths = append(l.paths, r.URL.Path)
		l.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (l *queryLog) since(n int) []url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.queries[n:])
}

func (l *queryLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queries)
}

// setupSubs is setup with a grant for the submissions and a log of their requests.
func setupSubs(t *testing.T, opts lctest.Options, mod func(*Config)) (*testBundle, *queryLog) {
	t.Helper()
	log := &queryLog{}
	b := setup(t, opts, func(c *Config) {
		c.Scopes = subScopes
		c.HTTP = &http.Client{Transport: log, Timeout: 30 * time.Second}
		if mod != nil {
			mod(c)
		}
	})
	return b, log
}

// readSubs runs a stream to the end (or stopAfter pages).
func (b *testBundle) readSubs(t *testing.T, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions, stopAfter int) ([]sources.Page, error) {
	t.Helper()
	var pages []sources.Page
	for p, err := range b.src.Read(context.Background(), acct, stream, cur, opts) {
		if err != nil {
			return pages, err
		}
		pages = append(pages, p)
		if stopAfter > 0 && len(pages) == stopAfter {
			break
		}
	}
	return pages, nil
}

// mustReadSubs is readSubs to the end, failing the test on an error; it returns the
// submissions by id and the last cursor.
func (b *testBundle) mustReadSubs(t *testing.T, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) (map[string]sources.Submission, sources.Cursor) {
	t.Helper()
	pages, err := b.readSubs(t, acct, stream, cur, opts, 0)
	if err != nil {
		t.Fatalf("%s: %v", stream, err)
	}
	got := map[string]sources.Submission{}
	for _, p := range pages {
		if len(p.Leads)+len(p.Deals)+len(p.Counts) > 0 {
			t.Fatalf("%s: a page with rows of another table", stream)
		}
		for _, s := range p.Submissions {
			got[s.ID] = s
		}
	}
	return got, pages[len(pages)-1].Next
}

// subsTruth is the fake's submissions of a location: createdAt by id.
func subsTruth(b *testBundle, loc string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range truthOf(b, loc).Records {
		if r.Table == sources.TableSubmissions {
			out[r.ID] = r.Updated
		}
	}
	return out
}

// equalTruth fails unless got holds exactly the truth's submissions of both kinds.
func equalTruth(t *testing.T, b *testBundle, loc string, got map[string]sources.Submission) {
	t.Helper()
	truth := subsTruth(b, loc)
	for id, at := range truth {
		if s, ok := got[id]; !ok || !s.SubmittedAt.Equal(at) {
			t.Fatalf("submission %s (%v): read %v", id, at, s.SubmittedAt)
		}
	}
	if len(got) != len(truth) {
		t.Fatalf("%d submissions read, the truth has %d", len(got), len(truth))
	}
}

func TestSubmissionStreamsAreRegistered(t *testing.T) {
	t.Parallel()
	b, _ := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 1}, nil)
	names := []string{}
	for _, st := range b.src.Streams() {
		if st.Table == sources.TableSubmissions {
			if st.Mode != sources.Incremental {
				t.Errorf("%s is %s", st.Name, st.Mode)
			}
			names = append(names, st.Name)
		}
	}
	if !slices.Equal(names, []string{StreamFormSubmissions, StreamSurveySubmissions}) {
		t.Fatalf("submission streams %v", names)
	}
	if got := b.src.NeededScopes(StreamSurveySubmissions); !slices.Equal(got, []string{"oauth.readonly", "oauth.write", "surveys.readonly"}) {
		t.Fatalf("scopes of survey_submissions: %v", got)
	}
}

// TestSubmissionsBackfillOlderThanAMonthEqualsTruth is the must-show: the vendor's default
// window holds only the last month, and a backfill still brings every submission.
func TestSubmissionsBackfillOlderThanAMonthEqualsTruth(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]time.Time{"floor": {}, "backfill_start": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, log := setupSubs(t, lctest.Options{Locations: 2, ContactsPerLocation: 300}, func(c *Config) { c.BackfillStart = start })
			acct := b.accounts(t)[1]
			got := map[string]sources.Submission{}
			for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
				n := log.len()
				subs, end := b.mustReadSubs(t, acct, stream, "", sources.ReadOptions{})
				kind := map[string]string{StreamFormSubmissions: sources.SubmissionForm, StreamSurveySubmissions: sources.SubmissionSurvey}[stream]
				for id, s := range subs {
					// FormName comes from the tracking (eventData.parentName): API submissions have none.
					if s.Kind != kind || s.ContactID == "" || s.FormID == "" || (s.FormName == "") != (s.Source == "") || !json.Valid(s.Raw) || s.HIPAA {
						t.Fatalf("%s: %s badly mapped: %+v", stream, id, s.Attribution)
					}
					got[id] = s
				}
				var c subCursor
				if err := json.Unmarshal([]byte(end), &c); err != nil || c.From != "" || c.Watermark == "" || c.Through == "" {
					t.Fatalf("%s: the final cursor must mark the pass complete: %s", stream, end)
				}
				reqs := log.since(n)
				for i, q := range reqs {
					from, err1 := time.Parse(time.DateOnly, q.Get("startAt"))
					to, err2 := time.Parse(time.DateOnly, q.Get("endAt"))
					if err1 != nil || err2 != nil || to.Before(from) || q.Get("limit") != "100" || q.Get("locationId") != acct.ID {
						t.Fatalf("%s request %d without an explicit window: %v", stream, i, q)
					}
				}
				if first, last := reqs[0], reqs[len(reqs)-1]; first.Get("startAt") != cmpOr(start, subFloor).Format(time.DateOnly) ||
					last.Get("endAt") != "2026-03-03" {
					t.Fatalf("%s: windows from %s to %s", stream, first.Get("startAt"), last.Get("endAt"))
				}
				t.Logf("%s backfill from %s: %d requests", stream, reqs[0].Get("startAt"), len(reqs))
			}
			equalTruth(t, b, acct.ID, got)
			monthAgo, older := t0.AddDate(0, -1, 0), 0
			for _, at := range subsTruth(b, acct.ID) {
				if at.Before(monthAgo) {
					older++
				}
			}
			if older < len(got)/2 {
				t.Fatalf("only %d of %d submissions are older than a month: the test shows nothing", older, len(got))
			}
			// What a client that leaves the dates out gets: the last month only.
			var total int
			_, err := b.src.api.Decode(context.Background(), httpx.Request{Path: "/forms/submissions", Endpoint: "forms/submissions",
				Query: url.Values{"locationId": {acct.ID}, "limit": {"100"}}, Header: b.cfg.withDefaults().versionHeader(),
				Bucket: locationBucket(acct.ID), Auth: b.tokens.Account(acct.ID, b.src.minter(acct.ID))},
				func(body []byte) error {
					p, err := decodeSubmissionsPage(body, sources.SubmissionForm, acct, 100)
					total = p.total
					return err
				})
			// The documented defaults: the same date last month (2026-02-02) to today.
			recent, forms := 0, 0
			for id, s := range got {
				if s.Kind == sources.SubmissionForm {
					forms++
					recent += btoi(b.srv.SubmissionKind(acct.ID, id) == lctest.KindFormSubmission &&
						!s.SubmittedAt.Before(time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)))
				}
			}
			if err != nil || total != recent || total == 0 || total >= forms/2 {
				t.Fatalf("without startAt/endAt the vendor lists %d of %d form submissions, want the %d of the last month (%v)", total, forms, recent, err)
			}
		})
	}
}

func cmpOr(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

func TestSubmissionAttributionIsPromoted(t *testing.T) {
	t.Parallel()
	b, _ := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 240}, nil)
	acct := b.accounts(t)[0]
	acct.HIPAAProtected = true
	subs, _ := b.mustReadSubs(t, acct, StreamFormSubmissions, "", sources.ReadOptions{})
	var gclids, fbclids, utms, untracked int
	for id, s := range subs {
		var raw struct {
			Phone  string `json:"phone"`
			Others map[string]json.RawMessage
		}
		if err := json.Unmarshal(s.Raw, &raw); err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Source, Medium, Campaign, Referrer, GCLID, FBCLID, ParentName string
			Page                                                          struct{ URL string }
			URLParams                                                     map[string]string `json:"url_params"`
		}
		if evRaw, ok := raw.Others["eventData"]; ok {
			if err := json.Unmarshal(evRaw, &ev); err != nil {
				t.Fatal(err)
			}
		} else {
			untracked++
		}
		want := sources.Attribution{Source: ev.Source, Medium: ev.Medium, Campaign: ev.Campaign,
			UTMSource: ev.URLParams["utm_source"], UTMMedium: ev.URLParams["utm_medium"], UTMCampaign: ev.URLParams["utm_campaign"],
			UTMTerm: ev.URLParams["utm_term"], UTMContent: ev.URLParams["utm_content"],
			GCLID: ev.GCLID, FBCLID: ev.FBCLID, Referrer: ev.Referrer, PageURL: ev.Page.URL}
		if s.Attribution != want || s.FormName != ev.ParentName && ev.ParentName != "" {
			t.Fatalf("submission %s: attribution\n%+v, want\n%+v", id, s.Attribution, want)
		}
		var answers map[string]json.RawMessage
		if err := json.Unmarshal(s.Answers, &answers); err != nil || answers["eventData"] != nil || answers["email"] == nil ||
			len(answers) != len(raw.Others)-btoi(raw.Others["eventData"] != nil) {
			t.Fatalf("submission %s: answers %s", id, s.Answers)
		}
		if s.Phone == "" || !s.HIPAA {
			t.Fatalf("submission %s: phone %q, HIPAA %v", id, s.Phone, s.HIPAA)
		}
		gclids += btoi(s.GCLID != "")
		fbclids += btoi(s.FBCLID != "")
		utms += btoi(s.UTMSource != "")
	}
	if gclids == 0 || fbclids == 0 || utms == 0 || untracked == 0 {
		t.Fatalf("gclids %d, fbclids %d, utm-tagged %d, untracked %d of %d", gclids, fbclids, utms, untracked, len(subs))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSubmissionsResumeFromAMidWindowCursor(t *testing.T) {
	t.Parallel()
	b, log := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 300}, func(c *Config) {
		c.PageSize = 3
		c.BackfillStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	})
	acct := b.accounts(t)[0]
	got := map[string]sources.Submission{}
	var stop sources.Cursor
	var c subCursor
	windows := map[string]bool{}
	for p, err := range b.src.Read(context.Background(), acct, StreamFormSubmissions, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Submissions {
			got[s.ID] = s
		}
		if err := json.Unmarshal([]byte(p.Next), &c); err != nil {
			t.Fatal(err)
		}
		windows[c.From] = true
		if c.Page >= 2 && len(windows) >= 3 {
			stop = p.Next
			break
		}
	}
	if stop == "" || c.Total == nil || c.Listed == "" || c.Watermark == "" {
		t.Fatalf("no mid-window cursor: %s", stop)
	}
	n := log.len()
	rest, end := b.mustReadSubs(t, acct, StreamFormSubmissions, stop, sources.ReadOptions{})
	if q := log.since(n)[0]; q.Get("startAt") != c.From || q.Get("endAt") != c.To || q.Get("page") != strconv.Itoa(c.Page) {
		t.Fatalf("resumed at %v, want the cursor's window %s..%s page %d", q, c.From, c.To, c.Page)
	}
	for id, s := range rest {
		got[id] = s
	}
	forms := map[string]sources.Submission{}
	for id, at := range subsTruth(b, acct.ID) {
		if at.Before(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) || b.srv.SubmissionKind(acct.ID, id) != lctest.KindFormSubmission {
			continue
		}
		if s, ok := got[id]; !ok || !s.SubmittedAt.Equal(at) {
			t.Fatalf("form submission %s of %v missing after the resumed pass", id, at)
		}
		forms[id] = got[id]
	}
	if len(got) != len(forms) || len(forms) < 20 {
		t.Fatalf("%d read, %d form submissions since the backfill start", len(got), len(forms))
	}
	var e subCursor
	if err := json.Unmarshal([]byte(end), &e); err != nil || e.From != "" || e.Through == "" {
		t.Fatalf("final cursor %s", end)
	}
}

func TestSubmissionsIncrementalBringsExactlyTheNewOne(t *testing.T) {
	t.Parallel()
	b, log := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 300}, nil)
	acct := b.accounts(t)[0]
	seen := map[string]bool{}
	cursors := map[string]sources.Cursor{}
	for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
		subs, cur := b.mustReadSubs(t, acct, stream, "", sources.ReadOptions{})
		for id := range subs {
			seen[id] = true
		}
		cursors[stream] = cur
	}
	// An incremental run with nothing new: one request per stream, nothing unseen.
	b.clock.Advance(time.Hour)
	n := log.len()
	for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
		subs, cur := b.mustReadSubs(t, acct, stream, cursors[stream], sources.ReadOptions{})
		for id := range subs {
			if !seen[id] {
				t.Fatalf("%s: a no-change run read %s, never seen", stream, id)
			}
		}
		cursors[stream] = cur
	}
	if reqs := log.since(n); len(reqs) != 2 || reqs[0].Get("startAt") != "2026-03-01" || reqs[0].Get("endAt") != "2026-03-03" {
		t.Fatalf("a no-change run sent %d requests (want 1 per stream): %v", len(reqs), reqs)
	}
	// A new form submission: the form stream brings it and nothing else new.
	b.clock.Advance(time.Hour)
	added := b.clock.Now().Truncate(time.Millisecond)
	id, err := b.srv.AddFormSubmission(acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
		subs, _ := b.mustReadSubs(t, acct, stream, cursors[stream], sources.ReadOptions{})
		var fresh []string
		for sid := range subs {
			if !seen[sid] {
				fresh = append(fresh, sid)
			}
		}
		want := []string{}
		if stream == StreamFormSubmissions {
			want = []string{id}
		}
		if !slices.Equal(fresh, want) {
			t.Fatalf("%s after one new form submission: new %v, want %v", stream, fresh, want)
		}
		if s, ok := subs[id]; stream == StreamFormSubmissions && (!ok || !s.SubmittedAt.Equal(added)) {
			t.Fatalf("the new submission: %+v", s)
		}
	}
	// A full pass from a recent cursor reads everything again.
	got := map[string]sources.Submission{}
	for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
		subs, _ := b.mustReadSubs(t, acct, stream, cursors[stream], sources.ReadOptions{Full: true})
		for sid, s := range subs {
			got[sid] = s
		}
	}
	equalTruth(t, b, acct.ID, got)
}

// TestSubmissionsDeletedMidWindowMissNothing: a delete on a page already read shifts the
// next page by one; the window is listed again, so no live submission is skipped.
func TestSubmissionsDeletedMidWindowMissNothing(t *testing.T) {
	t.Parallel()
	b, log := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 300}, func(c *Config) {
		c.PageSize = 4
		c.BackfillStart = time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)
	})
	acct := b.accounts(t)[0]
	got := map[string]bool{}
	deleted := 0
	for p, err := range b.src.Read(context.Background(), acct, StreamFormSubmissions, "", sources.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Submissions {
			got[s.ID] = true
		}
		var c subCursor
		_ = json.Unmarshal([]byte(p.Next), &c)
		if c.Page == 2 && deleted < 3 { // the first page of a window with more to come
			if err := b.srv.DeleteSubmission(acct.ID, p.Submissions[0].ID); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
	}
	if deleted != 3 {
		t.Fatalf("%d deletes: the test needs windows of several pages", deleted)
	}
	relisted := 0
	for _, q := range log.since(0) {
		relisted += btoi(q.Get("page") == "1")
	}
	for id, at := range subsTruth(b, acct.ID) {
		if !at.Before(time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)) && b.srv.SubmissionKind(acct.ID, id) == lctest.KindFormSubmission && !got[id] {
			t.Errorf("live submission %s (%v) skipped", id, at)
		}
	}
	windows := map[string]bool{}
	for _, q := range log.since(0) {
		windows[q.Get("startAt")] = true
	}
	if relisted != len(windows)+3 {
		t.Fatalf("%d first pages for %d windows and 3 deletes", relisted, len(windows))
	}
}

// TestSubmissionsDeepWindowIsHalved: a window listing more than subSplitPages pages is
// halved before it is paged.
func TestSubmissionsDeepWindowIsHalved(t *testing.T) {
	t.Parallel()
	b, log := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 150}, func(c *Config) {
		c.PageSize = 1 // windows of more than 50 submissions are halved
		c.BackfillStart = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	})
	acct := b.accounts(t)[0]
	for range 60 {
		b.clock.Advance(20 * time.Minute)
		if _, err := b.srv.AddFormSubmission(acct.ID); err != nil {
			t.Fatal(err)
		}
	}
	subs, _ := b.mustReadSubs(t, acct, StreamFormSubmissions, "", sources.ReadOptions{})
	want := 0
	for id, at := range subsTruth(b, acct.ID) {
		if !at.Before(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) && b.srv.SubmissionKind(acct.ID, id) == lctest.KindFormSubmission {
			want++
			if _, ok := subs[id]; !ok {
				t.Fatalf("submission %s of %v missing", id, at)
			}
		}
	}
	if len(subs) != want {
		t.Fatalf("%d read, want %d", len(subs), want)
	}
	reqs := log.since(0)
	if q := reqs[1]; reqs[0].Get("endAt") != "2026-03-03" || q.Get("startAt") != "2026-02-01" || q.Get("endAt") != "2026-02-16" || q.Get("page") != "1" {
		t.Fatalf("the deep first window was not halved: %v then %v", reqs[0], q)
	}
	for _, q := range reqs {
		from, _ := time.Parse(time.DateOnly, q.Get("startAt"))
		to, _ := time.Parse(time.DateOnly, q.Get("endAt"))
		if p, _ := strconv.Atoi(q.Get("page")); p > subSplitPages && to.Sub(from) > 24*time.Hour {
			t.Fatalf("page %d of a window of %v", p, to.Sub(from))
		}
	}
}

func TestSubmissionsOfAForbiddenLocationAreRestricted(t *testing.T) {
	t.Parallel()
	b, _ := setupSubs(t, lctest.Options{Locations: 2, ContactsPerLocation: 30, ForbiddenLocations: 1}, nil)
	accts := b.accounts(t)
	for _, stream := range []string{StreamFormSubmissions, StreamSurveySubmissions} {
		_, err := b.readSubs(t, accts[1], stream, "", sources.ReadOptions{}, 0)
		var re *sources.RestrictedError
		if !errors.As(err, &re) || re.Stream != stream || re.AccountID != accts[1].ID || re.HIPAA ||
			re.Message != lctest.MsgNoLocation || re.Access() != sources.AccessForbidden {
			t.Fatalf("%s: want the stream's *sources.RestrictedError, got %v", stream, err)
		}
		hipaa := accts[1]
		hipaa.HIPAAProtected = true
		if _, err := b.readSubs(t, hipaa, stream, "", sources.ReadOptions{}, 0); !errors.As(err, &re) || !re.HIPAA {
			t.Fatalf("%s of a known HIPAA location: %v", stream, err)
		}
		if _, err := b.readSubs(t, accts[0], stream, "", sources.ReadOptions{}, 0); err != nil {
			t.Fatalf("%s of the other location: %v", stream, err)
		}
	}
	if len(subsTruth(b, accts[1].ID)) != 0 {
		t.Fatal("the forbidden location's submissions are in the truth")
	}
}

func TestSubmissionsWithoutTheirScopeAreMissingScope(t *testing.T) {
	t.Parallel()
	b, _ := setupSubs(t, lctest.Options{Locations: 1, ContactsPerLocation: 30}, func(c *Config) {
		c.Scopes = []string{"contacts.readonly", "forms.readonly", "oauth.readonly", "oauth.write"} // no surveys.readonly
	})
	acct := b.accounts(t)[0]
	if _, err := b.readSubs(t, acct, StreamFormSubmissions, "", sources.ReadOptions{}, 0); err != nil {
		t.Fatalf("forms with forms.readonly: %v", err)
	}
	_, err := b.readSubs(t, acct, StreamSurveySubmissions, "", sources.ReadOptions{}, 0)
	var ms *sources.MissingScopeError
	if !errors.As(err, &ms) || ms.Scope != "surveys.readonly" || ms.Stream != StreamSurveySubmissions ||
		ms.AccountID != acct.ID || ms.Message != lctest.MsgScope || !strings.Contains(err.Error(), "surveys.readonly") {
		t.Fatalf("want a *sources.MissingScopeError for surveys.readonly, got %v", err)
	}
	if r, m := b.tokens.refreshes.Load(), b.tokens.mints.Load(); r != 0 || m != 1 {
		t.Fatalf("a scope error must not refresh or re-mint: refreshes %d mints %d", r, m)
	}
}

func TestDecodeSubmissionsPage(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	body := `{"submissions":[` +
		`{"id":"s1","contactId":"c1","createdAt":"2026-01-05T10:00:00.000Z","formId":"f1","name":"Ann Lee","email":"ann@example.com",` +
		`"others":{"message":"Call me","phone":"+15551234567","Rk4Lq1xT9mWcV2bN8sPa":"Website","eventData":{"source":"Paid Search",` +
		`"medium":"form","campaign":"Spring Promo","gclid":"Cj0top","referrer":"https://www.google.com/","parentId":"f1","parentName":"Contact Us",` +
		`"page":{"url":"https://example.com/contact?utm_source=ignored","title":"Contact"},` +
		`"url_params":{"utm_source":"google","utm_medium":"cpc","utm_campaign":"spring_promo","utm_term":"plumber","utm_content":"ad1","gclid":"Cj0param","fbclid":"IwARparam"}}}},` +
		`{"contactId":"c2","email":"bob@example.com"},` +
		`"just text",` +
		`{"id":"s4","createdAt":"yesterday","email":"eve@example.com"},` +
		`{"id":5,"createdAt":1767225600000,"phone":5551230000,"others":{"eventData":"{\"source\":\"Paid Social\",\"page\":\"https://example.com/lp?utm_source=facebook&fbclid=IwARq\"}"}},` +
		deep + `],"meta":{"total":6,"currentPage":1,"nextPage":null,"prevPage":null}}`
	acct := sources.Account{ID: "L", HIPAAProtected: true}
	p, err := decodeSubmissionsPage([]byte(body), sources.SubmissionForm, acct, 6)
	if err != nil {
		t.Fatal(err)
	}
	if p.n != 6 || p.total != 6 || p.more || len(p.subs) != 2 || len(p.rejected) != 4 {
		t.Fatalf("n %d total %d more %v, %d submissions, %d rejected", p.n, p.total, p.more, len(p.subs), len(p.rejected))
	}
	s := p.subs[0]
	want := sources.Attribution{Source: "Paid Search", Medium: "form", Campaign: "Spring Promo", UTMSource: "google", UTMMedium: "cpc",
		UTMCampaign: "spring_promo", UTMTerm: "plumber", UTMContent: "ad1", GCLID: "Cj0top", FBCLID: "IwARparam",
		Referrer: "https://www.google.com/", PageURL: "https://example.com/contact?utm_source=ignored"}
	if s.ID != "s1" || s.Kind != sources.SubmissionForm || s.FormID != "f1" || s.FormName != "Contact Us" || s.ContactID != "c1" ||
		s.Name != "Ann Lee" || s.Email != "ann@example.com" || s.Phone != "+15551234567" || !s.HIPAA ||
		!s.SubmittedAt.Equal(time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)) || s.Attribution != want {
		t.Fatalf("submission %+v\nattribution %+v", s, s.Attribution)
	}
	if string(s.Answers) != `{"Rk4Lq1xT9mWcV2bN8sPa":"Website","message":"Call me","phone":"+15551234567"}` {
		t.Fatalf("answers %s", s.Answers)
	}
	if !strings.HasPrefix(string(s.Raw), `{"id":"s1"`) || !strings.HasSuffix(string(s.Raw), `}}}}`) {
		t.Fatalf("raw %s", s.Raw)
	}
	// Tracking stored as text, a page given as its URL, numeric ids and phones.
	s = p.subs[1]
	if s.ID != "5" || s.Phone != "5551230000" || s.Source != "Paid Social" || s.UTMSource != "facebook" || s.FBCLID != "IwARq" ||
		s.PageURL != "https://example.com/lp?utm_source=facebook&fbclid=IwARq" || string(s.Answers) != `{}` ||
		!s.SubmittedAt.Equal(time.UnixMilli(1767225600000)) {
		t.Fatalf("second submission %+v %+v %s", s, s.Attribution, s.Answers)
	}
	for i, w := range []struct{ id, reason string }{{"", "no id"}, {"", "not a JSON object"}, {"s4", "unreadable time"}, {"", sources.TooDeepReason}} {
		r := p.rejected[i]
		if r.ID != w.id || !strings.Contains(r.Reason, w.reason) || strings.Contains(r.Reason, "example.com") || len(r.Raw) == 0 {
			t.Errorf("rejected %d: %v, want %q %q", i, r, w.id, w.reason)
		}
	}
	// Surveys take surveyId; without meta a full page means more.
	p, err = decodeSubmissionsPage([]byte(`{"submissions":[{"id":"v1","surveyId":"sv1","formId":"other"}]}`), sources.SubmissionSurvey, acct, 1)
	if err != nil || !p.more || p.total != -1 || p.subs[0].FormID != "sv1" || p.subs[0].Kind != sources.SubmissionSurvey || p.subs[0].Answers != nil {
		t.Fatalf("survey page: %+v %v", p, err)
	}
	if p, err = decodeSubmissionsPage([]byte(`{"submissions":[{"id":"v1"}],"meta":{"total":"9","nextPage":2}}`), sources.SubmissionSurvey, acct, 100); err != nil || !p.more || p.total != 9 {
		t.Fatalf("nextPage 2 on a short page: %+v %v", p, err)
	}
	if _, err := decodeSubmissionsPage([]byte(`{"message":"ok"}`), sources.SubmissionForm, acct, 100); err == nil {
		t.Fatal("an answer without a submissions array must fail, not end the window")
	}
}

func TestSubmissionCursorRoundTrip(t *testing.T) {
	t.Parallel()
	wm := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	w := &subWindow{from: time.Date(2025, 12, 10, 0, 0, 0, 0, time.UTC), to: time.Date(2026, 1, 9, 0, 0, 0, 0, time.UTC), page: 3, total: 250, listed: t0}
	c := encodeSubCursor(wm, time.Time{}, w)
	if string(c) != `{"watermark":"2026-01-02T03:04:05.678Z","from":"2025-12-10","to":"2026-01-09","page":3,"total":250,"listed":"2026-03-02T12:00:00.000Z"}` {
		t.Fatalf("cursor %s", c)
	}
	p, err := parseSubCursor(c)
	if err != nil || !p.wm.Equal(wm) || p.win == nil || *p.win != *w {
		t.Fatalf("%+v %+v %v", p, p.win, err)
	}
	if c := encodeSubCursor(wm, t0, nil); string(c) != `{"watermark":"2026-01-02T03:04:05.678Z","through":"2026-03-02T12:00:00.000Z"}` {
		t.Fatalf("complete cursor %s", c)
	}
	for _, bad := range []sources.Cursor{"nope", `{"watermark":"yesterday"}`, `{"from":"2026-01-09","to":"2026-01-01"}`, `{"from":"2026-1-9","to":"2026-01-10"}`} {
		if _, err := parseSubCursor(bad); err == nil {
			t.Errorf("cursor %s accepted", bad)
		}
	}
	// Windows: empty ones double up to the cap, halved ones stay short, the last ends on last.
	last := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	x := window(time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC), subWindowDays, last)
	for i, days := range []int{60, 120, 240, 480, 480} {
		if x = x.next(true, last); x.days() != days {
			t.Fatalf("empty window %d: %d days, want %d", i, x.days(), days)
		}
	}
	if x = x.next(false, last); x.days() != subWindowDays {
		t.Fatalf("after a non-empty window: %d days", x.days())
	}
	if y := window(x.from, 7, last).next(false, last); y.days() != 7 {
		t.Fatalf("after a halved window: %d days", y.days())
	}
	if z := window(last.AddDate(0, 0, -3), subWindowDays, last); !z.to.Equal(last) {
		t.Fatalf("the last window ends %s", z.to)
	}
}

// FuzzDecodeSubmissionsPage: whatever the vendor sends, decoding never panics, and a page
// that decodes gives submissions with ids, verbatim JSON and answers that are an object, and
// quarantines the rest verbatim.
func FuzzDecodeSubmissionsPage(f *testing.F) {
	f.Add([]byte(`{"submissions":[{"id":"a","createdAt":"2026-01-01T00:00:00.000Z","others":{"q":1,"eventData":{"url_params":{"utm_source":"g"}}}}],"meta":{"total":1,"nextPage":null}}`))
	f.Add([]byte(`{"submissions":[{"id":null},{"id":"b","others":"{\"eventData\":\"x\"}"},[[[]]],{"id":"c","createdAt":"x"}],"meta":"?"}`))
	acct := sources.Account{Source: sources.LeadConnector, ID: "LOC"}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeSubmissionsPage(body, sources.SubmissionForm, acct, 100)
		if err != nil {
			return
		}
		if len(page.subs)+len(page.rejected) != page.n || len(page.keys) != page.n || (page.more && page.n == 0) {
			t.Fatalf("%d submissions + %d rejected of %d records, %d keys, more %v", len(page.subs), len(page.rejected), page.n, len(page.keys), page.more)
		}
		for _, r := range page.rejected {
			if r.Reason == "" || !bytes.Contains(body, r.Raw) {
				t.Fatalf("rejected %v", r)
			}
		}
		for _, s := range page.subs {
			if s.ID == "" || !json.Valid(s.Raw) || s.Kind != sources.SubmissionForm || (s.Answers != nil && (!json.Valid(s.Answers) || s.Answers[0] != '{')) {
				t.Fatalf("bad submission %+v answers %s", s, s.Answers)
			}
		}
	})
}
