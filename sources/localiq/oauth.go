package localiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources/httpx"
)

// Refresher refreshes LocaliQ grants for the token store.
type Refresher struct{ cfg Config }

// Refresher returns the store's refresher for this client.
func (c Config) Refresher() Refresher { return Refresher{cfg: c.withDefaults()} }

// Refresh spends refreshToken for a new pair: one HTTP request, never re-sent, because the
// vendor's refresh tokens are single-use. A rejected token is an *oauth2.RetrieveError with
// ErrorCode "invalid_grant"; network errors and 5xx are plain (transient) errors.
func (r Refresher) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	tok, err := r.cfg.token(ctx, "refresh", map[string]string{"grant_type": "refresh_token", "refresh_token": refreshToken})
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken // not rotated: keep the one we have
	}
	return tok, nil
}

// endpoint is the oauth2 view of the vendor's endpoints. The token endpoint takes JSON, which
// x/oauth2 cannot send, so only AuthCodeURL goes through x/oauth2.
func (c Config) endpoint(redirectURI string) *oauth2.Config {
	c = c.withDefaults()
	return &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}
}

// AuthCodeURL is the browser URL that starts the user-login flow. LocaliQ has no PKCE, so
// pkceChallenge is ignored.
func (c Config) AuthCodeURL(state, redirectURI string, pkceChallenge string) string {
	return c.endpoint(redirectURI).AuthCodeURL(state)
}

// Exchange trades an authorization code (valid 10 minutes) for a token pair.
func (c Config) Exchange(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error) {
	return c.withDefaults().token(ctx, "exchange", map[string]string{
		"grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI,
	})
}

// PasswordGrant is the vendor's "direct access" method: business user credentials for a
// token pair.
func (c Config) PasswordGrant(ctx context.Context, username, password string) (*oauth2.Token, error) {
	return c.withDefaults().token(ctx, "password grant", map[string]string{
		"grant_type": "password", "username": username, "password": password,
	})
}

type tokenJSON struct {
	AccessToken  flexString `json:"access_token"`
	TokenType    flexString `json:"token_type"`
	ExpiresIn    flexInt    `json:"expires_in"`
	RefreshToken flexString `json:"refresh_token"`
	CreatedAt    flexInt    `json:"created_at"`
}

var oauthCode = regexp.MustCompile(`^[a-z_]+$`)

// token POSTs a JSON token request exactly once.
func (c Config) token(ctx context.Context, what string, body map[string]string) (*oauth2.Token, error) {
	body["client_id"], body["client_secret"] = c.ClientID, c.ClientSecret
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("localiq: %s: %w", what, err)
	}
	client := httpx.New(httpx.Config{Vendor: "localiq", BaseURL: c.BaseURL, HTTP: c.HTTPClient})
	resp, err := client.Do(ctx, httpx.Request{
		Method: http.MethodPost, Path: c.TokenURL, Endpoint: "oauth/token",
		Body: b, ContentType: "application/json", NoRetry: true,
	})
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) && he.Status >= 400 && he.Status < 500 && he.Status != http.StatusTooManyRequests && he.Status != http.StatusRequestTimeout {
			// httpx renders an OAuth error body as "code: description".
			code, desc, _ := strings.Cut(he.Message, ": ")
			if oauthCode.MatchString(code) {
				return nil, &oauth2.RetrieveError{
					Response:         &http.Response{StatusCode: he.Status, Status: strconv.Itoa(he.Status) + " " + http.StatusText(he.Status)},
					ErrorCode:        code,
					ErrorDescription: desc,
				}
			}
		}
		return nil, fmt.Errorf("localiq: %s: %w", what, err)
	}
	var tj tokenJSON
	if err := json.Unmarshal(resp.Body, &tj); err != nil {
		return nil, fmt.Errorf("localiq: %s: decode token response: %w", what, err)
	}
	if tj.AccessToken == "" {
		return nil, fmt.Errorf("localiq: %s: token response without access_token", what)
	}
	tok := &oauth2.Token{AccessToken: string(tj.AccessToken), TokenType: string(tj.TokenType), RefreshToken: string(tj.RefreshToken)}
	extra := map[string]any{}
	if tj.ExpiresIn > 0 {
		// created_at is the server's issue time (Unix seconds): expiry follows its clock.
		issued := time.Now()
		if tj.CreatedAt > 0 {
			issued = time.Unix(int64(tj.CreatedAt), 0)
			extra["created_at"] = strconv.FormatInt(int64(tj.CreatedAt), 10)
		}
		tok.Expiry = issued.Add(time.Duration(tj.ExpiresIn) * time.Second)
		tok.ExpiresIn = int64(tj.ExpiresIn)
		extra["expires_in"] = strconv.FormatInt(int64(tj.ExpiresIn), 10)
	}
	return tok.WithExtra(extra), nil
}
