package leadconnector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// tokenExtras are the answer's fields the token store keeps: companyId names the agency.
var tokenExtras = []string{"scope", "userType", "companyId", "locationId", "userId"}

// tokenStyle is the version's token endpoint: a form, snake_case (2021-07-28) or camelCase
// with the Version header (v3).
func (c Config) tokenStyle() httpx.TokenStyle {
	st := httpx.TokenStyle{Bucket: bucketToken, Extras: tokenExtras, Refusal: refusal}
	if c.APIVersion == V3 {
		st.Rename = func(k string) string { return camel[k] }
		st.Header = c.versionHeader()
	}
	return st
}

// refusal reads the vendor's 400s: "Location is not active" passes; an invalid grant is
// final. Every other answer stays a plain (transient) error.
func refusal(he *httpx.Error) error {
	if he.Status == http.StatusBadRequest {
		msg := strings.ToLower(he.Message)
		switch {
		case strings.Contains(msg, "not active"):
			return fmt.Errorf("location is not active, try again later: %w", he)
		case strings.Contains(msg, "invalid grant") || strings.Contains(msg, "invalid_grant"):
			return httpx.Refused(he.Status, "invalid_grant", he.Message)
		}
	}
	return he
}

// tokenRequest posts one token request of the Company grant.
func (c Config) tokenRequest(ctx context.Context, api *httpx.Client, grant string, params map[string]string) (*oauth2.Token, error) {
	p := map[string]string{"grant_type": grant, "user_type": "Company"}
	for k, v := range params {
		p[k] = v
	}
	tok, err := api.Token(ctx, c.tokenStyle(), c.TokenURL, c.ClientID, c.ClientSecret, p)
	return tok, httpx.TokenFailure(err, "leadconnector: "+grant)
}

// parseToken reads a token answer (the token endpoint's, or a minted location token's).
func parseToken(body []byte, now time.Time) (*oauth2.Token, error) {
	return httpx.ParseToken(body, now, httpx.TokenStyle{Extras: tokenExtras})
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
