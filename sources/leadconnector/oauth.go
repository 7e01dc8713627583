package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Refresher refreshes the Company grant for the token store: exactly one request, no retry.
type Refresher struct {
	cfg Config
	api *httpx.Client
}

// Refresher returns the refresher of this connection's grant.
func (c Config) Refresher() Refresher {
	c = c.withDefaults()
	return Refresher{cfg: c, api: httpx.New(c.httpConfig())}
}

// Refresh spends refreshToken for a new pair. A rejected refresh token is an
// *oauth2.RetrieveError with ErrorCode "invalid_grant"; "Location is not active", network
// errors and 5xx are plain (transient) errors and the refresh token stays valid.
func (r Refresher) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return r.cfg.tokenRequest(ctx, r.api, "refresh_token", map[string]string{"refresh_token": refreshToken})
}

// AuthCodeURL is the chooselocation page the agency admin opens to install the app. The
// vendor has no PKCE: pkceChallenge is ignored.
func (c Config) AuthCodeURL(state, redirectURI, pkceChallenge string) string {
	c = c.withDefaults()
	oc := oauth2.Config{ClientID: c.ClientID, RedirectURL: redirectURI, Scopes: c.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	return oc.AuthCodeURL(state)
}

// Exchange redeems an authorization code for the Company (agency) token.
func (c Config) Exchange(ctx context.Context, code, redirectURI, pkceVerifier string) (*oauth2.Token, error) {
	c = c.withDefaults()
	return c.tokenRequest(ctx, httpx.New(c.httpConfig()), "authorization_code",
		map[string]string{"code": code, "redirect_uri": redirectURI})
}

// camel names the v3 fields.
var camel = map[string]string{"client_id": "clientId", "client_secret": "clientSecret", "grant_type": "grantType",
	"code": "code", "refresh_token": "refreshToken", "user_type": "userType", "redirect_uri": "redirectUri"}

// tokenRequest posts one token request in the version's field names (2021-07-28: form
// snake_case; v3: form camelCase with the Version header).
func (c Config) tokenRequest(ctx context.Context, api *httpx.Client, grant string, params map[string]string) (*oauth2.Token, error) {
	v3 := c.APIVersion == V3
	form := url.Values{}
	set := func(k, v string) {
		if v3 {
			k = camel[k]
		}
		form.Set(k, v)
	}
	set("client_id", c.ClientID)
	set("client_secret", c.ClientSecret)
	set("grant_type", grant)
	set("user_type", "Company")
	for k, v := range params {
		set(k, v)
	}
	req := httpx.Request{Method: http.MethodPost, Path: c.TokenURL, Endpoint: "oauth/token",
		Body: []byte(form.Encode()), ContentType: "application/x-www-form-urlencoded",
		Bucket: bucketToken, NoRetry: true}
	if v3 {
		req.Header = c.versionHeader()
	}
	resp, err := api.Do(ctx, req)
	if err != nil {
		var he *httpx.Error
		if errors.As(err, &he) && he.Status == http.StatusBadRequest {
			msg := strings.ToLower(he.Message)
			switch {
			case strings.Contains(msg, "not active"):
				return nil, fmt.Errorf("leadconnector: %s: location is not active, try again later: %w", grant, err)
			case strings.Contains(msg, "invalid grant") || strings.Contains(msg, "invalid_grant"):
				return nil, &oauth2.RetrieveError{ErrorCode: "invalid_grant", ErrorDescription: he.Message,
					Response: &http.Response{StatusCode: he.Status, Status: strconv.Itoa(he.Status) + " " + http.StatusText(he.Status)}}
			}
		}
		return nil, fmt.Errorf("leadconnector: %s: %w", grant, err)
	}
	tok, err := parseToken(resp.Body, c.Clock())
	if err != nil {
		return nil, fmt.Errorf("leadconnector: %s: %w", grant, err)
	}
	return tok, nil
}

// tokenJSON holds both the snake_case and camelCase fields: parsers accept either,
// whatever the version.
type tokenJSON struct {
	AccessSnake  string          `json:"access_token"`
	AccessCamel  string          `json:"accessToken"`
	RefreshSnake string          `json:"refresh_token"`
	RefreshCamel string          `json:"refreshToken"`
	TypeSnake    string          `json:"token_type"`
	TypeCamel    string          `json:"tokenType"`
	ExpiresSnake json.RawMessage `json:"expires_in"`
	ExpiresCamel json.RawMessage `json:"expiresIn"`
	Scope        flexString      `json:"scope"`
	UserType     flexString      `json:"userType"`
	CompanyID    flexString      `json:"companyId"`
	LocationID   flexString      `json:"locationId"`
	UserID       flexString      `json:"userId"`
}

// parseToken reads a token answer; expiry is now + expires_in.
func parseToken(body []byte, now time.Time) (*oauth2.Token, error) {
	var t tokenJSON
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("decode token response: %w", err)
	}
	tok := &oauth2.Token{
		AccessToken:  or(t.AccessCamel, t.AccessSnake),
		RefreshToken: or(t.RefreshCamel, t.RefreshSnake),
		TokenType:    or(or(t.TypeCamel, t.TypeSnake), "Bearer"),
	}
	if tok.AccessToken == "" {
		return nil, errors.New("token response has no access token")
	}
	exp := t.ExpiresCamel
	if len(exp) == 0 || string(exp) == "null" {
		exp = t.ExpiresSnake
	}
	if secs, ok := seconds(exp); ok {
		tok.Expiry = now.Add(time.Duration(secs) * time.Second)
		tok.ExpiresIn = secs
	}
	extra := map[string]any{}
	for k, v := range map[string]flexString{"scope": t.Scope, "userType": t.UserType, "companyId": t.CompanyID,
		"locationId": t.LocationID, "userId": t.UserID} {
		if v != "" {
			extra[k] = string(v)
		}
	}
	return tok.WithExtra(extra), nil
}

// seconds reads expires_in, a number or a numeric string.
func seconds(raw json.RawMessage) (int64, bool) {
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return 0, false
		}
	}
	if f <= 0 || math.IsNaN(f) || f > math.MaxInt32 {
		return 0, false
	}
	return int64(f), true
}

// companyID is the configured company, or the grant token's companyId extra.
func (s *Source) companyID(ctx context.Context) (string, error) {
	if s.cfg.CompanyID != "" {
		return s.cfg.CompanyID, nil
	}
	if id, ok := s.company.Load().(string); ok {
		return id, nil
	}
	tok, err := s.tokens.Grant().Token(ctx)
	if err != nil {
		return "", fmt.Errorf("leadconnector: company token: %w", err)
	}
	if id, ok := tok.Extra("companyId").(string); ok && id != "" {
		s.company.Store(id) // a grant never changes company
		return id, nil
	}
	return "", errors.New("leadconnector: the grant has no companyId: set company_id")
}

// minter mints a location token from the Company token (never a location refresh token).
func (s *Source) minter(locationID string) sources.Minter {
	return func(ctx context.Context) (*oauth2.Token, error) {
		company, err := s.companyID(ctx)
		if err != nil {
			return nil, err
		}
		path, endpoint := "/oauth/location-token", "oauth/location-token"
		if s.cfg.APIVersion == V2021 {
			path, endpoint = "/oauth/locationToken", "oauth/locationToken"
		}
		form := url.Values{"companyId": {company}, "locationId": {locationID}}
		var raw json.RawMessage // 200 and 201 both succeed; a cut-short body is retried
		err = s.api.JSON(ctx, httpx.Request{Method: http.MethodPost, Path: path, Endpoint: endpoint,
			Header: s.cfg.versionHeader(), Body: []byte(form.Encode()), ContentType: "application/x-www-form-urlencoded",
			Bucket: bucketCompany, Auth: s.tokens.Grant()}, &raw)
		if err != nil {
			return nil, fmt.Errorf("mint location token for %s: %w", locationID, err)
		}
		tok, err := parseToken(raw, s.cfg.Clock())
		if err != nil {
			return nil, fmt.Errorf("leadconnector: mint location token for %s: %w", locationID, err)
		}
		tok.RefreshToken = "" // minted again from the agency token when it expires
		return tok, nil
	}
}
