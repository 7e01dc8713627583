// Package tokensrv is a small OAuth server for the token store's tests: single-use refresh
// tokens with LACRM's policy (presenting a spent refresh token revokes the whole grant, the
// strictest of our vendors), an auto-approving authorization page with PKCE, a protected
// API endpoint, minted per-account tokens, and hooks to fail or kill around a refresh.
// Built on internal/simkit; the vendor fakes (sources/*/…test) can replace it once ready.
package tokensrv

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Prefix starts every token the server issues, so tests can grep for leaks.
const Prefix = "sbx"

// Counter names beyond simkit's.
const (
	CountAPIOK         = "api_ok"
	CountAPI401        = "api_401"
	CountMinted        = "minted"
	CountFailed        = "refresh_failed" // injected failures
	CountTokenRequests = "token_requests" // every request to the token endpoint
)

// Phase is a point in the handling of a refresh request, for OnRefresh hooks.
type Phase int

const (
	PhaseReceived  Phase = iota // before the refresh token is looked at
	PhaseRotated                // rotated, response not yet written
	PhaseResponded              // response written and flushed
)

// Options configure a Server.
type Options struct {
	Clock        simkit.Clock  // nil → real clock
	TTL          time.Duration // access token lifetime; 0 → 1 h
	ClientID     string        // default "sandbox-client"
	ClientSecret string        // default "sandbox-secret"
	Subject      string        // the user the authorization page approves; default "owner@example.com"
}

// Server is a running token server.
type Server struct {
	*httptest.Server
	Tokens   *simkit.Registry
	Codes    *simkit.AuthCodes
	Counters *simkit.Counters
	opts     Options

	mu        sync.Mutex
	onRefresh func(Phase) (drop bool)
	failNext  int
	failCode  int
}

// New starts a server on 127.0.0.1; Close it when done.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = simkit.RealClock{}
	}
	if opts.TTL == 0 {
		opts.TTL = time.Hour
	}
	if opts.ClientID == "" {
		opts.ClientID, opts.ClientSecret = "sandbox-client", "sandbox-secret"
	}
	if opts.Subject == "" {
		opts.Subject = "owner@example.com"
	}
	s := &Server{Tokens: simkit.NewRegistry(opts.Clock, Prefix, opts.TTL), Codes: simkit.NewAuthCodes(opts.Clock),
		Counters: simkit.NewCounters(), opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("GET /api", s.api)
	mux.HandleFunc("POST /mint", s.mintHandler)
	s.Server = httptest.NewServer(mux)
	return s
}

// OnRefresh installs a hook called at each phase of every refresh request. Returning true
// drops the connection: at PhaseReceived before anything rotates, at PhaseRotated after the
// rotation (the client never sees the new pair); at PhaseResponded it is ignored.
func (s *Server) OnRefresh(f func(Phase) (drop bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRefresh = f
}

// FailNext makes the next n refresh requests answer status without rotating anything.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failCode = n, status
}

// Authorize is a fresh grant for the sandbox user, as a code flow would give, as a token.
func (s *Server) Authorize() *oauth2.Token {
	_, p := s.Tokens.NewGrant(s.opts.Subject, nil)
	return s.oauthToken(p)
}

func (s *Server) oauthToken(p simkit.Pair) *oauth2.Token {
	t := &oauth2.Token{AccessToken: p.Access, RefreshToken: p.Refresh, TokenType: "Bearer", Expiry: p.Expiry}
	return t.WithExtra(map[string]any{"subject": s.opts.Subject, "scope": "contacts.read pipeline.read",
		"access_token": p.Access})
}

func (s *Server) hook(ph Phase) bool {
	s.mu.Lock()
	f := s.onRefresh
	s.mu.Unlock()
	return f != nil && f(ph)
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.opts.ClientID || q.Get("response_type") != "code" {
		http.Error(w, "bad client_id or response_type", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "http" || (redirect.Hostname() != "127.0.0.1" && redirect.Hostname() != "localhost") {
		http.Error(w, "redirect_uri must be a loopback http URI", http.StatusBadRequest)
		return
	}
	code := s.Codes.Issue(s.opts.ClientID, redirect.String(), s.opts.Subject, q.Get("code_challenge"),
		q.Get("code_challenge_method"), 10*time.Minute)
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.Counters.Inc(CountTokenRequests)
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.opts.ClientID || secret != s.opts.ClientSecret {
		simkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	var req tokenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	switch req.GrantType {
	case "authorization_code":
		subject, challenge, method, ok := s.Codes.Redeem(req.Code, s.opts.ClientID, req.RedirectURI)
		if ok && challenge != "" {
			sum := sha256.Sum256([]byte(req.CodeVerifier))
			ok = method == "S256" && subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
		}
		if !ok {
			simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "bad code"})
			return
		}
		_, p := s.Tokens.NewGrant(subject, nil)
		s.Counters.Inc(simkit.CountTokenGrants)
		s.writePair(w, p)
	case "refresh_token":
		s.refresh(w, req.RefreshToken)
	default:
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

func (s *Server) refresh(w http.ResponseWriter, rt string) {
	if s.hook(PhaseReceived) {
		simkit.DropResponse() // as if the client died before the request arrived
	}
	s.mu.Lock()
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	code := s.failCode
	s.mu.Unlock()
	if fail {
		s.Counters.Inc(CountFailed)
		// A careless vendor echoes the token in its error page; the store must not.
		http.Error(w, "upstream trouble while refreshing "+rt, code)
		return
	}
	res := s.Tokens.Refresh(rt, false)
	switch res.Outcome {
	case simkit.RefreshOK:
		s.Counters.Inc(simkit.CountRefreshes)
		if s.hook(PhaseRotated) {
			simkit.DropResponse()
		}
		s.writePair(w, res.Pair)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		s.hook(PhaseResponded)
	case simkit.RefreshReused:
		// LACRM: a second use is treated as an attack; the whole grant is revoked.
		s.Counters.Inc(simkit.CountRefreshReuse)
		s.Counters.Inc(simkit.CountRevokedGrants)
		s.Tokens.RevokeGrant(res.Grant)
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant",
			"error_description": "refresh token " + rt + " was already used; grant revoked"})
	default:
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant",
			"error_description": "refresh token " + rt + " is not valid"})
	}
}

func (s *Server) writePair(w http.ResponseWriter, p simkit.Pair) {
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"access_token": p.Access, "refresh_token": p.Refresh,
		"token_type": "Bearer", "expires_in": int(math.Ceil(p.TTL.Seconds())), "scope": "contacts.read pipeline.read"})
}

// api answers 200 for a valid bearer token (for ?account=X: a token minted for X), else
// 401. The X-Refreshes header tells clients how many refreshes the server has done.
func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Refreshes", strconv.FormatInt(s.Counters.Get(simkit.CountRefreshes), 10))
	state, _, meta := s.Tokens.Check(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if state != simkit.AccessValid || meta["account"] != r.URL.Query().Get("account") {
		s.Counters.Inc(CountAPI401)
		simkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "Unauthorized"})
		return
	}
	s.Counters.Inc(CountAPIOK)
	simkit.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) mintHandler(w http.ResponseWriter, r *http.Request) {
	state, g, _ := s.Tokens.Check(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if state != simkit.AccessValid {
		simkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"message": "Unauthorized"})
		return
	}
	p := s.Tokens.IssueAccess(g.ID, map[string]string{"account": r.URL.Query().Get("account")})
	s.Counters.Inc(CountMinted)
	s.writePair(w, p)
}

// Client talks to a Server: the Refresher, Exchange and AuthCodeURL a vendor package would
// provide, plus API and mint calls.
type Client struct {
	URL                    string
	ClientID, ClientSecret string
	HTTP                   *http.Client
	Now                    func() time.Time // expiry = Now + expires_in
}

// Client returns a client for s using clock for expiries.
func (s *Server) Client(now func() time.Time) *Client {
	return &Client{URL: s.URL, ClientID: s.opts.ClientID, ClientSecret: s.opts.ClientSecret, HTTP: s.Server.Client(), Now: now}
}

// Refresh implements store.Refresher: one request, no retries.
func (c *Client) Refresh(ctx context.Context, rt string) (*oauth2.Token, error) {
	return c.tokenRequest(ctx, tokenRequest{GrantType: "refresh_token", RefreshToken: rt})
}

// Exchange redeems an authorization code.
func (c *Client) Exchange(ctx context.Context, code, redirectURI, verifier string) (*oauth2.Token, error) {
	return c.tokenRequest(ctx, tokenRequest{GrantType: "authorization_code", Code: code, RedirectURI: redirectURI, CodeVerifier: verifier})
}

// AuthCodeURL is the authorization page URL.
func (c *Client) AuthCodeURL(state, redirectURI, challenge string) string {
	v := url.Values{"client_id": {c.ClientID}, "response_type": {"code"}, "redirect_uri": {redirectURI}, "state": {state}}
	if challenge != "" {
		v.Set("code_challenge", challenge)
		v.Set("code_challenge_method", "S256")
	}
	return c.URL + "/authorize?" + v.Encode()
}

func (c *Client) tokenRequest(ctx context.Context, body tokenRequest) (*oauth2.Token, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/token", strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(c.ClientID, c.ClientSecret)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("token endpoint: read: %w", err)
	}
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		Scope        string `json:"scope"`
		Error        string `json:"error"`
		Description  string `json:"error_description"`
	}
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode == http.StatusBadRequest && out.Error != "" {
		return nil, &oauth2.RetrieveError{Response: resp, Body: raw, ErrorCode: out.Error, ErrorDescription: out.Description}
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return nil, fmt.Errorf("token endpoint: %s: %s", resp.Status, raw)
	}
	t := &oauth2.Token{AccessToken: out.AccessToken, RefreshToken: out.RefreshToken, TokenType: out.TokenType,
		Expiry: c.Now().Add(time.Duration(out.ExpiresIn) * time.Second)}
	// Like x/oauth2, keep the whole response as extras (tokens included): the store must
	// keep only the metadata.
	var extra map[string]any
	_ = json.Unmarshal(raw, &extra)
	return t.WithExtra(extra), nil
}

// Mint asks the server for a token for account, with the grant's access token.
func (c *Client) Mint(ctx context.Context, grantAccess, account string) (*oauth2.Token, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/mint?account="+url.QueryEscape(account), nil)
	req.Header.Set("Authorization", "Bearer "+grantAccess)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mint: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	t := &oauth2.Token{AccessToken: out.AccessToken, TokenType: "Bearer", Expiry: c.Now().Add(time.Duration(out.ExpiresIn) * time.Second)}
	return t.WithExtra(map[string]any{"locationId": account}), nil
}

// Call makes an API request with access (for account, or the grant when ""); it returns the
// HTTP status and the server's refresh count.
func (c *Client) Call(ctx context.Context, access, account string) (status int, refreshes int64, err error) {
	u := c.URL + "/api"
	if account != "" {
		u += "?account=" + url.QueryEscape(account)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	n, _ := strconv.ParseInt(resp.Header.Get("X-Refreshes"), 10, 64)
	return resp.StatusCode, n, nil
}
