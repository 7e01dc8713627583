package lctest

import (
	"net/http"
	"slices"
	"strings"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Vendor error messages, verbatim.
const (
	MsgNoVersion      = "version header was not found."
	MsgInvalidJWT     = "Invalid JWT"
	MsgAuthClass      = "This authClass type is not allowed to access this scope."
	MsgScope          = "The token is not authorized for this scope."
	MsgNoLocation     = "The token does not have access to this location."
	MsgInvalidRefresh = "Invalid grant: refresh token is invalid"
	MsgNotActive      = "Location is not active"
)

// call is an authenticated API request.
type call struct {
	version  string
	userType string // "Company" or "Location"
	company  string
	location string // location tokens only
	scope    string
	grant    string
	userID   string
	q        quota
}

// endpoint describes one API route: which versions serve it, who may call it.
type endpoint struct {
	method, path string
	version      string // "" both; else only this one
	other        string // the same endpoint's path under the other version
	class        string // required userType
	scope        string
	h            func(http.ResponseWriter, *http.Request, *call)
}

func (f *Fake) routes() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("POST /oauth/token", f.handleToken)
	for _, e := range append([]endpoint{
		{method: "POST", path: "/oauth/locationToken", version: V2021, other: "/oauth/location-token", class: "Company", scope: "oauth.write", h: f.handleLocationToken},
		{method: "POST", path: "/oauth/location-token", version: V3, class: "Company", scope: "oauth.write", h: f.handleLocationToken},
		{method: "GET", path: "/oauth/installedLocations", version: V2021, other: "/oauth/installed-locations", class: "Company", scope: "oauth.readonly", h: f.handleInstalled2021},
		{method: "GET", path: "/oauth/installed-locations", version: V3, class: "Company", scope: "oauth.readonly", h: f.handleInstalledV3},
		{method: "POST", path: "/contacts/search", class: "Location", scope: "contacts.readonly", h: f.handleSearch},
	}, f.lifecycleEndpoints()...) {
		api.Handle(e.method+" "+e.path, f.api(e))
	}
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, f.limits.fresh(), http.StatusNotFound, "Cannot "+r.Method+" "+r.URL.Path)
	})
	vendor := simkit.CountRequests(
		f.faults.Middleware(api, f.counters, func(w http.ResponseWriter) { write429(w, f.limits.empty()) }),
		f.counters, endpointName)

	root := http.NewServeMux()
	root.Handle("/_admin/", http.StripPrefix("/_admin", f.adminRoutes()))
	root.HandleFunc("GET /oauth/chooselocation", f.handleAuthorize)
	root.HandleFunc("GET /v2/oauth/chooselocation", f.handleAuthorize)
	root.Handle("/", vendor)
	return root
}

// endpointName is the counters' PII-free name of a request: its path without the slash.
func endpointName(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }

// api checks, in the vendor's order: Version header, the path's version, the bearer token,
// the resource's rate limits, the token's class and scope.
func (f *Fake) api(e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ver := r.Header.Get("Version")
		switch {
		case ver == "":
			writeError(w, f.limits.fresh(), http.StatusUnauthorized, MsgNoVersion)
			return
		case ver != V2021 && ver != V3:
			writeError(w, f.limits.fresh(), http.StatusBadRequest, "Invalid API version: "+ver)
			return
		case e.version != "" && ver != e.version && e.other != "":
			writeError(w, f.limits.fresh(), http.StatusBadRequest, "Endpoint "+e.method+" "+e.path+
				" is not available in API version "+ver+". Use "+e.method+" "+e.other+" instead.")
			return
		case e.version != "" && ver != e.version:
			writeError(w, f.limits.fresh(), http.StatusNotFound, "Cannot "+e.method+" "+e.path)
			return
		}
		c, ok := f.authenticate(r)
		if !ok {
			writeError(w, f.limits.fresh(), http.StatusUnauthorized, MsgInvalidJWT)
			return
		}
		c.version = ver
		resource := c.company
		if c.location != "" {
			resource = c.location
		}
		allowed, q := f.limits.take(resource)
		c.q = q
		if !allowed {
			write429(w, q)
			return
		}
		if c.userType != e.class {
			writeError(w, q, http.StatusUnauthorized, MsgAuthClass)
			return
		}
		if !slices.Contains(strings.Fields(c.scope), e.scope) {
			writeError(w, q, http.StatusUnauthorized, MsgScope)
			return
		}
		e.h(w, r, c)
	})
}

// authenticate resolves the bearer token: a grant's token (Company, or Location for a
// location-level install), a minted location token, or a Private Integration Token.
func (f *Fake) authenticate(r *http.Request) (*call, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return nil, false
	}
	tok = strings.TrimSpace(tok)
	if strings.HasPrefix(tok, PITPrefix) {
		return f.authenticatePIT(tok)
	}
	st, g, meta := f.tokens.Check(tok)
	if st != simkit.AccessValid {
		return nil, false
	}
	if meta == nil {
		meta = g.Meta
	}
	return &call{userType: meta["userType"], company: meta["companyId"], location: meta["locationId"],
		scope: meta["scope"], grant: g.ID, userID: meta["userId"]}, true
}

// writeError answers in the vendor's common shape: {"statusCode","message"} plus "error" for
// the statuses whose DTO carries it.
func writeError(w http.ResponseWriter, q quota, status int, msg string) {
	q.write(w.Header())
	body := map[string]any{"statusCode": status, "message": msg}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		body["error"] = http.StatusText(status)
	}
	simkit.WriteJSON(w, status, body)
}

// write422 is a validation failure: message is an array.
func write422(w http.ResponseWriter, q quota, msgs ...string) {
	q.write(w.Header())
	simkit.WriteJSON(w, http.StatusUnprocessableEntity,
		map[string]any{"statusCode": 422, "message": msgs, "error": "Unprocessable Entity"})
}

// writeAIP is a v3 AIP error envelope.
func writeAIP(w http.ResponseWriter, q quota, status int, code, msg string, details map[string]any, resolution string) {
	q.write(w.Header())
	e := map[string]any{"code": code, "message": msg}
	if details != nil {
		e["details"] = details
	}
	if resolution != "" {
		e["resolution"] = resolution
	}
	simkit.WriteJSON(w, status, map[string]any{"error": e})
}
