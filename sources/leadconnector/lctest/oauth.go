package lctest

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// codeTTL is how long an authorization code can be redeemed.
const codeTTL = 10 * time.Minute

// handleAuthorize is the chooselocation page: it auto-approves the sandbox user's agency
// and redirects back with a code. Bad client or redirect URI: a 400 page, never a redirect.
func (f *Fake) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, redirect := q.Get("client_id"), q.Get("redirect_uri")
	if clientID != f.opts.ClientID {
		authPageError(w, "Invalid client_id: this app is not registered.")
		return
	}
	if redirect == "" || !f.redirectAllowed(redirect) {
		authPageError(w, "Invalid redirect_uri: it is not registered for this app.")
		return
	}
	back, err := url.Parse(redirect)
	if err != nil {
		authPageError(w, "Invalid redirect_uri.")
		return
	}
	v := back.Query()
	if q.Get("response_type") != "code" {
		v.Set("error", "unsupported_response_type")
	} else {
		code := f.codes.Issue(clientID, redirect, f.opts.SandboxUser, "", "", codeTTL)
		f.mu.Lock()
		f.codeScopes[code] = cmp.Or(q.Get("scope"), f.opts.Scopes)
		f.mu.Unlock()
		v.Set("code", code)
	}
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func authPageError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<!doctype html><html><head><title>Authorization error</title></head><body><h1>Authorization error</h1><p>%s</p></body></html>", html.EscapeString(msg))
}

// tokenParams reads a token request in the version's field names: 2021-07-28 form snake_case;
// v3 camelCase as form or JSON.
type tokenParams struct {
	clientID, clientSecret, grantType, code, refreshToken, userType, redirectURI string
}

func readTokenParams(r *http.Request, v3 bool) (tokenParams, bool) {
	get := func(string) string { return "" }
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case v3 && ct == "application/json":
		var m map[string]any
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || json.Unmarshal(b, &m) != nil {
			return tokenParams{}, false
		}
		get = func(k string) string { s, _ := m[k].(string); return s }
	case ct == "application/x-www-form-urlencoded":
		if r.ParseForm() != nil {
			return tokenParams{}, false
		}
		get = r.PostForm.Get
	}
	if v3 {
		return tokenParams{get("clientId"), get("clientSecret"), get("grantType"), get("code"),
			get("refreshToken"), get("userType"), get("redirectUri")}, true
	}
	return tokenParams{get("client_id"), get("client_secret"), get("grant_type"), get("code"),
		get("refresh_token"), get("user_type"), get("redirect_uri")}, true
}

// handleToken serves the code and refresh grants with single-use refresh tokens and the
// 30 s same-token grace window.
func (f *Fake) handleToken(w http.ResponseWriter, r *http.Request) {
	v3 := r.Header.Get("Version") == V3
	q := f.limits.fresh()
	q.write(w.Header())
	name := func(snake, camel string) string {
		if v3 {
			return camel
		}
		return snake
	}
	p, ok := readTokenParams(r, v3)
	if !ok {
		writeError(w, q, http.StatusBadRequest, "Invalid request body")
		return
	}
	for _, req := range []struct{ val, snake, camel string }{
		{p.clientID, "client_id", "clientId"}, {p.clientSecret, "client_secret", "clientSecret"},
		{p.grantType, "grant_type", "grantType"},
	} {
		if req.val == "" {
			writeError(w, q, http.StatusBadRequest, "Missing parameter: "+name(req.snake, req.camel))
			return
		}
	}
	if p.clientID != f.opts.ClientID || p.clientSecret != f.opts.ClientSecret {
		writeError(w, q, http.StatusUnauthorized, "Invalid client: client credentials are invalid")
		return
	}
	switch p.grantType {
	case "authorization_code":
		f.codeGrant(w, q, p, v3, name)
	case "refresh_token":
		f.refreshGrant(w, q, p, v3, name)
	default:
		writeError(w, q, http.StatusBadRequest, "Invalid parameter: "+name("grant_type", "grantType"))
	}
}

func (f *Fake) codeGrant(w http.ResponseWriter, q quota, p tokenParams, v3 bool, name func(string, string) string) {
	if p.code == "" {
		writeError(w, q, http.StatusBadRequest, "Missing parameter: code")
		return
	}
	subject, _, _, ok := f.codes.Redeem(p.code, p.clientID, p.redirectURI)
	f.mu.Lock()
	scope := f.codeScopes[p.code]
	delete(f.codeScopes, p.code)
	f.mu.Unlock()
	if !ok {
		writeError(w, q, http.StatusBadRequest, "Invalid grant: authorization code is invalid")
		return
	}
	meta := f.companyMeta(scope)
	switch p.userType {
	case "Company":
	case "", "Location": // the vendor's default: a location-level install of the first location
		meta["userType"] = "Location"
		meta["locationId"] = f.LocationIDs()[0]
	default:
		writeError(w, q, http.StatusBadRequest, "Invalid parameter: "+name("user_type", "userType"))
		return
	}
	_, pair := f.tokens.NewGrant(subject, meta)
	f.counters.Inc(simkit.CountTokenGrants)
	f.writeToken(w, http.StatusOK, pair, meta, v3)
}

func (f *Fake) refreshGrant(w http.ResponseWriter, q quota, p tokenParams, v3 bool, name func(string, string) string) {
	if p.refreshToken == "" {
		writeError(w, q, http.StatusBadRequest, "Missing parameter: "+name("refresh_token", "refreshToken"))
		return
	}
	f.mu.Lock()
	inactive := f.inactive
	f.mu.Unlock()
	if inactive { // transient: the refresh token stays valid
		writeError(w, q, http.StatusBadRequest, MsgNotActive)
		return
	}
	res := f.tokens.Refresh(p.refreshToken, false)
	switch res.Outcome {
	case simkit.RefreshOK:
		f.counters.Inc(simkit.CountRefreshes)
		_, g, _ := f.tokens.Check(res.Pair.Access)
		if f.faults.TakeDropRefresh() {
			simkit.DropResponse()
		}
		f.writeToken(w, http.StatusOK, res.Pair, g.Meta, v3)
	case simkit.RefreshReused:
		if f.clock.Now().Sub(res.UsedAt) <= GraceWindow {
			f.counters.Inc("refresh_grace")
			_, g, _ := f.tokens.Check(res.Pair.Access)
			f.writeToken(w, http.StatusOK, res.Pair, g.Meta, v3)
			return
		}
		f.counters.Inc(simkit.CountRefreshReuse)
		writeError(w, q, http.StatusBadRequest, MsgInvalidRefresh)
	default:
		writeError(w, q, http.StatusBadRequest, MsgInvalidRefresh)
	}
}

// writeToken answers a token (grant or minted) in the version's case.
func (f *Fake) writeToken(w http.ResponseWriter, status int, p simkit.Pair, meta map[string]string, v3 bool) {
	exp := int(math.Round(p.Expiry.Sub(f.clock.Now()).Seconds()))
	k := func(snake, camel string) string {
		if v3 {
			return camel
		}
		return snake
	}
	body := map[string]any{
		k("access_token", "accessToken"): p.Access,
		k("token_type", "tokenType"):     "Bearer",
		k("expires_in", "expiresIn"):     max(exp, 0),
		"scope":                          meta["scope"],
		"userId":                         meta["userId"],
	}
	if p.Refresh != "" {
		body[k("refresh_token", "refreshToken")] = p.Refresh
	}
	if meta["locationId"] != "" {
		body["locationId"] = meta["locationId"]
	}
	if p.Refresh != "" { // grant tokens describe the install
		body["userType"] = meta["userType"]
		body["companyId"] = meta["companyId"]
		body["isBulkInstallation"] = false
		if meta["userType"] == "Company" {
			body["approveAllLocations"] = true
			body["installToFutureLocations"] = true
		}
	} else {
		body["appId"] = f.appID
	}
	simkit.WriteJSON(w, status, body)
}

// handleLocationToken mints a location access token from a Company token.
func (f *Fake) handleLocationToken(w http.ResponseWriter, r *http.Request, c *call) {
	var companyID, locationID string
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" && c.version == V3 {
		var b struct{ CompanyID, LocationID string }
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b)
		companyID, locationID = b.CompanyID, b.LocationID
	} else if r.ParseForm() == nil {
		companyID, locationID = r.PostForm.Get("companyId"), r.PostForm.Get("locationId")
	}
	var missing []string
	if companyID == "" {
		missing = append(missing, "companyId should not be empty", "companyId must be a string")
	}
	if locationID == "" {
		missing = append(missing, "locationId should not be empty", "locationId must be a string")
	}
	if len(missing) > 0 {
		write422(w, c.q, missing...)
		return
	}
	if companyID != c.company {
		writeError(w, c.q, http.StatusForbidden, "The token does not have access to this company.")
		return
	}
	f.mu.Lock()
	_, known := f.byID[locationID]
	f.mu.Unlock()
	if !known {
		writeError(w, c.q, http.StatusBadRequest, "Location not found or app not installed on this location")
		return
	}
	meta := map[string]string{"userType": "Location", "companyId": c.company, "locationId": locationID,
		"scope": c.scope, "userId": c.userID}
	pair := f.tokens.IssueAccess(c.grant, meta)
	status := http.StatusOK
	if f.opts.LocationToken201 {
		status = http.StatusCreated
	}
	c.q.write(w.Header())
	f.writeToken(w, status, pair, meta, c.version == V3)
}

type installedLocation struct {
	ID          string `json:"_id"`
	Name        string `json:"name"`
	Address     string `json:"address"`
	IsInstalled bool   `json:"isInstalled"`
	InstalledAt string `json:"installedAt"`
}

// installedPage returns locations [skip, skip+limit) and the total.
func (f *Fake) installedPage(skip, limit int) ([]installedLocation, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []installedLocation{}
	for i := skip; i < len(f.locs) && i < skip+limit; i++ {
		l := f.locs[i]
		out = append(out, installedLocation{ID: l.ID, Name: l.Name, Address: l.Address, IsInstalled: true,
			InstalledAt: isoMillis(l.InstalledAt)})
	}
	return out, len(f.locs)
}

// handleInstalled2021 lists installed locations with skip/limit.
func (f *Fake) handleInstalled2021(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	var msgs []string
	if q.Get("companyId") == "" {
		msgs = append(msgs, "companyId should not be empty")
	}
	if q.Get("appId") == "" {
		msgs = append(msgs, "appId should not be empty")
	}
	skip, errS := strconv.Atoi(cmp.Or(q.Get("skip"), "0"))
	limit, errL := strconv.Atoi(cmp.Or(q.Get("limit"), "20"))
	if errS != nil || skip < 0 {
		msgs = append(msgs, "skip must be a number string")
	}
	if errL != nil || limit < 1 || limit > 100 {
		msgs = append(msgs, "limit must be a number string between 1 and 100")
	}
	if len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	if q.Get("appId") != f.appID {
		writeError(w, c.q, http.StatusNotFound, "App not found")
		return
	}
	if q.Get("companyId") != c.company {
		writeError(w, c.q, http.StatusForbidden, "The token does not have access to this company.")
		return
	}
	locs, total := f.installedPage(skip, limit)
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"locations": locs, "count": total, "installToFutureLocations": true})
}

type pageToken struct {
	Skip int `json:"skip"`
}

func encodePageToken(skip int) string {
	b, _ := json.Marshal(pageToken{Skip: skip})
	return base64.RawURLEncoding.EncodeToString(b)
}

// handleInstalledV3 lists installed locations with pageSize/pageToken (AIP-158).
func (f *Fake) handleInstalledV3(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	for _, p := range []string{"companyId", "appId"} {
		if q.Get(p) == "" {
			writeAIP(w, c.q, http.StatusBadRequest, "INVALID_ARGUMENT", "Missing required parameter: "+p,
				map[string]any{"field": p}, "Pass "+p+" as a query parameter.")
			return
		}
	}
	size, err := strconv.Atoi(cmp.Or(q.Get("pageSize"), "20"))
	if err != nil || size < 1 || size > 100 {
		writeAIP(w, c.q, http.StatusBadRequest, "INVALID_ARGUMENT", "pageSize must be between 1 and 100",
			map[string]any{"field": "pageSize"}, "")
		return
	}
	skip := 0
	if t := q.Get("pageToken"); t != "" {
		var pt pageToken
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(t, "="))
		if err != nil || json.Unmarshal(b, &pt) != nil || pt.Skip < 0 {
			writeAIP(w, c.q, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid pageToken",
				map[string]any{"field": "pageToken"}, "Pass the nextPageToken of a previous response unchanged.")
			return
		}
		skip = pt.Skip
	}
	if q.Get("appId") != f.appID {
		writeAIP(w, c.q, http.StatusNotFound, "RESOURCE_NOT_FOUND", "The requested App '"+q.Get("appId")+"' was not found.",
			map[string]any{"resource": "App", "identifier": q.Get("appId")}, "Verify the App exists and you have permission to access it.")
		return
	}
	if q.Get("companyId") != c.company {
		writeAIP(w, c.q, http.StatusForbidden, "PERMISSION_DENIED", "The token does not have access to this company.", nil, "")
		return
	}
	locs, total := f.installedPage(skip, size)
	pg := map[string]any{"totalRecords": total, "currentPageSize": len(locs),
		"hasNextPage": skip+len(locs) < total, "hasPrevPage": skip > 0}
	if skip+len(locs) < total {
		pg["nextPageToken"] = encodePageToken(skip + len(locs))
	}
	if skip > 0 {
		pg["prevPageToken"] = encodePageToken(max(skip-size, 0))
	}
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{
		"items":      locs,
		"pagination": pg,
		"metadata": map[string]any{
			"filterApplied": map[string]any{"companyId": c.company, "isInstalled": true},
			"sortApplied":   map[string]any{"installedAt": "asc"},
		},
		"installToFutureLocations": true,
	})
}
