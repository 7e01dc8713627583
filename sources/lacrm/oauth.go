package lacrm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

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
	return c.tokenCall(ctx, "oauth/token:code", map[string]string{
		"grant_type": "authorization_code", "code": code, "redirect_url": redirectURI,
	})
}

type tokenJSON struct {
	AccessToken  string      `json:"access_token"`
	TokenType    string      `json:"token_type"`
	ExpiresIn    json.Number `json:"expires_in"`
	RefreshToken string      `json:"refresh_token"`
}

var errorCodeRE = regexp.MustCompile(`^[a-z_]+$`)

func (c Config) tokenCall(ctx context.Context, endpoint string, body map[string]string) (*oauth2.Token, error) {
	if c.ClientID == "" || c.ClientSecret == "" {
		return nil, errors.New("lacrm: client_id and client_secret are required for token requests")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("lacrm: %s: %w", endpoint, err)
	}
	cl := httpx.New(httpx.Config{Vendor: sources.LACRM, HTTP: c.HTTP, MaxAttempts: 1, Clock: c.Clock, Logger: c.Logger})
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.ClientID+":"+c.ClientSecret)))
	var out tokenJSON
	err = cl.JSON(ctx, httpx.Request{
		Method: http.MethodPost, Path: c.TokenURL, Endpoint: endpoint, Header: h,
		Body: b, ContentType: "application/json", NoRetry: true,
	}, &out)
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) && he.Status >= 400 && he.Status < 500 &&
			he.Status != http.StatusTooManyRequests && he.Status != http.StatusRequestTimeout {
			// A rejection: the vendor's error code, never the body (which echoes nothing
			// secret today, but we don't rely on it).
			code, desc, _ := strings.Cut(he.Message, ": ")
			if !errorCodeRE.MatchString(code) {
				code, desc = "", he.Message
			}
			if code == "" && he.Status == http.StatusUnauthorized {
				code = "invalid_client"
			}
			return nil, &oauth2.RetrieveError{
				Response:         &http.Response{StatusCode: he.Status, Status: fmt.Sprintf("%d %s", he.Status, http.StatusText(he.Status))},
				ErrorCode:        code,
				ErrorDescription: desc,
			}
		}
		return nil, fmt.Errorf("lacrm: token request: %w", err)
	}
	if out.AccessToken == "" {
		return nil, fmt.Errorf("lacrm: %s: response has no access_token", endpoint)
	}
	tok := &oauth2.Token{AccessToken: out.AccessToken, TokenType: cmpOr(out.TokenType, "Bearer"), RefreshToken: out.RefreshToken}
	if secs, err := out.ExpiresIn.Int64(); err == nil && secs > 0 {
		tok.ExpiresIn = secs
		tok.Expiry = c.now().Add(time.Duration(secs) * time.Second)
	}
	return tok, nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
