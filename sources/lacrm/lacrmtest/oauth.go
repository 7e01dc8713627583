package lacrmtest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// authorize is the browser page: it validates the client and redirect_url and auto-approves
// the sandbox user. Errors are an HTML page, never a redirect to an unchecked URL.
func (f *Fake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != f.opts.ClientID {
		errorPage(w, "Unknown client_id.")
		return
	}
	redirect := q.Get("redirect_url")
	if redirect == "" {
		msg := "Missing redirect_url."
		if q.Get("redirect_uri") != "" {
			msg += " (This API calls it redirect_url, not redirect_uri.)"
		}
		errorPage(w, msg)
		return
	}
	if !redirectAllowed(f.opts.RedirectURIs, redirect) {
		errorPage(w, "redirect_url is not registered for this client.")
		return
	}
	if q.Get("response_type") != "code" {
		errorPage(w, "response_type must be code.")
		return
	}
	user := f.opts.SandboxUser
	if u := q.Get("sandbox_user"); u != "" {
		user = u
	}
	f.mu.Lock()
	_, known := f.users[user]
	f.mu.Unlock()
	if !known {
		errorPage(w, "Unknown sandbox user.")
		return
	}
	code := f.codes.Issue(f.opts.ClientID, redirect, user, "", "", codeTTL)
	u, err := url.Parse(redirect)
	if err != nil {
		errorPage(w, "Invalid redirect_url.")
		return
	}
	rq := u.Query()
	rq.Set("code", code)
	if s := q.Get("state"); s != "" {
		rq.Set("state", s)
	}
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func errorPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "<!doctype html><html><body><h1>Authorization error</h1><p>%s</p></body></html>", html.EscapeString(msg))
}

// redirectAllowed: an exact match, or a loopback URL that matches ignoring the port (RFC 8252).
func redirectAllowed(allowed []string, got string) bool {
	if slices.Contains(allowed, got) {
		return true
	}
	g, err := url.Parse(got)
	if err != nil || !isLoopback(g.Hostname()) {
		return false
	}
	for _, a := range allowed {
		au, err := url.Parse(a)
		if err != nil {
			continue
		}
		if au.Scheme == g.Scheme && au.Hostname() == g.Hostname() && au.Path == g.Path && au.RawQuery == g.RawQuery {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	return host == "127.0.0.1" || host == "localhost" || host == "::1"
}

type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	Code         string `json:"code"`
	RedirectURL  string `json:"redirect_url"`
	RefreshToken string `json:"refresh_token"`
}

// tokenResponse is the wire shape of /oauth/token.php.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != f.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(f.opts.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="lacrm"`)
		simkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	var req tokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	switch req.GrantType {
	case "authorization_code":
		if req.Code == "" || req.RedirectURL == "" {
			simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		user, _, _, ok := f.codes.Redeem(req.Code, id, req.RedirectURL)
		if !ok {
			simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		p, ok := f.newGrant(user)
		if !ok {
			simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		writeToken(w, p)
	case "refresh_token":
		f.refresh(w, req.RefreshToken)
	default:
		simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

func (f *Fake) refresh(w http.ResponseWriter, rt string) {
	invalid := func() { simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"}) }
	// One refresh at a time, so a reuse is detected and its grant revoked exactly once.
	f.refreshMu.Lock()
	f.mu.Lock()
	issued, known := f.refreshAt[rt]
	f.mu.Unlock()
	if known && !f.clock.Now().Before(issued.Add(f.opts.RefreshTTL)) {
		f.refreshMu.Unlock()
		invalid()
		return
	}
	res := f.tokens.Refresh(rt, false)
	switch res.Outcome {
	case simkit.RefreshOK:
		f.noteRefresh(res.Pair)
		f.counters.Inc(simkit.CountRefreshes)
	case simkit.RefreshReused:
		// LACRM treats a second use as a man-in-the-middle: the whole authorization goes.
		f.tokens.RevokeGrant(res.Grant)
		f.counters.Inc(simkit.CountRefreshReuse)
		f.counters.Inc(simkit.CountRevokedGrants)
	}
	f.refreshMu.Unlock()
	if res.Outcome != simkit.RefreshOK {
		invalid()
		return
	}
	if f.faults.TakeDropRefresh() {
		simkit.DropResponse()
	}
	writeToken(w, res.Pair)
}

func writeToken(w http.ResponseWriter, p simkit.Pair) {
	w.Header().Set("Cache-Control", "no-store")
	simkit.WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken: p.Access, TokenType: "Bearer", ExpiresIn: int64(p.TTL / time.Second), RefreshToken: p.Refresh,
	})
}
