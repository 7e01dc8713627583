package liqtest

import (
	"encoding/json"
	"html"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/leadsync/leadsync/internal/simkit"
)

// The vendor's OAuth error descriptions.
const (
	descInvalidGrant  = "The provided authorization credentials are invalid. Refer to documentation at https://doc.api.localiq.com/#error-codes for further information."
	descInvalidClient = "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."
)

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// redirectAllowed reports whether uri is registered: exactly, or by the loopback rule
// (RFC 8252: a 127.0.0.1/localhost URI matches ignoring the port).
func (f *Fake) redirectAllowed(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return false
	}
	for _, reg := range f.opts.RedirectURIs {
		if reg == uri {
			return true
		}
		ru, err := url.Parse(reg)
		if err != nil || !isLoopback(ru.Hostname()) || !isLoopback(u.Hostname()) {
			continue
		}
		if ru.Scheme == u.Scheme && ru.Hostname() == u.Hostname() && ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func badPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte("<html><body><h1>An error has occurred</h1><p>" + html.EscapeString(msg) + "</p></body></html>"))
}

// authorize is the browser login page: it approves the sandbox user at once.
func (f *Fake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != f.opts.ClientID {
		badPage(w, "Client authentication failed due to unknown client.")
		return
	}
	redirect := q.Get("redirect_uri")
	if !f.redirectAllowed(redirect) {
		badPage(w, "The redirect uri included is not valid.")
		return
	}
	target, _ := url.Parse(redirect)
	v := target.Query()
	if q.Get("response_type") != "code" {
		v.Set("error", "unsupported_response_type")
		v.Set("error_description", "The authorization server does not support this response type.")
	} else {
		v.Set("code", f.codes.Issue(f.opts.ClientID, redirect, strings.ToLower(f.opts.SandboxUser), "", "", CodeTTL))
	}
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	target.RawQuery = v.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

type tokenRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	RefreshToken string `json:"refresh_token"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	CreatedAt    int64  `json:"created_at"`
}

// token is POST /oauth/token with a JSON body.
func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		simkit.WriteJSON(w, status, oauthError{Error: code, Description: desc})
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var req tokenRequest
	if mt != "application/json" {
		fail(http.StatusBadRequest, "invalid_request", "The request body must be JSON (Content-Type: application/json).")
		return
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "The request body is not valid JSON.")
		return
	}
	if req.ClientID != f.opts.ClientID || req.ClientSecret != f.opts.ClientSecret {
		fail(http.StatusUnauthorized, "invalid_client", descInvalidClient)
		return
	}
	meta := map[string]string{"client_id": req.ClientID}
	var pair simkit.Pair
	switch req.GrantType {
	case "authorization_code":
		if req.Code == "" || req.RedirectURI == "" {
			fail(http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: code, redirect_uri.")
			return
		}
		subject, _, _, ok := f.codes.Redeem(req.Code, req.ClientID, req.RedirectURI)
		if !ok {
			fail(http.StatusBadRequest, "invalid_grant", descInvalidGrant)
			return
		}
		_, pair = f.tokens.NewGrant(subject, meta)
		f.counters.Inc(simkit.CountTokenGrants)
	case "password":
		if !strings.EqualFold(req.Username, f.opts.SandboxUser) || req.Password != f.opts.SandboxPassword {
			fail(http.StatusBadRequest, "invalid_grant", descInvalidGrant)
			return
		}
		_, pair = f.tokens.NewGrant(strings.ToLower(f.opts.SandboxUser), meta)
		f.counters.Inc(simkit.CountTokenGrants)
	case "refresh_token":
		if req.RefreshToken == "" {
			fail(http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: refresh_token.")
			return
		}
		// A refresh revokes the access tokens issued before it (the server's framework default).
		res := f.tokens.Refresh(req.RefreshToken, true)
		switch res.Outcome {
		case simkit.RefreshOK:
		case simkit.RefreshReused:
			f.counters.Inc(simkit.CountRefreshReuse)
			fail(http.StatusBadRequest, "invalid_grant", descInvalidGrant)
			return
		default:
			fail(http.StatusBadRequest, "invalid_grant", descInvalidGrant)
			return
		}
		pair = res.Pair
		f.counters.Inc(simkit.CountRefreshes)
		if f.faults.TakeDropRefresh() {
			simkit.DropResponse()
		}
	case "":
		fail(http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: grant_type.")
		return
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	simkit.WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken: pair.Access, TokenType: "bearer", ExpiresIn: int64(pair.TTL.Seconds()),
		RefreshToken: pair.Refresh, CreatedAt: pair.Expiry.Add(-pair.TTL).Unix(),
	})
}
