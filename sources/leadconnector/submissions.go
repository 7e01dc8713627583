package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// Form and survey submissions: GET /forms/submissions and GET /surveys/submissions
// (../shared/vendor-docs/leadconnector/forms.json, surveys.json; API-CONTRACTS.md §5.1),
// paged by page number within a date window.
//
// The trap: without startAt the vendor starts "the same date of last month", without endAt
// it ends today, so every request here names both. Dates are whole days, both ends
// inclusive; the vendor names no time zone, so windows are UTC days that overlap by one day
// (a window starts on the day the one before ended), and the last ends tomorrow, for a
// location whose day is ahead of UTC.
//
// A pass walks windows from its start to tomorrow. Windows are subWindowDays long; after a
// sparse window (one page, under a quarter full) the next is twice as long (up to
// subMaxWindowDays), and after one that filled a single page it is as long, so empty years
// and quiet locations cost a few requests; a window listing more than
// subSplitPages pages is halved before it is paged, which keeps page-number paging shallow.
// The order within a window is not documented, so nothing depends on it.
//
// Page-number paging shifts when a submission is added or deleted during a pass: a delete
// on a page already read pulls a record from the next page onto it, unseen. meta.total
// tells: when a later page (or a resumed cursor) reports another total than the window's
// first page did, the window is listed again from page 1 (at most subMaxRestarts times in
// a run; then the pass carries on, and says so in the log).
//
// A complete pass records the newest createdAt seen (watermark) and when its last window
// was listed (through); the next incremental pass starts Lookback before the later of the
// two, a day earlier still for the time zone: a run with nothing new costs one request per
// location and stream. Deleted submissions are noticed only by a full pass.

// Streams of the submissions.
const (
	StreamFormSubmissions   = "form_submissions"
	StreamSurveySubmissions = "survey_submissions"
)

// Submission windows.
const (
	subWindowDays    = 30
	subMaxWindowDays = 16 * subWindowDays
	// subSplitPages is the deepest window paged as it is; a deeper one is halved first.
	subSplitPages  = 50
	subMaxRestarts = 3
)

// subFloor is where a pass starts when neither the configuration's backfill start nor the
// run's Since says: before HighLevel had customers, so an unconfigured backfill misses
// nothing (the empty years cost about ten requests, see above).
var subFloor = time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)

// subStream is one of the two listings.
type subStream struct {
	name, kind, path, endpoint, scope string
}

var subStreams = []subStream{
	{name: StreamFormSubmissions, kind: sources.SubmissionForm, path: "/forms/submissions", endpoint: "forms/submissions", scope: "forms.readonly"},
	{name: StreamSurveySubmissions, kind: sources.SubmissionSurvey, path: "/surveys/submissions", endpoint: "surveys/submissions", scope: "surveys.readonly"},
}

func init() {
	for i, st := range subStreams {
		registerStream(streamDef{Stream: sources.Stream{Name: st.name, Mode: sources.Incremental, Table: sources.TableSubmissions},
			Order: 20 + i, Scope: st.scope,
			read: func(s *Source, ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
				return s.submissions(ctx, st, acct, cur, opts)
			}})
	}
}

// subCursor is the position in a location's submissions of one kind. From, To, Page, Total
// and Listed are the window under way (absent once the pass is complete): its days, the
// next page to read, its meta.total and when its first page was read.
type subCursor struct {
	Watermark string `json:"watermark,omitempty"` // the newest createdAt read, RFC 3339 UTC
	Through   string `json:"through,omitempty"`   // when the last complete pass listed its last window
	From      string `json:"from,omitempty"`      // YYYY-MM-DD
	To        string `json:"to,omitempty"`        // YYYY-MM-DD, inclusive
	Page      int    `json:"page,omitempty"`
	Total     *int   `json:"total,omitempty"`
	Listed    string `json:"listed,omitempty"`
}

// subWindow is a window of days [from, to], both sent, both inclusive.
type subWindow struct {
	from, to time.Time // midnight UTC
	page     int
	total    int // meta.total of its first page; -1 not known
	listed   time.Time
}

// days is how far the window reaches past its first day.
func (w subWindow) days() int { return int(w.to.Sub(w.from).Hours() / 24) }

// subPos is a parsed cursor; win is nil when no pass is under way.
type subPos struct {
	wm, through time.Time
	win         *subWindow
}

func utcDay(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

func parseSubCursor(c sources.Cursor) (subPos, error) {
	if c == "" {
		return subPos{}, nil
	}
	var sc subCursor
	if err := json.Unmarshal([]byte(c), &sc); err != nil {
		return subPos{}, fmt.Errorf("leadconnector: unreadable submissions cursor: %w", err)
	}
	var p subPos
	var err error
	stamp := func(s string, t *time.Time) {
		if s != "" && err == nil {
			*t, err = time.Parse(time.RFC3339Nano, s)
		}
	}
	stamp(sc.Watermark, &p.wm)
	stamp(sc.Through, &p.through)
	if sc.From != "" {
		w := subWindow{page: max(sc.Page, 1), total: -1}
		if sc.Total != nil {
			w.total = *sc.Total
		}
		if w.from, err = time.Parse(time.DateOnly, sc.From); err == nil {
			w.to, err = time.Parse(time.DateOnly, sc.To)
		}
		stamp(sc.Listed, &w.listed)
		if err == nil && w.to.Before(w.from) {
			err = errors.New("window ends before it starts")
		}
		p.win = &w
	}
	if err != nil {
		return subPos{}, fmt.Errorf("leadconnector: submissions cursor: %w", err)
	}
	p.wm, p.through = p.wm.UTC(), p.through.UTC()
	return p, nil
}

func encodeSubCursor(wm, through time.Time, w *subWindow) sources.Cursor {
	var c subCursor
	if !wm.IsZero() {
		c.Watermark = wm.UTC().Format(isoMillis)
	}
	if !through.IsZero() {
		c.Through = through.UTC().Format(isoMillis)
	}
	if w != nil {
		c.From, c.To, c.Page = w.from.Format(time.DateOnly), w.to.Format(time.DateOnly), w.page
		if w.total >= 0 && w.page > 1 {
			c.Total = &w.total
		}
		if !w.listed.IsZero() && w.page > 1 {
			c.Listed = w.listed.UTC().Format(isoMillis)
		}
	}
	b, _ := json.Marshal(c) // strings and numbers only
	return sources.Cursor(b)
}

// window is the window of n days from from, ending on last at the latest.
func window(from time.Time, n int, last time.Time) *subWindow {
	w := &subWindow{from: from, to: from.AddDate(0, 0, n), page: 1, total: -1}
	if w.to.After(last) {
		w.to = last
	}
	if w.to.Before(w.from) {
		w.to = w.from
	}
	return w
}

// next is the window after w, starting on w's last day: twice as long after an empty one,
// as short as w after a halved one, else subWindowDays.
func (w *subWindow) next(empty bool, last time.Time) *subWindow {
	n := subWindowDays
	switch d := max(w.days(), 1); {
	case empty:
		n = min(2*d, subMaxWindowDays)
	case d < subWindowDays:
		n = d
	}
	return window(w.to, n, last)
}

// submissions pages one kind of a location's submissions window by window (see above).
// A 403 ends the sequence with a *sources.RestrictedError, a grant without the stream's
// scope with a *sources.MissingScopeError.
func (s *Source) submissions(ctx context.Context, st subStream, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if acct.ID == "" {
			yield(sources.Page{}, errors.New("leadconnector: submissions of an account without id"))
			return
		}
		pos, err := parseSubCursor(cur)
		if err != nil {
			yield(sources.Page{}, err)
			return
		}
		now := s.cfg.Clock()
		last := utcDay(now).AddDate(0, 0, 1)
		start := s.cfg.BackfillStart
		if !opts.Since.IsZero() && (opts.Full || cur == "") {
			start = opts.Since
		}
		if start.IsZero() {
			start = subFloor
		}
		if opts.Full || cur == "" {
			pos = subPos{}
		}
		win := pos.win
		if win == nil {
			from := start
			if seen := later(pos.wm, pos.through); !seen.IsZero() {
				if f := seen.Add(-s.cfg.Lookback).AddDate(0, 0, -1); f.After(start) {
					from = f
				}
			}
			win = window(utcDay(from), subWindowDays, last)
		}
		wm := pos.wm
		creds := s.tokens.Account(acct.ID, s.minter(acct.ID))
		what := func() string {
			return fmt.Sprintf("leadconnector: %s for location %s, %s to %s", st.endpoint, acct.ID,
				win.from.Format(time.DateOnly), win.to.Format(time.DateOnly))
		}
		guard := sources.PageGuard{What: what(), Max: s.cfg.MaxPages}
		restarts := 0
		for {
			asked := s.cfg.Clock()
			page, err := s.submissionPage(ctx, st, acct, creds, *win)
			if err != nil {
				yield(sources.Page{}, s.streamError(acct, st.name, err, st.endpoint))
				return
			}
			if win.page == 1 {
				// The smallest window reaches one day past its first, or the next (which
				// starts on its last day) would not move on.
				if win.days() >= 2 && page.total > subSplitPages*s.cfg.PageSize {
					win = window(win.from, win.days()/2, last)
					continue
				}
				win.total, win.listed = page.total, asked
				guard = sources.PageGuard{What: what(), Max: s.cfg.MaxPages}
			} else if page.total >= 0 && win.total >= 0 && page.total != win.total {
				if restarts < subMaxRestarts {
					// Added or deleted since the first page: the pages shifted.
					restarts++
					win.page, win.total = 1, -1
					continue
				}
				s.cfg.Logger.WarnContext(ctx, "leadconnector: submissions kept changing while paged; carrying on",
					slog.String("location", acct.ID), slog.String("stream", st.name),
					slog.String("from", win.from.Format(time.DateOnly)), slog.String("to", win.to.Format(time.DateOnly)))
				win.total = page.total
			}
			if err := guard.Check("", page.keys); err != nil {
				yield(sources.Page{}, err)
				return
			}
			// A createdAt in the future (a bad record) must not carry the watermark past
			// submissions still to come.
			horizon := s.cfg.Clock().Add(time.Hour)
			for _, sub := range page.subs {
				if sub.SubmittedAt.After(wm) && !sub.SubmittedAt.After(horizon) {
					wm = sub.SubmittedAt
				}
			}
			for _, r := range page.rejected {
				s.cfg.Logger.WarnContext(ctx, "leadconnector: quarantined a submission", slog.String("location", acct.ID),
					slog.String("stream", st.name), slog.Any("rejected", r))
			}
			var next sources.Cursor
			complete := false
			switch {
			case page.more:
				win.page++
				next = encodeSubCursor(wm, time.Time{}, win)
			case !win.to.Before(last):
				complete = true
				next = encodeSubCursor(wm, win.listed, nil)
			default:
				switch onePage := win.page == 1; {
				case onePage && 4*page.n < s.cfg.PageSize:
					// Sparse (or empty): a longer window costs no more pages.
					win = win.next(true, last)
				case onePage && win.days() > subWindowDays:
					win = window(win.to, win.days(), last) // it fit a page: keep its length
				default:
					win = win.next(false, last)
				}
				restarts = 0
				next = encodeSubCursor(wm, time.Time{}, win)
			}
			if !yield(sources.Page{Submissions: page.subs, Rejected: page.rejected, Next: next}, nil) || complete {
				return
			}
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// submissionPage gets one page of a window.
func (s *Source) submissionPage(ctx context.Context, st subStream, acct sources.Account, creds sources.Credentials, w subWindow) (subPage, error) {
	q := url.Values{"locationId": {acct.ID}, "page": {strconv.Itoa(w.page)}, "limit": {strconv.Itoa(s.cfg.PageSize)},
		"startAt": {w.from.Format(time.DateOnly)}, "endAt": {w.to.Format(time.DateOnly)}}
	var page subPage // a malformed body is retried by httpx
	err := s.locationGet(ctx, acct, creds, st.path, st.endpoint, q, func(body []byte) (err error) {
		page, err = decodeSubmissionsPage(body, st.kind, acct, s.cfg.PageSize)
		return err
	})
	return page, err
}

// subPage is a decoded listing page: its submissions and quarantined records, how many
// records it held and their PageGuard keys, meta.total (-1 when absent), and whether the
// vendor has a next page.
type subPage struct {
	subs     []sources.Submission
	rejected []sources.Rejected
	n        int
	keys     []string
	total    int
	more     bool
}

// decodeSubmissionsPage maps a listing page, quarantining the records that cannot be a
// submission. A next page is meta.nextPage when the vendor sends it, else a full page;
// never after an empty one.
func decodeSubmissionsPage(body []byte, kind string, acct sources.Account, limit int) (subPage, error) {
	env, recs, found, err := sources.SplitRecords(body, "submissions")
	if err != nil {
		return subPage{}, fmt.Errorf("decode submissions page: %w", err)
	}
	if !found {
		// Not an empty window: an answer we do not understand must not skip one.
		return subPage{}, errors.New("decode submissions page: no submissions array")
	}
	var e struct {
		Meta map[string]json.RawMessage `json:"meta"`
	}
	_ = json.Unmarshal(env, &e) // a meta of another shape counts as absent
	p := subPage{n: len(recs), total: -1, more: len(recs) >= limit}
	if n, ok := number(e.Meta["total"]); ok {
		p.total = n
	}
	if raw, ok := e.Meta["nextPage"]; ok {
		n, isNum := number(raw)
		p.more = isNum && n > 0
	}
	if len(recs) == 0 {
		p.more = false
	}
	for _, r := range recs {
		sub, reason := decodeSubmission(r, kind, acct)
		p.keys = append(p.keys, r.Key(sub.ID))
		if reason != "" {
			p.rejected = append(p.rejected, r.Reject(sub.ID, reason))
			continue
		}
		p.subs = append(p.subs, sub)
	}
	return p, nil
}

// number reads a JSON number (or a numeric string) as an int.
func number(raw json.RawMessage) (int, bool) {
	var s flexString
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(s)), 64)
	if err != nil {
		return 0, false
	}
	return int(f), true
}

// submissionJSON is what the source reads of a submission (FormsSubmissionsSubmissionsSchema,
// SubmissionSchema); Raw keeps the whole of it.
type submissionJSON struct {
	ID        flexString      `json:"id"`
	ContactID flexString      `json:"contactId"`
	CreatedAt flexTime        `json:"createdAt"`
	FormID    flexString      `json:"formId"`
	SurveyID  flexString      `json:"surveyId"`
	Name      flexString      `json:"name"`
	Email     flexString      `json:"email"`
	Phone     flexString      `json:"phone"`
	Others    json.RawMessage `json:"others"`
}

// decodeSubmission maps one record, or says why it cannot (a reason without PII).
func decodeSubmission(r sources.Record, kind string, acct sources.Account) (sources.Submission, string) {
	switch {
	case r.TooDeep():
		return sources.Submission{}, sources.TooDeepReason
	case len(r.Raw) == 0 || r.Raw[0] != '{':
		return sources.Submission{}, "not a JSON object"
	}
	var j submissionJSON
	if err := json.Unmarshal(r.Raw, &j); err != nil {
		var id struct {
			ID flexString `json:"id"`
		}
		_ = json.Unmarshal(r.Raw, &id)
		return sources.Submission{ID: string(id.ID)}, sources.DecodeReason(err)
	}
	if strings.TrimSpace(string(j.ID)) == "" {
		return sources.Submission{}, "no id"
	}
	others := objectOf(j.Others)
	ev := objectOf(others["eventData"])
	delete(others, "eventData")
	sub := sources.Submission{
		ID: string(j.ID), Kind: kind, ContactID: string(j.ContactID),
		Name: string(j.Name), Email: string(j.Email), Phone: firstNonEmpty(j.Phone, str(others, "phone")),
		FormID:      firstNonEmpty(j.FormID, j.SurveyID, str(ev, "parentId")),
		FormName:    string(str(ev, "parentName")),
		Attribution: attributionOf(ev),
		SubmittedAt: time.Time(j.CreatedAt).UTC(),
		Raw:         r.Raw,
		HIPAA:       acct.HIPAAProtected,
	}
	if kind == sources.SubmissionSurvey {
		sub.FormID = firstNonEmpty(j.SurveyID, j.FormID, str(ev, "parentId"))
	}
	if others != nil {
		sub.Answers, _ = json.Marshal(others) // values are valid JSON already
	}
	return sub, ""
}

// attributionOf promotes the tracking of a submission's eventData: the vendor's source,
// medium and campaign, the utm_* values and click ids of url_params (else of the page URL's
// query), the referrer and the page URL.
func attributionOf(ev map[string]json.RawMessage) sources.Attribution {
	page := objectOf(ev["page"])
	pageURL := string(str(page, "url"))
	if pageURL == "" {
		pageURL = string(str(ev, "page")) // a page given as its URL
	}
	params := objectOf(ev["url_params"])
	if params == nil {
		params = objectOf(ev["urlParams"])
	}
	if params == nil {
		if u, err := url.Parse(pageURL); err == nil && u.RawQuery != "" {
			params = map[string]json.RawMessage{}
			for k, v := range u.Query() {
				params[strings.ToLower(k)] = mustJSON(v[0])
			}
		}
	}
	return sources.Attribution{
		Source: string(str(ev, "source")), Medium: string(str(ev, "medium")), Campaign: string(str(ev, "campaign")),
		UTMSource: string(str(params, "utm_source")), UTMMedium: string(str(params, "utm_medium")),
		UTMCampaign: string(str(params, "utm_campaign")), UTMTerm: string(str(params, "utm_term")),
		UTMContent: string(str(params, "utm_content")),
		GCLID:      firstNonEmpty(str(ev, "gclid"), str(params, "gclid")),
		FBCLID:     firstNonEmpty(str(ev, "fbclid"), str(params, "fbclid")),
		Referrer:   string(str(ev, "referrer")),
		PageURL:    pageURL,
	}
}

// objectOf reads a JSON object, or a JSON string holding one (the vendor stores some
// tracking as text); anything else is nil.
func objectOf(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(raw) == 0 {
		return nil
	}
	if json.Unmarshal(raw, &m) == nil {
		return m
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && json.Unmarshal([]byte(s), &m) == nil {
		return m
	}
	return nil
}

// str reads member key of m as text (exact name first, then any case); anything but a
// scalar is "".
func str(m map[string]json.RawMessage, key string) flexString {
	raw, ok := m[key]
	if !ok {
		for k, v := range m {
			if strings.EqualFold(k, key) {
				raw, ok = v, true
				break
			}
		}
	}
	var s flexString
	if !ok || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return flexString(strings.TrimSpace(string(s)))
}
