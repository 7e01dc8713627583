// Package localiq syncs LocaliQ contact interactions (calls, forms, emails, chats) as leads
// (stream "interactions"), the lead_detail report's daily counts (stream "daily_counts"), and
// the campaigns_overview report's campaign cycles with their spend (stream "campaign_cycles").
//
// Accounts are the advertisers (GMAIDs) the business user may see (/identities/v3). The
// interactions API filters by creation date only, so an account is read in date windows
// from a cursor, and every incremental run re-reads the last few days (the vendor's own
// recommendation) to catch late arrivals; a pass dedupes on the interaction id. Lead
// endpoints answer 403 for HIPAA-protected advertisers unless the user has the Agency
// Customer role: that becomes a *sources.RestrictedError of the interactions stream
// only, and the PII-free reports still yield the account's daily counts and campaign cycles.
package localiq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Defaults for the zero values of Config.
const (
	DefaultBaseURL   = "https://api.localiqservices.com"
	DefaultReRead    = 3 * 24 * time.Hour
	DefaultWindow    = 30 * 24 * time.Hour
	DefaultBackfill  = 2 * 365 * 24 * time.Hour // before today, when BackfillStart is zero
	DefaultRateLimit = 20                       // requests per second per client, the vendor's limit
	// DefaultAccountsPageSize is the identities page size we ask for (the vendor's default is 5000).
	DefaultAccountsPageSize = 1000
	// rateHeadroom keeps the proactive limit just under the vendor's fixed one-second
	// windows, so network jitter rarely packs 21 requests into one window.
	rateHeadroom = 0.98
	// maxReportDays is the longest lead_detail range asked in one request.
	maxReportDays = 366
	// CountDays is how far back the daily_counts stream reads on its first run (or a full
	// pass): the lead_detail report's counts of the last 90 days.
	CountDays = 90
)

// Streams the source offers, in sync order.
const (
	// StreamInteractions are the advertiser's calls, forms, emails and chats (leads, with
	// PII; 403 for HIPAA-restricted advertisers).
	StreamInteractions = "interactions"
	// StreamDailyCounts are the lead_detail report's PII-free counts per day and kind,
	// which LocaliQ serves even for HIPAA-restricted advertisers.
	StreamDailyCounts = "daily_counts"
)

// Config is one LocaliQ connection. Zero values mean the defaults.
type Config struct {
	BaseURL  string // default https://api.localiqservices.com
	AuthURL  string // default BaseURL + /oauth/authorize
	TokenURL string // default BaseURL + /oauth/token

	ClientID     string
	ClientSecret string
	// User is the business user's email, whose advertisers the identities call lists.
	User string

	// BackfillStart is where an empty cursor starts; zero: two years before today.
	BackfillStart time.Time
	// ReRead is how far back each incremental run re-reads; default 3 days (whole days).
	ReRead time.Duration
	// Window is the date range of one request window; default 30 days (whole days, >= 1).
	Window time.Duration
	// RateLimit is the client's requests per second; default 20.
	RateLimit float64
	// AccountsPageSize is the identities page size; default 1000.
	AccountsPageSize int
	// MaxPages is the page budget of the advertisers listing and of each date window of
	// interactions; default sources.DefaultMaxPages.
	MaxPages int

	// HTTPClient overrides the HTTP client (tests, proxies).
	HTTPClient *http.Client
	Logger     *slog.Logger // nil: slog.Default()
}

func (c Config) withDefaults() Config {
	c.BaseURL = strings.TrimRight(cmp.Or(c.BaseURL, DefaultBaseURL), "/")
	c.AuthURL = cmp.Or(c.AuthURL, c.BaseURL+"/oauth/authorize")
	c.TokenURL = cmp.Or(c.TokenURL, c.BaseURL+"/oauth/token")
	c.ReRead = cmp.Or(c.ReRead, DefaultReRead)
	c.Window = cmp.Or(c.Window, DefaultWindow)
	c.RateLimit = cmp.Or(c.RateLimit, DefaultRateLimit)
	c.AccountsPageSize = cmp.Or(c.AccountsPageSize, DefaultAccountsPageSize)
	return c
}

// Option tunes a Source.
type Option func(*Source)

// WithClock sets the clock deciding "today" (tests).
func WithClock(now func() time.Time) Option { return func(s *Source) { s.now = now } }

// WithHTTPX lets the caller adjust the HTTP layer (observer, logger, sleep, attempts) after
// the source has set it up.
func WithHTTPX(f func(*httpx.Config)) Option {
	return func(s *Source) { s.httpx = append(s.httpx, f) }
}

// Source is a LocaliQ connection. Safe for concurrent use.
type Source struct {
	cfg    Config
	tokens sources.Tokens
	client *httpx.Client
	now    func() time.Time
	log    *slog.Logger
	httpx  []func(*httpx.Config)
}

var _ sources.Source = (*Source)(nil)

// New returns a Source using tokens.Grant() for every call.
func New(cfg Config, tokens sources.Tokens, opts ...Option) (*Source, error) {
	cfg = cfg.withDefaults()
	switch {
	case tokens == nil:
		return nil, errors.New("localiq: no token source")
	case strings.TrimSpace(cfg.User) == "":
		return nil, errors.New("localiq: user (the business user's email) is required")
	case cfg.ReRead < 0 || cfg.Window < 0 || cfg.RateLimit < 0 || cfg.AccountsPageSize < 0 || cfg.MaxPages < 0:
		return nil, errors.New("localiq: reread, window, rate_limit, accounts_page_size and max_pages must not be negative")
	}
	s := &Source{cfg: cfg, tokens: tokens, now: time.Now, log: cmp.Or(cfg.Logger, slog.Default())}
	for _, o := range opts {
		o(s)
	}
	limit := rate.Limit(cfg.RateLimit * rateHeadroom)
	hc := httpx.Config{
		Vendor:  sources.LocaliQ,
		BaseURL: cfg.BaseURL,
		HTTP:    cfg.HTTPClient,
		Limit: func(string) (rate.Limit, int) {
			return limit, 1 // every bucket is the one per-client limit
		},
		// The vendor throttles in fixed one-second windows and sends no Retry-After.
		Wait429: func(_ http.Header, now time.Time) time.Duration {
			return now.Truncate(time.Second).Add(time.Second).Sub(now)
		},
		Clock:  s.now,
		Logger: s.log,
	}
	for _, f := range s.httpx {
		f(&hc)
	}
	s.client = httpx.New(hc)
	return s, nil
}

// Name is sources.LocaliQ.
func (s *Source) Name() string { return sources.LocaliQ }

// Accounts lists the business user's advertisers, page by page.
func (s *Source) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		seen := map[string]bool{}
		size := s.cfg.AccountsPageSize
		guard := sources.PageGuard{What: "localiq: list advertisers (identities/v3)", Max: s.cfg.MaxPages}
		for page := 1; ; page++ {
			var (
				p    identitiesPage
				keys []string
				bad  []int
			)
			_, err := s.client.Decode(ctx, httpx.Request{
				Path: "/identities/v3", Endpoint: "identities/v3", Bucket: "client", Auth: s.tokens.Grant(),
				Query: map[string][]string{"user": {s.cfg.User}, "page": {strconv.Itoa(page)}, "page_size": {strconv.Itoa(size)}},
			}, func(body []byte) (err error) {
				p, keys, bad, err = decodeIdentities(body)
				return err
			})
			if err != nil {
				yield(sources.Account{}, fmt.Errorf("localiq: list advertisers (page %d): %w", page, err))
				return
			}
			for _, i := range bad {
				s.log.WarnContext(ctx, "localiq: skipping an identities entry that is not an advertiser",
					slog.Int("page", page), slog.Int("index", i))
			}
			if err := guard.Check("", keys); err != nil {
				yield(sources.Account{}, err)
				return
			}
			for _, a := range p.Advertisers {
				acct, ok := a.account()
				if !ok || seen[acct.ID] {
					continue
				}
				seen[acct.ID] = true
				if !yield(acct, nil) {
					return
				}
			}
			if len(keys) < size || (p.AdvertiserCount > 0 && page*size >= int(p.AdvertiserCount)) {
				return
			}
		}
	}
}

// cursor is the resumable position in an account's interactions. At a window boundary only
// NextDate is set; mid-window it holds the window and the next page to read.
type cursor struct {
	NextDate  string `json:"next_date"`
	Page      int    `json:"page,omitempty"`
	WindowEnd string `json:"window_end,omitempty"`
}

const dateLayout = "2006-01-02"

func parseCursor(c sources.Cursor) (cur cursor, next, end time.Time, err error) {
	if c == "" {
		return cur, next, end, nil
	}
	if err := json.Unmarshal([]byte(c), &cur); err != nil {
		return cur, next, end, fmt.Errorf("bad cursor: %w", err)
	}
	if next, err = time.Parse(dateLayout, cur.NextDate); err != nil {
		return cur, next, end, fmt.Errorf("bad cursor next_date: %w", err)
	}
	if cur.WindowEnd != "" {
		if end, err = time.Parse(dateLayout, cur.WindowEnd); err != nil {
			return cur, next, end, fmt.Errorf("bad cursor window_end: %w", err)
		}
	}
	return cur, next, end, nil
}

func (c cursor) encode() sources.Cursor {
	b, _ := json.Marshal(c)
	return sources.Cursor(b)
}

func date(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func days(d time.Duration) int { return max(1, int((d+24*time.Hour-1)/(24*time.Hour))) }

// Streams implements sources.Source. Interactions soft-deletes what a full pass misses
// (LocaliQ deletes nothing that we know of), daily_counts overwrites the days it reads, and
// campaign_cycles reads its one report whole every run (campaigns.go).
func (s *Source) Streams() []sources.Stream {
	return []sources.Stream{
		{Name: StreamInteractions, Mode: sources.Incremental, Table: sources.TableLeads},
		{Name: StreamDailyCounts, Mode: sources.Incremental, Table: sources.TableDailyCounts},
		{Name: StreamCampaignCycles, Mode: sources.FullRefresh, Table: sources.TableCampaignCycles},
	}
}

// Read implements sources.Source.
func (s *Source) Read(ctx context.Context, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	switch stream {
	case StreamInteractions:
		return s.interactionPages(ctx, acct, cur, opts)
	case StreamDailyCounts:
		return s.countPages(ctx, acct, cur, opts)
	case StreamCampaignCycles:
		return s.cyclePages(ctx, acct)
	}
	return func(yield func(sources.Page, error) bool) {
		yield(sources.Page{}, fmt.Errorf("localiq: no stream %q", stream))
	}
}

// countPages reads the daily counts from the cursor's day, less ReRead (counts of recent
// days still grow), or the last CountDays on a first run or a full pass, up to today (UTC):
// one Page per lead_detail request. Its cursor is the day after the last one read.
func (s *Source) countPages(ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		_, next, _, err := parseCursor(cur)
		if err != nil {
			yield(sources.Page{}, fmt.Errorf("localiq: account %s: daily counts: %w", acct.ID, err))
			return
		}
		end := date(s.now()).AddDate(0, 0, 1) // exclusive: today included
		start := end.AddDate(0, 0, -CountDays)
		if !opts.Full && !next.IsZero() {
			start = maxTime(start, next.AddDate(0, 0, -days(s.cfg.ReRead)))
		}
		for start.Before(end) {
			to := minTime(start.AddDate(0, 0, maxReportDays), end)
			counts, err := s.DailyCounts(ctx, acct, start, to)
			if err != nil {
				yield(sources.Page{}, err)
				return
			}
			if !yield(sources.Page{Counts: counts, Next: cursor{NextDate: to.Format(dateLayout)}.encode()}, nil) {
				return
			}
			start = to
		}
	}
}

// interactionPages reads the account's interactions in date windows from cur up to tomorrow
// (UTC), one Page per API page. An incremental run starts ReRead before the cursor; a cursor
// left mid-window resumes at its page. A 403 ends the sequence with a
// *sources.RestrictedError.
func (s *Source) interactionPages(ctx context.Context, acct sources.Account, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		c, next, winEnd, err := parseCursor(cur)
		if err != nil {
			yield(sources.Page{}, fmt.Errorf("localiq: account %s: %w", acct.ID, err))
			return
		}
		// The vendor filters by the creation date in the advertiser's time zone, which the
		// listing does not give, while our dates are UTC: the window reaches a day further on
		// both sides, so that it holds every lead of its first and last UTC day whatever the
		// zone (UTC-12 to UTC+14). A lead read twice is deduped by the sink's upsert; one
		// missed by a full pass would be soft-deleted.
		end := date(s.now()).AddDate(0, 0, 2) // created_before_date is exclusive: tomorrow included
		backfill := date(cmp.Or(opts.Since, s.cfg.BackfillStart, s.now().Add(-DefaultBackfill))).AddDate(0, 0, -1)
		start, page := backfill, 1
		switch {
		case opts.Full || cur == "":
			winEnd = time.Time{}
		case c.Page > 1 && !winEnd.IsZero():
			start, page = next, c.Page
		default:
			// Re-read the last days before where the previous run stopped, but not before the
			// backfill start unless the cursor itself is earlier. The cursor stands a day past
			// the last UTC day read (see end), so the re-read reaches one day further back.
			start = next.AddDate(0, 0, -days(s.cfg.ReRead)-1)
			start = maxTime(start, minTime(backfill, next))
			winEnd = time.Time{}
		}
		seen := map[string]bool{}
		for start.Before(end) {
			if winEnd.IsZero() {
				winEnd = minTime(start.AddDate(0, 0, days(s.cfg.Window)), end)
			}
			guard := sources.PageGuard{Max: s.cfg.MaxPages,
				What: fmt.Sprintf("localiq: account %s: interactions %s..%s", acct.ID, start.Format(dateLayout), winEnd.Format(dateLayout))}
			for ; ; page++ {
				p, err := s.interactions(ctx, acct, start, winEnd, page)
				if err != nil {
					yield(sources.Page{}, err)
					return
				}
				out := sources.Page{Leads: make([]sources.Lead, 0, len(p.Items))}
				keys := make([]string, 0, len(p.Items))
				for i, rec := range p.Items {
					l, keep, err := toLead(acct, rec)
					keys = append(keys, rec.Key(l.ID))
					if err != nil {
						r := rec.Reject(l.ID, err.Error())
						s.log.WarnContext(ctx, "localiq: quarantined an interaction", slog.String("account", acct.ID),
							slog.Int("page", page), slog.Int("item", i), slog.Any("rejected", r))
						out.Rejected = append(out.Rejected, r)
						continue
					}
					if !keep || seen[l.ID] {
						continue
					}
					seen[l.ID] = true
					if l.CreatedAt.IsZero() {
						s.log.WarnContext(ctx, "localiq: interaction without a readable created_at",
							slog.String("account", acct.ID), slog.String("lead", l.ID))
					}
					out.Leads = append(out.Leads, l)
				}
				if err := guard.Check("", keys); err != nil {
					yield(sources.Page{}, err)
					return
				}
				more := p.More()
				if more {
					out.Next = cursor{NextDate: start.Format(dateLayout), Page: page + 1, WindowEnd: winEnd.Format(dateLayout)}.encode()
				} else {
					out.Next = cursor{NextDate: winEnd.Format(dateLayout)}.encode()
				}
				if !yield(out, nil) {
					return
				}
				if !more {
					break
				}
			}
			start, page, winEnd = winEnd, 1, time.Time{}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// interactions reads one page of one window. The page number is ours, not the vendor's
// next_page_location: the bearer token only ever goes to the configured host.
func (s *Source) interactions(ctx context.Context, acct sources.Account, from, to time.Time, page int) (interactionsPage, error) {
	var p interactionsPage
	_, err := s.client.Decode(ctx, httpx.Request{
		Path: "/crm/contact_interactions", Endpoint: "crm/contact_interactions", Bucket: "client", Auth: s.tokens.Grant(),
		Query: map[string][]string{
			"global_master_advertiser_id": {acct.ID},
			"created_after_date":          {from.Format(dateLayout)},
			"created_before_date":         {to.Format(dateLayout)},
			"page":                        {strconv.Itoa(page)},
		},
	}, func(body []byte) (err error) {
		p, err = decodeInteractionsPage(body)
		return err
	})
	if err != nil {
		what := fmt.Sprintf("localiq: account %s: interactions %s..%s page %d", acct.ID, from.Format(dateLayout), to.Format(dateLayout), page)
		return interactionsPage{}, s.restricted(acct, StreamInteractions, what, err)
	}
	return p, nil
}

// restricted turns a 403 into a *sources.RestrictedError; the listing's hipaa_protected
// says whether it is a HIPAA restriction or another one (inactive, not linked).
func (s *Source) restricted(acct sources.Account, stream, what string, err error) error {
	var he *httpx.Error
	if errors.As(err, &he) && he.Status == http.StatusForbidden {
		r := &sources.RestrictedError{Vendor: sources.LocaliQ, AccountID: acct.ID, Stream: stream,
			HIPAA: acct.HIPAAProtected, Message: he.Message}
		if stream == StreamInteractions {
			r.Fields = sources.PIIFields
		}
		return r
	}
	return fmt.Errorf("%s: %w", what, err)
}

// DailyCounts reads the PII-free lead_detail report for the days that intersect [from, to):
// calls, emails, web forms and chats per day (the advertiser's report time zone). It is not
// HIPAA-gated, so it works for restricted accounts. The daily_counts stream pages it.
func (s *Source) DailyCounts(ctx context.Context, acct sources.Account, from, to time.Time) ([]sources.DailyCount, error) {
	first := date(from)
	last := date(to.Add(-time.Nanosecond))
	var out []sources.DailyCount
	for start := first; !start.After(last); start = start.AddDate(0, 0, maxReportDays) {
		end := minTime(start.AddDate(0, 0, maxReportDays-1), last)
		var body json.RawMessage
		err := s.client.JSON(ctx, httpx.Request{
			Path:     "/client_reports/lead_detail/" + url.PathEscape(acct.ID),
			Endpoint: "client_reports/lead_detail", Bucket: "client", Auth: s.tokens.Grant(),
			Query: map[string][]string{"start_date": {start.Format(dateLayout)}, "end_date": {end.Format(dateLayout)}},
		}, &body)
		what := fmt.Sprintf("localiq: account %s: lead_detail %s..%s", acct.ID, start.Format(dateLayout), end.Format(dateLayout))
		if err != nil {
			return nil, s.restricted(acct, StreamDailyCounts, what, err)
		}
		counts, err := decodeLeadDetail(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, counts...)
	}
	return out, nil
}
