// Package httpx is the HTTP layer every vendor source shares: proactive rate limiting per
// bucket, retries with backoff that honour the vendor's throttling answers, one token refresh
// when the vendor rejects a credential, bounded response bodies, and errors that never carry
// a token, a query string or a response body beyond the vendor's own (truncated) message.
package httpx

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/leadsync/leadsync/sources"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxAttempts  = 8
	DefaultMaxThrottled = 32
	DefaultMaxElapsed   = 3 * time.Minute
	DefaultMaxWait      = 60 * time.Second
	DefaultMaxBody      = 32 << 20
	DefaultTimeout      = 30 * time.Second
)

// Config configures a Client; zero values mean the defaults.
type Config struct {
	Vendor  string       // "leadconnector" | "localiq" | "lacrm": used in errors and metrics
	BaseURL string       // requests use paths relative to it (absolute URLs are accepted too)
	HTTP    *http.Client // default: 30 s per request, shared connection pool, no retries of its own
	// UserAgent defaults to "leadsync/<module version>".
	UserAgent string
	// MaxAttempts bounds the attempts that failed (5xx, 408, network, malformed body, token)
	// per request, the first included; default 8. A 429 is not a failure: the vendor refused
	// without doing anything, and said to slow down. 429s are bounded by MaxThrottled and,
	// like everything, by MaxElapsed.
	MaxAttempts  int
	MaxThrottled int           // 429 answers per request before giving up; default 32
	MaxElapsed   time.Duration // stop retrying after this; default 3 min
	MaxWait      time.Duration // cap for one wait (Retry-After etc.); default 60 s
	MaxBody      int64         // response size limit; default 32 MiB
	// Limit gives the proactive limit of a bucket (requests per second and burst), asked once
	// per bucket. nil: no proactive limit.
	Limit func(bucket string) (rate.Limit, int)
	// Tune (optional) is called after every response with its headers, to adjust that
	// bucket's limiter. It is called concurrently and must be safe for that.
	Tune func(bucket string, h http.Header, l *rate.Limiter)
	// Wait429 (optional) says how long to wait after a 429 without a Retry-After header.
	// A result <= 0, like a nil Wait429, means exponential backoff.
	Wait429 func(h http.Header, now time.Time) time.Duration
	// AuthHeader (optional) is the Authorization header for a token. Default: "Bearer <token>".
	// LACRM API keys are sent bare.
	AuthHeader func(tok *oauth2.Token) string
	// AuthFailed (optional) classifies a non-2xx answer as "credentials rejected": the
	// token is invalidated, a fresh one fetched and the request retried once.
	// Default: status == 401.
	AuthFailed func(status int, body []byte) bool
	// Message (optional) extracts the vendor's error message from an error body. Whatever it
	// returns is scrubbed of the request's secrets and of email addresses, and truncated.
	Message func(body []byte) string
	Clock   func() time.Time                                 // default time.Now
	Sleep   func(ctx context.Context, d time.Duration) error // default: a timer that ctx interrupts
	Logger  *slog.Logger                                     // default slog.Default(); debug lines only
	// Observer (optional) receives per-attempt metrics.
	Observer Observer
}

// maxRotations bounds the free re-sends of one Do after a 401 for a token that another
// caller rotated meanwhile.
const maxRotations = 4

// Observer is a metrics hook.
type Observer interface {
	// Request reports one HTTP attempt; status 0 is a network error (including a body cut
	// short).
	Request(vendor, endpoint string, status int, d time.Duration)
	// Retry reports a retry decision; reason is "429", "5xx", "network", "decode" or "auth".
	Retry(vendor, endpoint, reason string)
}

// Request is one API call.
type Request struct {
	Method   string // default GET
	Path     string // relative to BaseURL, or an absolute URL
	Endpoint string // stable, PII-free name for errors and metrics; default: the URL path
	Query    url.Values
	Header   http.Header // extra headers (e.g. LeadConnector's Version)
	// Body is re-sent verbatim on retries; ContentType sets its type.
	Body        []byte
	ContentType string
	Bucket      string              // rate-limit bucket ("location:LOC", "client", "grant")
	Auth        sources.Credentials // nil: no Authorization header; else Config.AuthHeader's (default "Bearer <token>")
	// NoRetry makes exactly one attempt with no re-send of any kind: for token endpoints,
	// where a re-sent single-use refresh token would be reuse. Our layer then never retries
	// (not on 429, 5xx, network or auth failures), and the request carries no GetBody, so
	// net/http cannot re-send it either. That guarantee needs a body: net/http may still
	// re-send a body-less GET on a reused connection that died before any answer.
	NoRetry bool
}

// Response is a 2xx answer.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte
	Attempts int
}

// Stats is per-call accounting for the run ledger: the worker puts one in the context and
// every Do adds to it.
type Stats struct {
	Requests  atomic.Int64 // HTTP attempts
	Throttled atomic.Int64 // 429 answers
	Retries   atomic.Int64 // retries of any reason
}

type statsKey struct{}

// WithStats returns a context whose calls are counted in s.
func WithStats(ctx context.Context, s *Stats) context.Context {
	return context.WithValue(ctx, statsKey{}, s)
}

// StatsFrom returns the Stats of ctx, nil if none.
func StatsFrom(ctx context.Context) *Stats {
	s, _ := ctx.Value(statsKey{}).(*Stats)
	return s
}

// Client sends requests for one vendor connection. Safe for concurrent use.
type Client struct {
	cfg     Config
	mu      sync.Mutex
	buckets map[string]*bucket
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxThrottled < 1 {
		cfg.MaxThrottled = DefaultMaxThrottled
	}
	if cfg.MaxElapsed <= 0 {
		cfg.MaxElapsed = DefaultMaxElapsed
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	cfg.HTTP = cmp.Or(cfg.HTTP, defaultHTTP())
	cfg.UserAgent = cmp.Or(cfg.UserAgent, defaultUserAgent())
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Client{cfg: cfg, buckets: map[string]*bucket{}}
}

// defaultHTTP is shared by every Client so connections to a vendor are pooled. net/http never
// re-sends a request on its own except on a reused connection that failed before any answer,
// and only for requests it deems replayable (see Request.NoRetry and send).
var defaultHTTP = sync.OnceValue(func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Timeout: DefaultTimeout, Transport: t}
})

var defaultUserAgent = sync.OnceValue(func() string {
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "leadsync/" + v
})

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Do sends req, with proactive limiting per Bucket, retries with backoff on 429 / 5xx / 408 /
// network errors / truncated bodies (honouring Retry-After in seconds or HTTP-date, then
// Wait429, capped by MaxWait, bounded by MaxAttempts and MaxElapsed), and on AuthFailed:
// when Auth now hands out another token (rotated by another caller), a re-send with it that
// spends no attempt (at most maxRotations per Do); when it hands out the refused token,
// Auth.Invalidate(tok), a fresh token and one retry (once per Do). It returns the response
// for 2xx; otherwise an *Error.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	return c.do(ctx, &req, nil)
}

// JSON is Do plus decoding into out (nil out: only validated). A body that is not valid JSON
// is retried like a truncated response (bounded), then fails with an *Error whose Message
// says "malformed JSON at offset N". Valid JSON nested deeper than encoding/json accepts
// fails at once ("JSON nested deeper than 10000 at offset N"). A 204 is not decoded.
func (c *Client) JSON(ctx context.Context, req Request, out any) error {
	decode := func(b []byte) error {
		if out == nil {
			if !json.Valid(b) {
				// Unmarshal into a throwaway to learn the offset.
				var v any
				return json.Unmarshal(b, &v)
			}
			return nil
		}
		return json.Unmarshal(b, out)
	}
	_, err := c.do(ctx, &req, decode)
	return err
}

// Decode is Do with a decoder of the caller's: a *json.SyntaxError from decode is retried
// like a truncated response (bounded) unless the body is one complete JSON value (too deep,
// as in JSON); any other error is final. Sources that decode a page record by record
// (quarantining the bad ones) use it instead of JSON.
func (c *Client) Decode(ctx context.Context, req Request, decode func(body []byte) error) (*Response, error) {
	return c.do(ctx, &req, decode)
}

// call is the state of one Do.
type call struct {
	c        *Client
	req      *Request
	url      string
	method   string
	endpoint string
	b        *bucket
	stats    *Stats
	start    time.Time
	attempts int // every request sent (and token fetch failed), for messages
	// throttled counts the attempts answered 429, which MaxThrottled bounds instead of
	// MaxAttempts.
	throttled int
	tok       *oauth2.Token // the token of the attempt under way
	next      *oauth2.Token // the token reauth chose for the next attempt
	// refreshed: this call has had the store refresh a refused token (once per call);
	// rotations counts re-sends after a 401 for a token rotated elsewhere.
	refreshed bool
	rotations int
	bo        *backoff.ExponentialBackOff
	u         *url.URL
	tokens    []string // every access token sent, to scrub from messages
}

// outcome is what one attempt produced.
type outcome struct {
	status int
	header http.Header
	body   []byte
	tooBig bool
	netErr error // transport failure or body cut short
}

func (c *Client) do(ctx context.Context, req *Request, decode func([]byte) error) (*Response, error) {
	cl := &call{
		c:      c,
		req:    req,
		method: cmp.Or(req.Method, http.MethodGet),
		stats:  StatsFrom(ctx),
		start:  c.cfg.Clock(),
	}
	u, err := c.target(req)
	cl.endpoint = req.Endpoint
	if cl.endpoint == "" {
		p, _, _ := strings.Cut(req.Path, "?")
		if u != nil {
			p = u.Path
		}
		cl.endpoint = strings.TrimPrefix(p, "/")
	}
	if err != nil {
		return nil, cl.fail(0, "invalid URL", err)
	}
	cl.url = u.String()
	cl.u = u
	cl.b = c.bucket(req.Bucket)

	for {
		if err := ctx.Err(); err != nil {
			return nil, cl.cancelled(err, nil)
		}
		if err := c.gate(ctx, cl.b); err != nil {
			return nil, cl.cancelled(err, nil)
		}
		// The token is taken after the rate limiter's wait, and again for each attempt: a
		// wait or a backoff may outlast the token used before.
		if req.Auth != nil {
			tok := cl.next // chosen by reauth after a 401
			cl.next = nil
			if tok == nil {
				var err error
				if tok, err = req.Auth.Token(ctx); err != nil {
					if err := cl.tokenFailed(ctx, err); err != nil {
						return nil, err
					}
					continue
				}
			}
			cl.use(tok)
		}
		cl.attempts++
		o := cl.send(ctx)
		if o.netErr != nil && ctx.Err() != nil {
			return nil, cl.cancelled(ctx.Err(), nil)
		}

		var (
			reason string
			wait   time.Duration = -1 // -1: exponential backoff
			last   *Error
		)
		switch {
		case o.netErr != nil:
			reason, last = "network", cl.fail(0, "network error", o.netErr)
			last.network = true
		case o.status >= 200 && o.status < 300:
			if o.tooBig {
				return nil, cl.fail(o.status, fmt.Sprintf("response body exceeds %d bytes", c.cfg.MaxBody), nil)
			}
			resp := &Response{Status: o.status, Header: o.header, Body: o.body, Attempts: cl.attempts}
			if decode == nil || o.status == http.StatusNoContent {
				return resp, nil
			}
			err := decode(o.body)
			if err == nil {
				return resp, nil
			}
			var se *json.SyntaxError
			if !errors.As(err, &se) {
				// A well-formed body of the wrong shape will not improve with retries.
				return nil, cl.fail(o.status, decodeMessage(err), err)
			}
			if complete, deepAt := wellFormed(o.body); complete {
				// The body arrived whole: a retry would bring the same document.
				msg := fmt.Sprintf("cannot decode JSON at offset %d", se.Offset)
				if deepAt > 0 {
					msg = fmt.Sprintf("JSON nested deeper than %d at offset %d", maxDepth, deepAt)
				}
				return nil, cl.fail(o.status, msg, err)
			}
			reason, last = "decode", cl.fail(o.status, fmt.Sprintf("malformed JSON at offset %d", se.Offset), err)
		case req.Auth != nil && c.authFailed(o.status, o.body):
			last = cl.fail(o.status, cl.message(o.body), nil)
			if err := cl.reauth(ctx, last); err != nil {
				return nil, err
			}
			continue
		case o.status == http.StatusTooManyRequests:
			if cl.stats != nil {
				cl.stats.Throttled.Add(1)
			}
			cl.throttled++
			reason, last = "429", cl.fail(o.status, cl.message(o.body), nil)
			now := c.cfg.Clock()
			if d, ok := ParseRetryAfter(o.header.Get("Retry-After"), now); ok {
				wait = d
			} else if c.cfg.Wait429 != nil {
				if d := c.cfg.Wait429(o.header, now); d > 0 {
					wait = d
				}
			}
		case o.status == http.StatusRequestTimeout || o.status >= 500:
			reason, last = "5xx", cl.fail(o.status, cl.message(o.body), nil)
			if d, ok := ParseRetryAfter(o.header.Get("Retry-After"), c.cfg.Clock()); ok {
				wait = d
			}
		default:
			return nil, cl.fail(o.status, cl.message(o.body), nil)
		}

		if err := cl.retryWait(ctx, reason, wait, last); err != nil {
			return nil, err
		}
	}
}

// reauth chooses the token to retry with after the vendor refused cl.tok. Another token
// from the store means another caller rotated it while this request was in flight (LocaliQ
// revokes the previous access token on refresh): the refused attempt never had a chance, so
// it is given back, and the request goes again with the new token, within maxRotations. The
// same token again is invalidated and refreshed, once per call: a token refreshed for this
// call and still refused will stay refused. A non-nil answer is the call's final error.
func (cl *call) reauth(ctx context.Context, last *Error) error {
	if cl.req.NoRetry {
		// No re-send, but the next call should not be handed the refused token again.
		cl.req.Auth.Invalidate(cl.tok)
		return last
	}
	refused := cl.tok.AccessToken
	tok, err := cl.req.Auth.Token(ctx)
	switch {
	case err != nil:
	case tok.AccessToken != refused:
		if cl.rotations >= maxRotations {
			return last
		}
		cl.rotations++
		cl.attempts--
	case cl.refreshed:
		return last
	default:
		cl.refreshed = true
		cl.req.Auth.Invalidate(tok)
		tok, err = cl.req.Auth.Token(ctx)
	}
	if err != nil {
		return cl.tokenFailed(ctx, err)
	}
	cl.next = tok
	return cl.retryWait(ctx, "auth", 0, last)
}

// tokenFailed handles a failure of Auth.Token. A refresh that failed transiently (the token
// endpoint's 5xx, 429, a dropped answer; the store kept the refresh token) is retried like
// the request itself; a grant that needs re-authorization, a static token that needs
// rotation, an OAuth refusal (invalid_grant, invalid_client), or a cancelled call, is final. A nil answer means: get a token again.
func (cl *call) tokenFailed(ctx context.Context, err error) error {
	last := cl.fail(0, "get token", err)
	var refused *oauth2.RetrieveError
	if errors.Is(err, sources.ErrNeedsReauth) || errors.Is(err, sources.ErrNeedsRotation) || errors.As(err, &refused) ||
		ctx.Err() != nil || cl.req.NoRetry {
		return last
	}
	cl.attempts++
	return cl.retryWait(ctx, "token", -1, last)
}

func (cl *call) use(tok *oauth2.Token) {
	cl.tok = tok
	if !slices.Contains(cl.tokens, tok.AccessToken) {
		cl.tokens = append(cl.tokens, tok.AccessToken)
	}
}

// retryWait decides whether the call may try again after last and waits before it: wait
// (-1: exponential backoff), capped at MaxWait, within MaxAttempts and MaxElapsed. A non-nil
// answer is the call's final error.
func (cl *call) retryWait(ctx context.Context, reason string, wait time.Duration, last *Error) error {
	c, req := cl.c, cl.req
	if wait < 0 {
		wait = cl.backoff()
	}
	wait = min(wait, c.cfg.MaxWait)
	now := c.cfg.Clock()
	if reason == "429" {
		// Hold the whole bucket, so concurrent callers don't hammer a throttled vendor
		// (even when this call gives up).
		cl.b.hold(now.Add(wait))
	}
	spent := cl.attempts-cl.throttled >= c.cfg.MaxAttempts
	if reason == "429" {
		// With 20 % of answers throttled, 8 attempts in a row would be refused once in
		// ~400,000 requests; a vendor asking us to slow down is waited out, within bounds.
		spent = cl.throttled >= c.cfg.MaxThrottled
	}
	if req.NoRetry || spent || now.Sub(cl.start)+wait > c.cfg.MaxElapsed {
		return last
	}
	if cl.stats != nil {
		cl.stats.Retries.Add(1)
	}
	if c.cfg.Observer != nil {
		c.cfg.Observer.Retry(c.cfg.Vendor, cl.endpoint, reason)
	}
	c.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "httpx: retrying",
		slog.String("vendor", c.cfg.Vendor), slog.String("endpoint", cl.endpoint),
		slog.Int("status", last.Status), slog.Int("attempt", cl.attempts),
		slog.String("reason", reason), slog.Duration("wait", wait))
	if wait > 0 {
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return cl.cancelled(err, last)
		}
	}
	return nil
}

// send makes one HTTP attempt and reads the body within MaxBody.
func (cl *call) send(ctx context.Context) outcome {
	c, req := cl.c, cl.req
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, cl.method, cl.url, body)
	if err != nil {
		return outcome{netErr: stripURL(err)}
	}
	if req.NoRetry {
		// GetBody is how net/http rewinds a body to re-send it (on a reused connection that
		// failed, or on a 307/308). Without it a request with a body is never re-sent behind
		// our back: a token request goes out exactly once.
		hr.GetBody = nil
	}
	for k, vs := range req.Header {
		hr.Header[k] = append([]string(nil), vs...)
	}
	if hr.Header.Get("User-Agent") == "" {
		hr.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if hr.Header.Get("Accept") == "" {
		hr.Header.Set("Accept", "application/json")
	}
	if req.ContentType != "" {
		hr.Header.Set("Content-Type", req.ContentType)
	}
	if cl.tok != nil {
		if c.cfg.AuthHeader != nil {
			hr.Header.Set("Authorization", c.cfg.AuthHeader(cl.tok))
		} else {
			hr.Header.Set("Authorization", "Bearer "+cl.tok.AccessToken)
		}
	}

	t0 := c.cfg.Clock()
	resp, err := c.cfg.HTTP.Do(hr)
	if cl.stats != nil {
		cl.stats.Requests.Add(1)
	}
	if err != nil {
		cl.observe(ctx, 0, t0)
		return outcome{netErr: stripURL(err)}
	}
	defer resp.Body.Close()
	if c.cfg.Tune != nil {
		c.cfg.Tune(req.Bucket, resp.Header, cl.b.lim)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody+1))
	if err != nil {
		// io.ErrUnexpectedEOF (shorter than Content-Length) or a reset mid-body.
		cl.observe(ctx, 0, t0)
		return outcome{status: resp.StatusCode, netErr: fmt.Errorf("read body: %w", err)}
	}
	cl.observe(ctx, resp.StatusCode, t0)
	o := outcome{status: resp.StatusCode, header: resp.Header, body: b}
	if int64(len(b)) > c.cfg.MaxBody {
		o.tooBig, o.body = true, b[:c.cfg.MaxBody]
	}
	return o
}

// observe reports one attempt to the metrics and, at debug, logs it: the endpoint's stable
// name (never the URL, whose path and query may carry ids and emails), never a header.
func (cl *call) observe(ctx context.Context, status int, t0 time.Time) {
	d := cl.c.cfg.Clock().Sub(t0)
	if o := cl.c.cfg.Observer; o != nil {
		o.Request(cl.c.cfg.Vendor, cl.endpoint, status, d)
	}
	if log := cl.c.cfg.Logger; log.Enabled(ctx, slog.LevelDebug) {
		log.LogAttrs(ctx, slog.LevelDebug, "vendor request",
			slog.String("vendor", cl.c.cfg.Vendor), slog.String("method", cl.method), slog.String("endpoint", cl.endpoint),
			slog.Int("status", status), slog.Duration("duration", d), slog.Int("attempt", cl.attempts))
	}
}

func (cl *call) backoff() time.Duration {
	if cl.bo == nil {
		cl.bo = backoff.NewExponentialBackOff(
			backoff.WithMaxInterval(cl.c.cfg.MaxWait),
			backoff.WithMaxElapsedTime(0), // we bound elapsed time ourselves, on Config.Clock
		)
	}
	return cl.bo.NextBackOff()
}

func (cl *call) fail(status int, msg string, err error) *Error {
	return &Error{
		Vendor: cl.c.cfg.Vendor, Endpoint: cl.endpoint, Method: cl.method,
		Status: status, Message: msg, Attempts: cl.attempts, Err: err,
	}
}

// cancelled is the error for a ctx that ended; last (if any) says what we were waiting on.
func (cl *call) cancelled(err error, last *Error) *Error {
	msg := ""
	if last != nil {
		what := "network error"
		if last.Status != 0 {
			what = fmt.Sprint(last.Status)
		}
		msg = "gave up waiting to retry after " + what
	}
	return cl.fail(0, msg, err)
}

func (c *Client) authFailed(status int, body []byte) bool {
	if c.cfg.AuthFailed != nil {
		return c.cfg.AuthFailed(status, body)
	}
	return status == http.StatusUnauthorized
}

// message is the vendor's message in body, safe for an error string. The secrets to scrub
// are gathered only here, off the success path.
func (cl *call) message(body []byte) string {
	var m string
	if f := cl.c.cfg.Message; f != nil {
		m = f(body)
	} else {
		m = DefaultMessage(body)
	}
	return clean(m, secretsOf(cl.req, cl.u, cl.tokens))
}

// target resolves req's URL against BaseURL and merges its Query.
func (c *Client) target(req *Request) (*url.URL, error) {
	raw := req.Path
	if l := strings.ToLower(raw); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
		raw = strings.TrimRight(c.cfg.BaseURL, "/") + "/" + strings.TrimLeft(raw, "/")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, stripURL(err)
	}
	if u.Scheme == "" || u.Host == "" {
		return u, errors.New("no scheme or host (is BaseURL set?)")
	}
	if len(req.Query) > 0 {
		q := u.Query()
		for k, vs := range req.Query {
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// stripURL drops the *url.Error layer, whose message holds the full URL and so the query
// string (emails in LocaliQ's identities call).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// maxDepth is encoding/json's nesting limit: it refuses deeper documents, valid or not, with
// a *json.SyntaxError.
const maxDepth = 10000

// wellFormed reports whether body is one complete JSON value (json.Decoder's tokenizer has no
// depth limit), and the offset just past the first bracket deeper than maxDepth (0: none).
func wellFormed(body []byte) (complete bool, deepAt int64) {
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, values := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return depth == 0 && values == 1, deepAt
		}
		if err != nil {
			return false, deepAt
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			if depth++; depth > maxDepth && deepAt == 0 {
				deepAt = dec.InputOffset()
			}
			continue
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if depth == 0 {
			values++
		}
	}
}

func decodeMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("unexpected JSON at offset %d: %s value for %s", te.Offset, te.Value, te.Type)
	}
	return "cannot decode JSON"
}
