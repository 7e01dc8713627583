package httpx

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestTokenFormRenamedWithHeader(t *testing.T) {
	t.Parallel()
	var got url.Values
	var version string
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		body, _ := io.ReadAll(r.Body)
		got, _ = url.ParseQuery(string(body))
		version = r.Header.Get("Version")
		ok(w, `{"accessToken":"at","refreshToken":"rt","expiresIn":"86399","companyId":"c1","other":"x"}`)
	}, nil)
	camel := map[string]string{"client_id": "clientId", "client_secret": "clientSecret", "grant_type": "grantType", "refresh_token": "refreshToken"}
	style := TokenStyle{Rename: func(k string) string { return camel[k] }, Header: http.Header{"Version": {"v3"}}, Extras: []string{"companyId"}}
	tok, err := b.client.Token(b.ctx, style, b.srv.URL+"/oauth/token", "id", "secret", map[string]string{"grant_type": "refresh_token", "refresh_token": "old"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Get("clientId") != "id" || got.Get("clientSecret") != "secret" || got.Get("refreshToken") != "old" || got.Get("grantType") != "refresh_token" || version != "v3" {
		t.Fatalf("request %v, version %q", got, version)
	}
	if tok.AccessToken != "at" || tok.RefreshToken != "rt" || tok.TokenType != "Bearer" || !tok.Expiry.Equal(b.clock.Now().Add(86399*time.Second)) {
		t.Fatalf("token %+v", tok)
	}
	if tok.Extra("companyId") != "c1" || tok.Extra("other") != nil {
		t.Fatalf("extras: companyId %v, other %v (only the declared extras are kept)", tok.Extra("companyId"), tok.Extra("other"))
	}
}

func TestTokenJSONBasicAuthIssuedAt(t *testing.T) {
	t.Parallel()
	var body map[string]string
	var user, pass string
	var basic bool
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		_ = json.NewDecoder(r.Body).Decode(&body)
		user, pass, basic = r.BasicAuth()
		ok(w, `{"access_token":"at","token_type":"bearer","expires_in":7200,"created_at":1700000000}`)
	}, nil)
	tok, err := b.client.Token(b.ctx, TokenStyle{JSON: true, BasicAuth: true, IssuedAt: "created_at", Extras: []string{"created_at"}},
		b.srv.URL+"/token", "id", "secret", map[string]string{"grant_type": "authorization_code", "code": "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !basic || user != "id" || pass != "secret" || body["client_id"] != "" || body["code"] != "c" {
		t.Fatalf("basic %v %q:%q, body %v", basic, user, pass, body)
	}
	if want := time.Unix(1700000000+7200, 0); !tok.Expiry.Equal(want) || tok.TokenType != "bearer" || tok.Extra("created_at") != "1700000000" {
		t.Fatalf("token %+v, created_at %v", tok, tok.Extra("created_at"))
	}
}

func TestTokenRefusalsAndFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		status     int
		code       string // "" : not a refusal
		style      TokenStyle
	}{
		{"oauth code", `{"error":"invalid_grant","error_description":"used"}`, 400, "invalid_grant", TokenStyle{}},
		{"4xx without a code", `{"message":"Bad thing"}`, 400, "", TokenStyle{}},
		{"429 is not a refusal", `{"error":"slow_down"}`, 429, "", TokenStyle{}},
		{"5xx", `oops`, 502, "", TokenStyle{}},
		{"vendor's own", `{"message":"Invalid grant"}`, 400, "invalid_grant", TokenStyle{Refusal: func(e *Error) error {
			return Refused(e.Status, "invalid_grant", e.Message)
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) { status(w, tc.status, tc.body) }, nil)
			_, err := b.client.Token(b.ctx, tc.style, b.srv.URL+"/t", "id", "s", map[string]string{"grant_type": "refresh_token"})
			var re *oauth2.RetrieveError
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.code != "" && (!errors.As(err, &re) || re.ErrorCode != tc.code):
				t.Fatalf("want refusal %q, got %v", tc.code, err)
			case tc.code == "" && errors.As(err, &re):
				t.Fatalf("want a transient error, got refusal %v", err)
			}
			if b.hits.Load() != 1 {
				t.Fatalf("%d requests: a token request is never re-sent", b.hits.Load())
			}
		})
	}
}

func TestTokenAnswerWithoutAccessToken(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		ok(w, `{"access_token":null,"expires_in":"soon"}`)
	}, nil)
	if _, err := b.client.Token(b.ctx, TokenStyle{}, b.srv.URL+"/t", "id", "s", nil); err == nil {
		t.Fatal("an answer without an access token was accepted")
	}
}
