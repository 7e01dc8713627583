package localiq

import (
	"cmp"
	"context"

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

// tokenStyle is the vendor's token endpoint: JSON, snake_case, credentials in the body; the
// expiry follows the server's created_at, and both are kept for the token store.
var tokenStyle = httpx.TokenStyle{JSON: true, IssuedAt: "created_at", Extras: []string{"created_at", "expires_in"}}

// token POSTs a JSON token request exactly once.
func (c Config) token(ctx context.Context, what string, body map[string]string) (*oauth2.Token, error) {
	client := httpx.New(httpx.Config{Vendor: "localiq", BaseURL: c.BaseURL, HTTP: c.HTTPClient})
	// The answer does not say whose grant it is: the business user is the password grant's
	// username, else the configured user (whose advertisers the source lists).
	style := tokenStyle
	style.Subject = cmp.Or(body["username"], c.User)
	tok, err := client.Token(ctx, style, c.TokenURL, c.ClientID, c.ClientSecret, body)
	return tok, httpx.TokenFailure(err, "localiq: "+what)
}
