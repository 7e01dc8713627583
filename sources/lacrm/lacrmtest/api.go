package lacrmtest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// APIError is the body of every API error (HTTP 400, or 429 for the rate limit).
type APIError struct {
	ErrorCode        string `json:"ErrorCode"`
	ErrorDescription string `json:"ErrorDescription"`
}

func apiError(w http.ResponseWriter, code, desc string) {
	simkit.WriteJSON(w, http.StatusBadRequest, APIError{code, desc})
}

func write429(w http.ResponseWriter, retryAfter int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	simkit.WriteJSON(w, http.StatusTooManyRequests, APIError{"RateLimitExceeded",
		"You have made too many requests. Please wait before trying again."})
}

// fnSlot carries the called Function to the request counter.
type fnSlot struct{ name string }

type fnSlotKey struct{}

// withFnSlot names API requests by Function before faults apply, so that injected faults
// are counted under the function too.
func withFnSlot(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot := &fnSlot{}
		if strings.HasPrefix(r.URL.Path, "/v2") && r.Body != nil {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err == nil {
				var req apiRequest
				if json.Unmarshal(body, &req) == nil {
					slot.name = req.Function
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fnSlotKey{}, slot)))
	})
}

// endpointName is the counters' name for a request: "oauth/token", "v2/GetContacts", ...
func endpointName(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.URL.Path, "/oauth/token"):
		return "oauth/token"
	case strings.HasPrefix(r.URL.Path, "/oauth/authorize"):
		return "oauth/authorize"
	case strings.HasPrefix(r.URL.Path, "/v2"):
		if s, _ := r.Context().Value(fnSlotKey{}).(*fnSlot); s != nil && s.name != "" {
			return "v2/" + s.name
		}
		return "v2"
	}
	return "other"
}

type apiRequest struct {
	Function   string                     `json:"Function"`
	Parameters map[string]json.RawMessage `json:"Parameters"`
}

func (f *Fake) api(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var req apiRequest
	decErr := json.Unmarshal(body, &req)
	who, desc := f.authenticate(r)
	if desc != "" {
		apiError(w, "InvalidCredentials", "Invalid credentials: "+desc)
		return
	}
	if ok, _, reset := f.limiter.Take(who.bucket); !ok {
		write429(w, max(1, int(math.Ceil(reset.Sub(f.clock.Now()).Seconds()))))
		return
	}
	if r.Method != http.MethodPost {
		apiError(w, "InvalidMethod", "API calls must be POST requests.")
		return
	}
	if readErr != nil || decErr != nil {
		apiError(w, "InvalidJson", "The request body is not valid JSON.")
		return
	}
	p := params(req.Parameters)
	acct := who.account
	var (
		out any
		err error
	)
	switch req.Function {
	case "GetContacts":
		out, err = f.getContacts(acct, p)
	case "GetPipelines":
		out, err = f.getPipelines(acct)
	case "GetPipelineItems":
		out, err = f.getPipelineItems(acct, p)
	case "GetCustomFields":
		out, err = f.getCustomFields(acct, p)
	case "GetUser":
		out, err = f.getUser(who)
	case "":
		err = paramError{"MissingFunction", "The Function field is required."}
	default:
		err = paramError{"InvalidFunction", fmt.Sprintf("Unknown function %q.", req.Function)}
	}
	if err != nil {
		var pe paramError
		if e, ok := err.(paramError); ok {
			pe = e
		} else {
			pe = paramError{"InternalError", err.Error()}
		}
		apiError(w, pe.code, pe.desc)
		return
	}
	simkit.WriteJSON(w, http.StatusOK, out)
}

type paramError struct{ code, desc string }

func (e paramError) Error() string { return e.code + ": " + e.desc }

// caller is who an API request authenticated as.
type caller struct {
	user, account string
	bucket        string // rate-limit bucket: the grant (or the API key's user)
}

// authenticate identifies the caller, or says why the credentials are invalid.
func (f *Fake) authenticate(r *http.Request) (caller, string) {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		state, grant, _ := f.tokens.Check(tok)
		switch state {
		case simkit.AccessUnknown:
			return caller{}, "unknown access token."
		case simkit.AccessExpired:
			return caller{}, "the access token has expired."
		case simkit.AccessRevoked:
			return caller{}, "the access token has been revoked."
		}
		return caller{user: grant.Subject, account: grant.Meta["account_id"], bucket: grant.ID}, ""
	}
	if h == "" {
		return caller{}, "no Authorization header."
	}
	return f.apiKeyCaller(h)
}

type params map[string]json.RawMessage

// str reads a string parameter; LACRM accepts numbers where ids are expected.
func (p params) str(key string) (string, error) {
	raw, ok := p[key]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", paramError{"InvalidParameter", fmt.Sprintf("Parameter %s must be a string.", key)}
}

func (p params) int(key string, def, lo, hi int) (int, error) {
	s, err := p.str(key)
	if err != nil || s == "" {
		return def, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, paramError{"InvalidParameter", fmt.Sprintf("Parameter %s must be an integer from %d to %d.", key, lo, hi)}
	}
	return n, nil
}

func (p params) oneOf(key, def string, allowed ...string) (string, error) {
	s, err := p.str(key)
	if err != nil || s == "" {
		return def, err
	}
	if !slices.Contains(allowed, s) {
		return "", paramError{"InvalidParameter", fmt.Sprintf("Parameter %s must be one of %s.", key, strings.Join(allowed, ", "))}
	}
	return s, nil
}

type pageArgs struct {
	sortBy, dir string
	size, page  int
}

func (p params) paging(sorts ...string) (pageArgs, error) {
	var a pageArgs
	var err error
	if a.sortBy, err = p.oneOf("SortBy", sorts[0], sorts...); err != nil {
		return a, err
	}
	if a.dir, err = p.oneOf("SortDirection", "Descending", "Ascending", "Descending"); err != nil {
		return a, err
	}
	if a.size, err = p.int("MaxNumberOfResults", 500, 1, 10000); err != nil {
		return a, err
	}
	a.page, err = p.int("Page", 1, 1, math.MaxInt32)
	return a, err
}

// window sorts rows and returns the requested page: the Page-number paging that a moving
// LastUpdate sort makes slippery, exactly like the real API.
func window[T any](rows []T, a pageArgs, key func(T) (time.Time, string), id func(T) string) ([]T, bool) {
	slices.SortFunc(rows, func(x, y T) int {
		tx, sx := key(x)
		ty, sy := key(y)
		c := tx.Compare(ty)
		if c == 0 {
			c = strings.Compare(sx, sy)
		}
		if a.dir == "Descending" {
			c = -c
		}
		return cmp.Or(c, strings.Compare(id(x), id(y)))
	})
	start := (a.page - 1) * a.size
	if start >= len(rows) {
		return nil, false
	}
	end := min(start+a.size, len(rows))
	return rows[start:end], end < len(rows)
}

type listResponse struct {
	HasMoreResults bool             `json:"HasMoreResults"`
	Results        []map[string]any `json:"Results"`
}

func (f *Fake) getContacts(acctID string, p params) (any, error) {
	a, err := p.paging("DateCreated", "LastUpdate", "FirstName", "LastName")
	if err != nil {
		return nil, err
	}
	filter, err := p.oneOf("RecordTypeFilter", "", "Contacts", "Companies", "All")
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	acct := f.accounts[acctID]
	if acct == nil {
		return nil, paramError{"InvalidCredentials", "Invalid credentials: the account no longer exists."}
	}
	var rows []*contact
	for _, c := range acct.contacts {
		if (filter == "Contacts" && c.IsCompany) || (filter == "Companies" && !c.IsCompany) {
			continue
		}
		rows = append(rows, c)
	}
	page, more := window(rows, a, func(c *contact) (time.Time, string) {
		switch a.sortBy {
		case "LastUpdate":
			return c.Updated, ""
		case "FirstName":
			return time.Time{}, c.First
		case "LastName":
			return time.Time{}, c.Last
		}
		return c.Created, ""
	}, func(c *contact) string { return c.ID })
	out := listResponse{HasMoreResults: more, Results: make([]map[string]any, 0, len(page))}
	for _, c := range page {
		out.Results = append(out.Results, c.json(acct.zone))
	}
	return out, nil
}

func (f *Fake) getPipelines(acctID string) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	acct := f.accounts[acctID]
	if acct == nil {
		return nil, paramError{"InvalidCredentials", "Invalid credentials: the account no longer exists."}
	}
	out := []map[string]any{}
	for _, pl := range acct.pipelines {
		sts := []map[string]any{}
		for _, s := range pl.Statuses {
			sts = append(sts, map[string]any{"StatusId": s.ID, "Name": s.Name, "IsActive": s.Active})
		}
		out = append(out, map[string]any{"PipelineId": pl.ID, "Name": pl.Name, "Statuses": sts})
	}
	return out, nil
}

func (f *Fake) getPipelineItems(acctID string, p params) (any, error) {
	plID, err := p.str("PipelineId")
	if err != nil {
		return nil, err
	}
	if plID == "" {
		return nil, paramError{"MissingParameter", "Parameter PipelineId is required."}
	}
	a, err := p.paging("DateCreated", "LastUpdate")
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	acct := f.accounts[acctID]
	if acct == nil {
		return nil, paramError{"InvalidCredentials", "Invalid credentials: the account no longer exists."}
	}
	if acct.pipeline(plID) == nil {
		return nil, paramError{"InvalidParameter", "PipelineId does not match a pipeline in this account."}
	}
	var rows []*item
	for _, it := range acct.items {
		if it.PipelineID == plID {
			rows = append(rows, it)
		}
	}
	page, more := window(rows, a, func(it *item) (time.Time, string) {
		if a.sortBy == "LastUpdate" {
			return it.Updated, ""
		}
		return it.Created, ""
	}, func(it *item) string { return it.ID })
	out := listResponse{HasMoreResults: more, Results: make([]map[string]any, 0, len(page))}
	for _, it := range page {
		out.Results = append(out.Results, it.json(acct))
	}
	return out, nil
}

// getCustomFields answers GetCustomFields (API-CONTRACTS.md §5.2, from third-party clients):
// RecordType (Contact, Company or Pipeline; none: every field) and PipelineId (a pipeline's
// fields only) filter the definitions. Paging and the {HasMoreResults, Results} answer are
// [ours], the shape of the other listings; the source also reads a bare list.
func (f *Fake) getCustomFields(acctID string, p params) (any, error) {
	recordType, err := p.oneOf("RecordType", "", recordContact, recordCompany, recordPipeline)
	if err != nil {
		return nil, err
	}
	plID, err := p.str("PipelineId")
	if err != nil {
		return nil, err
	}
	size, err := p.int("MaxNumberOfResults", 500, 1, 10000)
	if err != nil {
		return nil, err
	}
	page, err := p.int("Page", 1, 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	acct := f.accounts[acctID]
	if acct == nil {
		return nil, paramError{"InvalidCredentials", "Invalid credentials: the account no longer exists."}
	}
	if plID != "" {
		if recordType != "" && recordType != recordPipeline {
			return nil, paramError{"InvalidParameter", "PipelineId is only valid with RecordType Pipeline."}
		}
		if acct.pipeline(plID) == nil {
			return nil, paramError{"InvalidParameter", "PipelineId does not match a pipeline in this account."}
		}
		recordType = recordPipeline
	}
	fields := acct.fieldsOf(recordType, plID)
	start := min((page-1)*size, len(fields))
	end := min(start+size, len(fields))
	out := listResponse{HasMoreResults: end < len(fields), Results: make([]map[string]any, 0, end-start)}
	for _, fd := range fields[start:end] {
		out.Results = append(out.Results, fd.json())
	}
	return out, nil
}

// getUser answers GetUser. AccountId and CompanyName are [ours]: the sandbox's way to name
// the one account a grant sees.
func (f *Fake) getUser(who caller) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	acct := f.accounts[who.account]
	if acct == nil {
		return nil, paramError{"InvalidCredentials", "Invalid credentials: the account no longer exists."}
	}
	return map[string]any{
		"UserId": acct.userID, "FirstName": "Sandbox", "LastName": "User", "Email": who.user,
		"AccountId": acct.id, "CompanyName": acct.company, "Timezone": acct.zone.String(),
	}, nil
}
