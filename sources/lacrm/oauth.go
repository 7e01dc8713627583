package lacrm

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Refresher spends a refresh token for a new pair. It implements the token store's
// Refresher. LACRM refresh tokens are single-use and a second use revokes the whole grant,
// so a refresh is exactly one HTTP request: no retry, no re-send of any kind.
type Refresher struct{ cfg Config }

// Refresher returns the refresher of this app registration.
func (c Config) Refresher() Refresher { return Refresher{cfg: c.withDefaults()} }

// Refresh exchanges refreshToken for a new pair. A rejected token (invalid_grant: used,
// expired, or its grant revoked) is an *oauth2.RetrieveError with ErrorCode "invalid_grant";
// network errors and 5xx are plain errors: the token may or may not have been spent, and
// the caller must not blindly retry it.
func (r Refresher) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return r.cfg.tokenCall(ctx, "oauth/token:refresh", map[string]string{
		"grant_type": "refresh_token", "refresh_token": refreshToken,
	})
}

// AuthCodeURL is the consent page URL. LACRM names the parameter redirect_url and has no
// PKCE, so pkceChallenge is ignored.
func (c Config) AuthCodeURL(state, redirectURI, pkceChallenge string) string {
	c = c.withDefaults()
	q := url.Values{"response_type": {"code"}, "client_id": {c.ClientID}, "redirect_url": {redirectURI}}
	if state != "" {
		q.Set("state", state)
	}
	sep := "?"
	if strings.Contains(c.AuthURL, "?") {
		sep = "&"
	}
	return c.AuthURL + sep + q.Encode()
}

// Exchange trades an authorization code for the grant's first pair (one request, no retry:
// codes are single-use too). pkceVerifier is ignored.
func (c Config) Exchange(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error) {
	c = c.withDefaults()
	tok, err := c.tokenCall(ctx, "oauth/token:code", map[string]string{
		"grant_type": "authorization_code", "code": code, "redirect_url": redirectURI,
	})
	if err != nil {
		return nil, err
	}
	return c.withSubject(ctx, tok), nil
}

// withSubject names the grant's user, which LACRM's token answer does not: one GetUser call
// with the new access token (no refresh token is spent). The user's email, else "user
// <UserId>"; when the call fails the grant is kept without a subject.
func (c Config) withSubject(ctx context.Context, tok *oauth2.Token) *oauth2.Token {
	src, err := New(c, pairTokens{tok})
	if err != nil {
		return tok
	}
	var u userJSON
	if src.call(ctx, "GetUser", map[string]any{}, into(&u)) != nil {
		return tok
	}
	subject := u.Email
	if subject == "" && u.UserID != "" {
		subject = "user " + string(u.UserID)
	}
	if subject == "" {
		return tok
	}
	return tok.WithExtra(map[string]any{"subject": subject})
}

// pairTokens is a just-issued pair as a token source: the grant's access token as it is.
type pairTokens struct{ tok *oauth2.Token }

func (p pairTokens) Grant() sources.Credentials                         { return p }
func (p pairTokens) Account(string, sources.Minter) sources.Credentials { return p }
func (p pairTokens) Token(context.Context) (*oauth2.Token, error)       { return p.tok, nil }
func (p pairTokens) Invalidate(*oauth2.Token)                           {}

// tokenStyle is the vendor's token endpoint: JSON, credentials in Basic auth.
var tokenStyle = httpx.TokenStyle{JSON: true, BasicAuth: true, Refusal: refusal}

// refusal: every 4xx but 408 and 429 is a rejection. The code is the vendor's own when the
// answer has one, never the body (which echoes nothing secret today, but we don't rely on
// it); a 401 without one is invalid_client.
func refusal(he *httpx.Error) error {
	if he.Status < 400 || he.Status >= 500 || he.Status == http.StatusTooManyRequests || he.Status == http.StatusRequestTimeout {
		return nil
	}
	code, desc, _ := strings.Cut(he.Message, ": ")
	if !errorCodeRE.MatchString(code) {
		code, desc = "", he.Message
	}
	if code == "" && he.Status == http.StatusUnauthorized {
		code = "invalid_client"
	}
	return httpx.Refused(he.Status, code, desc)
}

var errorCodeRE = regexp.MustCompile(`^[a-z_]+$`)

func (c Config) tokenCall(ctx context.Context, endpoint string, body map[string]string) (*oauth2.Token, error) {
	if c.ClientID == "" || c.ClientSecret == "" {
		return nil, errors.New("lacrm: client_id and client_secret are required for token requests")
	}
	cl := httpx.New(httpx.Config{Vendor: sources.LACRM, HTTP: c.HTTP, MaxAttempts: 1, Clock: c.now, Logger: c.Logger})
	st := tokenStyle
	st.Endpoint = endpoint
	tok, err := cl.Token(ctx, st, c.TokenURL, c.ClientID, c.ClientSecret, body)
	return tok, httpx.TokenFailure(err, "lacrm: token request")
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
