// Package lacrm is the Less Annoying CRM source. One grant sees one LACRM account (the
// authorized user's company). Its streams, in sync order: "contacts" (leads of Kind
// "contact", companies excluded, the Lead Source as channel), "pipelines" and
// "custom_fields" (crm_dictionary: the synced pipelines with their statuses, and the
// contacts' and pipelines' custom-field definitions; see dictionary.go), and
// "pipeline_items" (deals: every synced pipeline's items; see deals.go). The dictionaries
// come before the deals whose ids they explain.
//
// LACRM has no modified-since filter, so each listing (the contacts, each pipeline's items)
// is read newest first (SortBy LastUpdate, Descending) until a record is older than the
// listing's watermark minus Lookback. Because the newest records come first, the watermark may
// only move when a pass completes; see cursor.go.
//
// A full pass (whose misses the worker soft-deletes) pages by DateCreated ascending instead.
// Page-number paging over LastUpdate skips every record edited mid-pass (it jumps to a page
// already read); over DateCreated, which never changes, an edit moves nothing, and a record
// created mid-pass joins the end, which the pass reads last. This is cheaper than re-reading
// LastUpdate pages until they hold nothing edited since the pass began, which under a steady
// stream of edits may never happen. What remains is a record deleted mid-pass from a page
// already read: it pulls the rest one place forward, so the first record of the next page
// can be missed, once per such delete (the API has no keyset paging to avoid it). So the
// source is a sources.Confirmer: what a pass missed is deleted only if a second read misses
// it too.
package lacrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Real endpoints.
const (
	DefaultAuthURL  = "https://account.lessannoyingcrm.com/oauth/authorize.php"
	DefaultTokenURL = "https://script.lessannoyingcrm.com/oauth/token.php"
	DefaultBaseURL  = "https://api.lessannoyingcrm.com/v2/"
)

// Defaults of the zero Config fields.
const (
	// DefaultLookback is what configured connections have always had (the configuration's
	// default was an hour while the source's said 10 min; the one default is here now).
	DefaultLookback = time.Hour
	DefaultPageSize = 500
	MaxPageSize     = 10000
	// DefaultRateLimit stays just under the 120 requests/minute per grant [sandbox]: a token
	// bucket of rate r and burst b sends at most b + 60·r in any minute, and 2 + 117.6 < 120.
	DefaultRateLimit = rate.Limit(1.96)
	DefaultRateBurst = 2
)

// Config is one LACRM connection. Zero values mean the defaults.
type Config struct {
	BaseURL  string // DefaultBaseURL
	AuthURL  string // DefaultAuthURL
	TokenURL string // DefaultTokenURL

	ClientID, ClientSecret string
	// APIKey: tokens.Grant() hands out an API key, sent as the bare Authorization header
	// (no "Bearer"), instead of an OAuth access token.
	APIKey bool

	// AccountID and AccountName name the grant's one account. Empty: from GetUser
	// (AccountId, else UserId; CompanyName).
	AccountID, AccountName string
	// Since is the backfill start for an empty cursor (zero: everything).
	Since time.Time
	// Lookback re-reads this much before the watermark on incremental passes.
	Lookback time.Duration
	// PageSize is MaxNumberOfResults (1..10,000).
	PageSize int
	// MaxPages is the page budget of one stream's pass (default sources.DefaultMaxPages).
	MaxPages int
	// PipelineIDs limits the pipelines synced, by id or name (ignoring case); empty: all,
	// from GetPipelines.
	PipelineIDs []string
	// RateLimit and RateBurst are the proactive per-grant limit.
	RateLimit rate.Limit
	RateBurst int

	HTTP   *http.Client     // nil: httpx's default client
	Clock  func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: slog.Default()
}

func (c Config) withDefaults() Config {
	c.BaseURL = cmpOr(c.BaseURL, DefaultBaseURL)
	c.AuthURL = cmpOr(c.AuthURL, DefaultAuthURL)
	c.TokenURL = cmpOr(c.TokenURL, DefaultTokenURL)
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	return c
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c Config) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	for name, u := range map[string]string{"base_url": c.BaseURL, "auth_url": c.AuthURL, "token_url": c.TokenURL} {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("lacrm: %s %q is not an http(s) URL", name, u)
		}
	}
	switch {
	case c.PageSize < 1 || c.PageSize > MaxPageSize:
		return fmt.Errorf("lacrm: page_size %d is outside 1..%d", c.PageSize, MaxPageSize)
	case c.Lookback < 0:
		return fmt.Errorf("lacrm: lookback %v is negative", c.Lookback)
	case c.MaxPages < 0:
		return fmt.Errorf("lacrm: max_pages %d is negative", c.MaxPages)
	case c.RateLimit < 0 || c.RateBurst < 0:
		return errors.New("lacrm: rate limit and burst must not be negative")
	}
	return nil
}

// Option tunes a Source beyond its Config.
type Option func(*httpx.Config)

// WithHTTPX lets the caller adjust the HTTP layer (observer, sleep, attempts) after the
// source has set it up.
func WithHTTPX(f func(*httpx.Config)) Option { return Option(f) }

// Source implements sources.Source for one LACRM grant.
type Source struct {
	cfg    Config
	tokens sources.Tokens
	http   *httpx.Client
}

var (
	_ sources.Source    = (*Source)(nil)
	_ sources.Confirmer = (*Source)(nil)
)

// New returns the source of one connection; tokens gives the grant's access tokens.
func New(cfg Config, tokens sources.Tokens, opts ...Option) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tokens == nil {
		return nil, errors.New("lacrm: no token source")
	}
	cfg = cfg.withDefaults()
	hc := httpx.Config{
		Vendor:  sources.LACRM,
		BaseURL: cfg.BaseURL,
		HTTP:    cfg.HTTP,
		Clock:   cfg.Clock,
		Logger:  cfg.Logger,
		Limit: func(string) (rate.Limit, int) {
			return cfg.RateLimit, cfg.RateBurst
		},
		// LACRM answers bad or expired credentials with a 400 like any other error.
		AuthFailed: func(status int, body []byte) bool {
			return status == http.StatusUnauthorized ||
				(status == http.StatusBadRequest && strings.Contains(strings.ToLower(string(body)), "invalid credentials"))
		},
	}
	if cfg.APIKey {
		hc.AuthHeader = func(tok *oauth2.Token) string { return tok.AccessToken }
	}
	for _, o := range opts {
		o(&hc)
	}
	return &Source{cfg: cfg, tokens: tokens, http: httpx.New(hc)}, nil
}

// Name is sources.LACRM.
func (s *Source) Name() string { return sources.LACRM }

// call runs one API function; decode reads its answer (a *json.SyntaxError from it is
// retried like a truncated body). The caller's httpx.Stats count its requests.
func (s *Source) call(ctx context.Context, fn string, params map[string]any, decode func(body []byte) error) error {
	body, err := json.Marshal(map[string]any{"Function": fn, "Parameters": params})
	if err != nil {
		return fmt.Errorf("lacrm: %s: %w", fn, err)
	}
	_, err = s.http.Decode(ctx, httpx.Request{
		Method: http.MethodPost, Endpoint: fn, Body: body, ContentType: "application/json",
		Bucket: "grant", Auth: s.tokens.Grant(),
	}, decode)
	return err
}

func into(out any) func([]byte) error {
	return func(b []byte) error { return json.Unmarshal(b, out) }
}

type userJSON struct {
	UserID      flexString `json:"UserId"`
	Email       string     `json:"Email"`
	AccountID   flexString `json:"AccountId"`
	CompanyName string     `json:"CompanyName"`
}

// Accounts yields the grant's one account.
func (s *Source) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		acct := sources.Account{Source: sources.LACRM, ID: s.cfg.AccountID, Name: s.cfg.AccountName, Active: true}
		if acct.ID == "" {
			var u userJSON
			if err := s.call(ctx, "GetUser", map[string]any{}, into(&u)); err != nil {
				yield(sources.Account{}, fmt.Errorf("lacrm: identify the account: %w", err))
				return
			}
			acct.ID = cmpOr(string(u.AccountID), string(u.UserID))
			if acct.ID == "" {
				yield(sources.Account{}, errors.New("lacrm: GetUser returned neither AccountId nor UserId; set account_id"))
				return
			}
			acct.Name = cmpOr(acct.Name, u.CompanyName)
			if u.UserID != "" {
				acct.Meta = map[string]string{"user_id": string(u.UserID)}
			}
		}
		yield(acct, nil)
	}
}

// listing is one vendor listing: the contacts, or one pipeline's items.
type listing struct {
	key    string
	fn     string
	params map[string]any
	decode recordDecoder
}

// Streams the source offers, in sync order.
const (
	StreamContacts      = "contacts"
	StreamPipelines     = "pipelines"
	StreamCustomFields  = "custom_fields"
	StreamPipelineItems = "pipeline_items"
)

// Streams implements sources.Source: the contacts, the dictionaries, then the items of every
// synced pipeline. Contacts and items are incremental (newest first, down to the stream's
// watermark) and soft-delete what a full pass misses; the dictionaries are read whole.
func (s *Source) Streams() []sources.Stream {
	return []sources.Stream{
		{Name: StreamContacts, Mode: sources.Incremental, Table: sources.TableLeads},
		{Name: StreamPipelines, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		{Name: StreamCustomFields, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		{Name: StreamPipelineItems, Mode: sources.Incremental, Table: sources.TableDeals},
	}
}

// Confirm implements sources.Confirmer with a second full read of the stream (one page of
// LastUpdate order per listing would not do: a missed record may be old). A delete during
// the first read can make it miss a live record (see the package comment); to be deleted, a
// record must be missing from both reads. It costs a full read only in the runs whose pass
// missed something.
func (s *Source) Confirm(ctx context.Context, acct sources.Account, stream string, _ []string) iter.Seq2[sources.Page, error] {
	return s.Read(ctx, acct, stream, "", sources.ReadOptions{Full: true})
}

// listings are the vendor listings a stream reads: GetContacts, or GetPipelineItems once per
// synced pipeline. Each pipeline's items are decoded with its statuses (GetPipelines) and
// custom fields (GetCustomFields): one request per pass, and one per pipeline.
func (s *Source) listings(ctx context.Context, acct sources.Account, stream string) ([]listing, error) {
	switch stream {
	case StreamContacts:
		return []listing{{
			key: "contacts", fn: "GetContacts", decode: contactDecoder(acct.ID),
			params: map[string]any{"RecordTypeFilter": "Contacts"},
		}}, nil
	case StreamPipelineItems:
		pipelines, err := s.syncedPipelines(ctx)
		if err != nil {
			return nil, err
		}
		var out []listing
		for _, p := range pipelines {
			fields, rejected, err := s.getCustomFields(ctx, acct, recordPipeline, p.ID)
			if err != nil {
				return nil, err
			}
			if len(rejected) > 0 { // quarantined by the custom_fields stream
				s.cfg.logger().WarnContext(ctx, "lacrm: GetCustomFields: skipping entries that are not fields",
					slog.String("pipeline", p.ID), slog.Int("entries", len(rejected)))
			}
			out = append(out, listing{
				key: "pipeline:" + p.ID, fn: "GetPipelineItems", decode: itemDecoder(acct, pipelineInfo{pipeline: p, fields: fields}),
				params: map[string]any{"PipelineId": p.ID},
			})
		}
		return out, nil
	}
	return nil, fmt.Errorf("lacrm: no stream %q", stream)
}

// Read implements sources.Source. The dictionary streams ignore the cursor: they are read
// whole (dictionary.go).
func (s *Source) Read(ctx context.Context, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	switch stream {
	case StreamPipelines:
		return s.readPipelines(ctx, acct)
	case StreamCustomFields:
		return s.readCustomFields(ctx, acct)
	}
	return s.readListings(ctx, acct, stream, cur, opts)
}

// readListings reads the contacts or the pipeline items: the stream's listings one after
// the other, newest first on incremental passes, oldest created first on full passes (see the
// package comment). The cursor keeps one state per listing, under the keys a cursor of the
// combined stream of earlier versions used, so a cursor written before streams were split
// resumes each stream.
func (s *Source) readListings(ctx context.Context, acct sources.Account, stream string, cur sources.Cursor, opts sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		c, err := parseCursor(cur)
		if err != nil {
			yield(sources.Page{}, err)
			return
		}
		streams, err := s.listings(ctx, acct, stream)
		if err != nil {
			yield(sources.Page{}, err)
			return
		}
		c.keep(streams)
		since := s.cfg.Since
		if !opts.Since.IsZero() {
			since = opts.Since
		}
		last := cur
		for _, st := range streams {
			state := c.Streams[st.key]
			p := state.Pass
			// A full pass left by a version that paged it newest first cannot be resumed in
			// the other order: it starts over.
			if p == nil || p.Full != opts.Full || (p.Full && p.Start.IsZero()) {
				p = &pass{Page: 1, Full: opts.Full}
				if opts.Full {
					p.Start = s.cfg.now().UTC()
				}
			}
			// Leave out records older than floor (zero: read everything). Newest first, the
			// first of them ends the pass.
			floor := since
			if !opts.Full && !state.Watermark.IsZero() {
				floor = state.Watermark.Add(-s.cfg.Lookback)
			}
			sortBy, dir := "LastUpdate", "Descending"
			if p.Full {
				sortBy, dir = "DateCreated", "Ascending"
			}
			guard := sources.PageGuard{What: fmt.Sprintf("lacrm: account %s: %s", acct.ID, st.fn), Max: s.cfg.MaxPages}
			for {
				params := map[string]any{"SortBy": sortBy, "SortDirection": dir,
					"MaxNumberOfResults": s.cfg.PageSize, "Page": p.Page}
				for k, v := range st.params {
					params[k] = v
				}
				var list listPage
				err := s.call(ctx, st.fn, params, func(b []byte) (err error) {
					list, err = decodeList(b)
					return err
				})
				if err != nil {
					yield(sources.Page{}, fmt.Errorf("lacrm: account %s: %s page %d: %w", acct.ID, st.fn, p.Page, err))
					return
				}
				rows, rejected, keys := decodeRecords(list.recs, st.decode)
				if err := guard.Check("", keys); err != nil {
					yield(sources.Page{}, err)
					return
				}
				for _, r := range rejected {
					s.cfg.logger().WarnContext(ctx, "lacrm: quarantined a record", slog.String("account", acct.ID),
						slog.String("function", st.fn), slog.Int("page", p.Page), slog.Any("rejected", r))
				}
				done := !list.more || len(list.recs) == 0
				var page sources.Page
				for _, r := range rows {
					if r.updated.After(p.High) {
						p.High = r.updated
					}
					if !floor.IsZero() && r.updated.Before(floor) {
						done = done || !p.Full // newest first, the rest of the stream is older still
						continue
					}
					if r.lead != nil {
						page.Leads = append(page.Leads, *r.lead)
					} else {
						page.Deals = append(page.Deals, *r.deal)
					}
				}
				if done {
					// The pass is complete: only now may the watermark move.
					c.Streams[st.key] = streamState{Watermark: p.watermark(state.Watermark)}
				} else {
					p.Page++
					c.Streams[st.key] = streamState{Watermark: state.Watermark, Pass: p}
				}
				next, err := c.encode()
				if err != nil {
					yield(sources.Page{}, err)
					return
				}
				if len(page.Leads) > 0 || len(page.Deals) > 0 || len(rejected) > 0 || next != last {
					page.Rejected, page.Next = rejected, next
					if !yield(page, nil) {
						return
					}
					last = next
				}
				if done {
					break
				}
			}
		}
	}
}
