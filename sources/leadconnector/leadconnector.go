// Package leadconnector is the LeadConnector (HighLevel) source: an agency's Company grant
// lists the locations the app is installed on, mints a location token per location, and
// pages each location's contacts with POST /contacts/search ordered by dateUpdated, resuming
// after the last contact's searchAfter. Both API versions are supported: "v3" (the default:
// pageToken paging of installed locations, camelCase token fields) and "2021-07-28".
package leadconnector

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Defaults of the real service.
const (
	DefaultBaseURL  = "https://services.leadconnectorhq.com"
	DefaultAuthURL  = "https://marketplace.gohighlevel.com/oauth/chooselocation"
	DefaultLookback = 10 * time.Minute
	DefaultPageSize = 100
	MaxPageSize     = 100 // the documented safe pageLimit

	V3    = "v3"
	V2021 = "2021-07-28"

	// The documented limits: 100 requests per 10 s per resource (each location, the company).
	DefaultBurstMax      = 100
	DefaultBurstInterval = 10 * time.Second
	// rateSafety paces a little under the limit: a token bucket at the full rate can land
	// one request more than the limit in a fixed window when answers arrive unevenly.
	rateSafety = 0.97
)

// DefaultScopes are what the source needs: installed locations, location tokens, contacts,
// opportunities and pipelines.
var DefaultScopes = []string{"contacts.readonly", "oauth.readonly", "oauth.write", "opportunities.readonly"}

// Config is one LeadConnector connection (an agency's Company grant). Zero values mean the
// defaults.
type Config struct {
	BaseURL  string // DefaultBaseURL
	AuthURL  string // DefaultAuthURL
	TokenURL string // BaseURL + "/oauth/token"

	ClientID, ClientSecret string
	// APIVersion is the Version header: "v3" (default) or "2021-07-28".
	APIVersion string
	// CompanyID is the agency; empty: the grant token's "companyId" extra.
	CompanyID string
	// AppID is the marketplace app, required to list installed locations. Empty: the part of
	// ClientID before its first "-" (the vendor's client ids are "<appId>-<suffix>").
	AppID string
	// BackfillStart is where an empty cursor or a full pass starts (zero: everything).
	BackfillStart time.Time
	// Lookback re-reads this much before the watermark on incremental passes, for the search
	// index's lag (default 10 min).
	Lookback time.Duration
	// PageSize is the search pageLimit (1..100, default 100).
	PageSize int
	// MaxPages is the page budget of one listing: a location's pass over its contacts, or
	// the installed locations (default sources.DefaultMaxPages).
	MaxPages int
	// Scopes requested by AuthCodeURL (default DefaultScopes).
	Scopes []string
	// Locations, when set, are the locations of a connection authenticated with Private
	// Integration Tokens (one per location, handed out by tokens.Account): the accounts are
	// these, with no installed-locations listing, no Company token and no minting.
	Locations []Location

	HTTP   *http.Client     // nil: httpx's default client
	Clock  func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: slog.Default()
}

func (c Config) withDefaults() Config {
	c.BaseURL = strings.TrimRight(or(c.BaseURL, DefaultBaseURL), "/")
	c.AuthURL = or(c.AuthURL, DefaultAuthURL)
	c.TokenURL = or(c.TokenURL, c.BaseURL+"/oauth/token")
	c.APIVersion = or(c.APIVersion, V3)
	if c.AppID == "" {
		if app, _, ok := strings.Cut(c.ClientID, "-"); ok {
			c.AppID = app
		}
	}
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	for _, u := range []struct{ name, val string }{{"base_url", c.BaseURL}, {"auth_url", c.AuthURL}, {"token_url", c.TokenURL}} {
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("leadconnector: %s %q is not an http(s) URL", u.name, u.val)
		}
	}
	switch {
	case c.APIVersion != V3 && c.APIVersion != V2021:
		return fmt.Errorf("leadconnector: api_version %q: want %q or %q", c.APIVersion, V3, V2021)
	case c.PageSize < 1 || c.PageSize > MaxPageSize:
		return fmt.Errorf("leadconnector: page_size %d is outside 1..%d", c.PageSize, MaxPageSize)
	case c.Lookback < 0:
		return fmt.Errorf("leadconnector: lookback %v is negative", c.Lookback)
	case c.MaxPages < 0:
		return fmt.Errorf("leadconnector: max_pages %d is negative", c.MaxPages)
	case c.AppID == "" && len(c.Locations) == 0:
		return errors.New("leadconnector: app_id is required (the marketplace app id)")
	}
	return nil
}

// Option tunes a Source beyond its Config.
type Option func(*httpx.Config)

// WithHTTPX lets the caller adjust the HTTP layer (observer, sleep, attempts) after the
// source has set it up.
func WithHTTPX(f func(*httpx.Config)) Option { return Option(f) }

// Source implements sources.Source for one Company grant.
type Source struct {
	cfg     Config
	tokens  sources.Tokens
	api     *httpx.Client
	company atomic.Value // string: the company id learned from the grant token
}

var _ sources.Source = (*Source)(nil)

// New returns the source of one connection; tokens gives the Company token and caches the
// minted location tokens.
func New(cfg Config, tokens sources.Tokens, opts ...Option) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tokens == nil {
		return nil, errors.New("leadconnector: no token source")
	}
	cfg = cfg.withDefaults()
	hc := cfg.httpConfig()
	for _, o := range opts {
		o(&hc)
	}
	return &Source{cfg: cfg, tokens: tokens, api: httpx.New(hc)}, nil
}

// Location is a location synced with its own Private Integration Token.
type Location struct {
	ID, Name string
}

// Name is sources.LeadConnector.
func (s *Source) Name() string { return sources.LeadConnector }

// httpConfig is the HTTP layer for this vendor: a bucket per resource at the documented
// limit, tuned from the X-RateLimit-* headers; a 429 waits out the interval.
func (c Config) httpConfig() httpx.Config {
	return httpx.Config{
		Vendor:  sources.LeadConnector,
		BaseURL: c.BaseURL,
		HTTP:    c.HTTP,
		Clock:   c.Clock,
		Logger:  c.Logger,
		Limit: func(bucket string) (rate.Limit, int) {
			if bucket == "" || bucket == bucketToken {
				return rate.Inf, 1 // token calls are not charged to a resource
			}
			return paced(DefaultBurstMax, DefaultBurstInterval), 1
		},
		Tune:       tune,
		Wait429:    wait429,
		AuthFailed: authFailed,
		Message:    message,
	}
}

// Rate-limit buckets: each location and the company are separate resources at the vendor.
const (
	bucketCompany = "company"
	bucketToken   = "token"
)

func locationBucket(id string) string { return "location:" + id }

// paced is the steady rate that fits max requests per interval, with a margin.
func paced(max int, interval time.Duration) rate.Limit {
	return rate.Limit(float64(max) / interval.Seconds() * rateSafety)
}

// tune follows the limits the vendor announces in X-RateLimit-Max and
// X-RateLimit-Interval-Milliseconds (they differ per app and change without notice).
func tune(bucket string, h http.Header, l *rate.Limiter) {
	if bucket == "" || bucket == bucketToken {
		return
	}
	maxReq, err1 := strconv.Atoi(h.Get("X-RateLimit-Max"))
	ms, err2 := strconv.ParseInt(h.Get("X-RateLimit-Interval-Milliseconds"), 10, 64)
	if err1 != nil || err2 != nil || maxReq < 1 || ms < 1 {
		return
	}
	want := paced(maxReq, time.Duration(ms)*time.Millisecond)
	if daily := dailyPace(h, time.Now()); daily < want {
		want = daily
	}
	if l.Limit() != want {
		l.SetLimit(want)
	}
}

// dailyLow is the share of the daily quota below which a bucket spreads what is left over
// the rest of the day, rather than spending it at the burst rate and then meeting 429s
// until the quota resets.
const dailyLow = 0.10

// dailyPace is the rate that makes X-RateLimit-Daily-Remaining last until the next UTC
// midnight once it runs low (rate.Inf while there is plenty).
func dailyPace(h http.Header, now time.Time) rate.Limit {
	limit, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit-Daily"))
	left, err2 := strconv.Atoi(h.Get("X-RateLimit-Daily-Remaining"))
	if err1 != nil || err2 != nil || limit < 1 || left < 0 || float64(left) >= dailyLow*float64(limit) {
		return rate.Inf
	}
	untilReset := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now)
	// Never slower than one request a minute: a spent quota then ends in 429s that fail
	// the account clearly, rather than a run that waits hours in silence.
	return max(rate.Limit(float64(left)/untilReset.Seconds()), rate.Every(time.Minute))
}

// wait429 waits one rate-limit interval: the vendor sends no Retry-After, and a fixed
// window is over at the latest one interval after it refused.
func wait429(h http.Header, _ time.Time) time.Duration {
	ms, err := strconv.ParseInt(h.Get("X-RateLimit-Interval-Milliseconds"), 10, 64)
	if err != nil || ms < 1 {
		return 0 // exponential backoff
	}
	return time.Duration(ms) * time.Millisecond
}

// authFailed is a 401 for a bad or expired token ("Invalid JWT"), not the 401s that mean a
// configuration error (scopes, token class, missing Version): a refresh cannot fix those.
func authFailed(status int, body []byte) bool {
	if status != http.StatusUnauthorized {
		return false
	}
	m := strings.ToLower(message(body))
	return !strings.Contains(m, "scope") && !strings.Contains(m, "version header")
}

// message extracts the vendor's message from its error shapes: {"message": "..."},
// {"message": ["...", ...]} (422), and the v3 AIP envelope {"error": {"code", "message"}}.
func message(body []byte) string {
	var b struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil {
		var s string
		var list []string
		switch {
		case json.Unmarshal(b.Message, &s) == nil && s != "":
			return s
		case json.Unmarshal(b.Message, &list) == nil && len(list) > 0:
			return strings.Join(list, "; ")
		}
		var aip struct{ Code, Message string }
		if json.Unmarshal(b.Error, &aip) == nil && aip.Message != "" {
			if aip.Code != "" {
				return aip.Code + ": " + aip.Message
			}
			return aip.Message
		}
	}
	return httpx.DefaultMessage(body)
}

// versionHeader is the Version header every resource call carries.
func (c Config) versionHeader() http.Header {
	return http.Header{"Version": {c.APIVersion}}
}
