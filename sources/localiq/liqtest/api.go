package liqtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// The vendor's error bodies, byte for byte in the documented key order.
var (
	bodyUnauthorized    = []byte(`{"message":"Unauthorized"}`)
	bodyTooManyRequests = []byte(`{"message":"Too Many Requests"}`)
	bodyNotAuthorized   = []byte(`{"name":"not_authorized","message":"You are not permitted to perform this action."}`)
	bodyNotFound        = []byte(`{"message":"Not Found"}`)
)

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func unprocessable(w http.ResponseWriter, msg string) {
	simkit.WriteJSON(w, http.StatusUnprocessableEntity, map[string]string{"name": "invalid_parameter", "message": msg})
}

// endpoint names requests for the counters.
func endpoint(r *http.Request) string {
	p := strings.Trim(r.URL.Path, "/")
	switch {
	case p == "oauth/token", p == "oauth/authorize", p == "identities/v3", p == "crm/contact_interactions":
		return p
	case strings.HasPrefix(p, "crm/contact_interactions/"):
		return "crm/contact_interactions/{id}"
	case strings.HasPrefix(p, "client_reports/lead_detail/"):
		return "client_reports/lead_detail"
	case strings.HasPrefix(p, "client_reports/campaigns_overview/"):
		return "client_reports/campaigns_overview"
	}
	return "other"
}

func (f *Fake) routes() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("POST /oauth/token", f.token)
	api.Handle("GET /identities/v3", f.authed(f.identities))
	api.Handle("GET /crm/contact_interactions", f.authed(f.interactions))
	api.Handle("GET /crm/contact_interactions/{id}", f.authed(f.interaction))
	api.Handle("GET /client_reports/lead_detail/{gmaid}", f.authed(f.leadDetail))
	api.Handle("GET /client_reports/campaigns_overview/{gmaid}", f.authed(f.campaignsOverview))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusNotFound, bodyNotFound) })

	root := http.NewServeMux()
	root.Handle("/_admin/", http.StripPrefix("/_admin", f.adminRoutes()))
	root.Handle("GET /oauth/authorize", simkit.CountRequests(http.HandlerFunc(f.authorize), f.counters, endpoint))
	root.Handle("/", simkit.CountRequests(f.faults.Middleware(api, f.counters, func(w http.ResponseWriter) {
		writeRaw(w, http.StatusTooManyRequests, bodyTooManyRequests)
	}), f.counters, endpoint))
	return root
}

// authed applies the per-client limit, then checks the bearer token; next gets the user.
func (f *Fake) authed(next func(w http.ResponseWriter, r *http.Request, user string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Authorization")
		// The docs show both "Bearer <token>" and the bare token.
		if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
			tok = tok[7:]
		}
		state, grant, _ := f.tokens.Check(strings.TrimSpace(tok))
		bucket := grant.Meta["client_id"]
		if bucket == "" {
			bucket = "anonymous"
		}
		if ok, _, _ := f.limiter.Take(bucket); !ok {
			// No rate-limit headers and no Retry-After, like the vendor.
			writeRaw(w, http.StatusTooManyRequests, bodyTooManyRequests)
			return
		}
		if state != simkit.AccessValid {
			writeRaw(w, http.StatusUnauthorized, bodyUnauthorized)
			return
		}
		next(w, r, grant.Subject)
	})
}

// leadAccess reports whether user may read gmaid's leads: linked, active (or in grace), and
// for HIPAA advertisers the Agency Customer role on that advertiser. Callers hold f.mu.
func (f *Fake) leadAccess(user, gmaid string) (*advertiser, bool) {
	a := f.linked(user, gmaid)
	if a == nil || a.activeState == 0 || (a.hipaa && !f.agencyRole[strings.ToLower(user)][gmaid]) {
		return a, false
	}
	return a, true
}

// linked returns gmaid if user is linked to it. Every advertiser is linked to the sandbox user.
func (f *Fake) linked(user, gmaid string) *advertiser {
	if !strings.EqualFold(user, f.opts.SandboxUser) {
		return nil
	}
	return f.byGMAID[gmaid]
}

type identityAdvertiser struct {
	Name           string `json:"name"`
	GMAID          string `json:"gmaid"`
	Platform       string `json:"platform"`
	HIPAAProtected bool   `json:"hipaa_protected"`
	BusinessID     int    `json:"business_id"`
	BusinessName   string `json:"business_name"`
	BusinessUserID int    `json:"business_user_id"`
	PrivilegeLevel int    `json:"privilege_level"`
	AdvertiserID   int    `json:"advertiser_id"`
	ActiveState    int    `json:"active_state"`
	CobrandID      int    `json:"cobrand_id"`
	CobrandName    string `json:"cobrand_name"`
}

type identityUser struct {
	Platform       string `json:"platform"`
	BUID           int    `json:"buid"`
	Email          string `json:"email"`
	BusinessID     int    `json:"business_id"`
	Name           string `json:"name"`
	PrivilegeLevel int    `json:"privilege_level"`
}

type identitiesResponse struct {
	BUID                  int                  `json:"bu_id"`
	User                  string               `json:"user"`
	BusinessID            int                  `json:"business_id"`
	Country               string               `json:"country"`
	AdvertiserCount       int                  `json:"advertiser_count"`
	Page                  int                  `json:"page"`
	PageSize              int                  `json:"page_size"`
	AuthorizedAdvertisers []identityAdvertiser `json:"authorized_advertisers"`
	Users                 []identityUser       `json:"users"`
}

func positive(q url.Values, key string, def int) (int, bool) {
	v := q.Get(key)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 1
}

// privilege is user's privilege_level on gmaid: 3 with the Agency Customer role on it, else
// 2 (_identity.md.erb: "PL3 is required to access HIPAA protected data"). Callers hold f.mu.
func (f *Fake) privilege(user, gmaid string) int {
	if f.agencyRole[strings.ToLower(user)][gmaid] {
		return 3
	}
	return 2
}

// userPrivilege is the users entry's privilege_level [ours]: 3 only when the role covers
// every advertiser, the per-advertiser levels saying which ones otherwise. Callers hold f.mu.
func (f *Fake) userPrivilege(user string) int {
	if len(f.advertisers) == 0 {
		return 2
	}
	for _, a := range f.advertisers {
		if f.privilege(user, a.gmaid) < 3 {
			return 2
		}
	}
	return 3
}

// identities is GET /identities/v3: the advertisers a business user may see, paged.
func (f *Fake) identities(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	user := strings.ToLower(q.Get("user"))
	if user == "" {
		unprocessable(w, "user is required")
		return
	}
	page, ok1 := positive(q, "page", 1)
	size, ok2 := positive(q, "page_size", 5000)
	if !ok1 || !ok2 {
		unprocessable(w, "page and page_size must be positive integers")
		return
	}
	states := map[int]bool{}
	for _, v := range append(q["active_state[]"], q["active_state"]...) {
		for s := range strings.SplitSeq(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				states[n] = true
			}
		}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	resp := identitiesResponse{BUID: 1, User: user, BusinessID: 1, Country: "USA", Page: page, PageSize: size,
		AuthorizedAdvertisers: []identityAdvertiser{}, Users: []identityUser{}}
	if strings.EqualFold(user, f.opts.SandboxUser) {
		resp.Users = append(resp.Users, identityUser{Platform: "USA", BUID: 1, Email: user, BusinessID: 1, Name: "Sandbox User",
			PrivilegeLevel: f.userPrivilege(user)})
		var all []identityAdvertiser
		for _, a := range f.advertisers {
			if len(states) > 0 && !states[a.activeState] {
				continue
			}
			platform, _, _ := strings.Cut(a.gmaid, "_")
			all = append(all, identityAdvertiser{Name: a.name, GMAID: a.gmaid, Platform: platform, HIPAAProtected: a.hipaa,
				BusinessID: a.businessID, BusinessName: a.name, BusinessUserID: 1, PrivilegeLevel: f.privilege(user, a.gmaid),
				AdvertiserID: a.advertiserID, ActiveState: a.activeState, CobrandID: 1123213, CobrandName: "sandbox"})
		}
		resp.AdvertiserCount = len(all)
		if lo := (page - 1) * size; lo < len(all) {
			resp.AuthorizedAdvertisers = all[lo:min(lo+size, len(all))]
		}
	}
	simkit.WriteJSON(w, http.StatusOK, resp)
}

const dateLayout = "2006-01-02"

func parseDate(v string) (time.Time, bool) {
	t, err := time.Parse(dateLayout, v)
	return t, err == nil
}

// localDate is the date of t in the advertiser's time zone, as midnight UTC of that date.
func localDate(a *advertiser, t time.Time) time.Time {
	y, m, d := t.In(a.loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

type interactionsPage struct {
	GMAID            string            `json:"global_master_advertiser_id"`
	Page             int               `json:"page"`
	TotalPages       int               `json:"total_pages"`
	NextPageLocation *string           `json:"next_page_location"`
	Interactions     []json.RawMessage `json:"contact_interactions"`
}

// interactions is GET /crm/contact_interactions: [after, before) by creation date, paged.
func (f *Fake) interactions(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	gmaid := q.Get("global_master_advertiser_id")
	if gmaid == "" {
		unprocessable(w, "global_master_advertiser_id is required")
		return
	}
	after, ok1 := parseDate(q.Get("created_after_date"))
	before, ok2 := parseDate(q.Get("created_before_date"))
	if !ok1 || !ok2 {
		unprocessable(w, "created_after_date and created_before_date are required (YYYY-MM-DD)")
		return
	}
	page, ok := positive(q, "page", 1)
	if !ok {
		unprocessable(w, "page must be a positive integer")
		return
	}
	et := q.Get("event_type")
	if et != "" && et != "call" && et != "form" && et != "chat" {
		unprocessable(w, "event_type must be one of chat, call, form")
		return
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.leadAccess(user, gmaid)
	if !ok {
		writeRaw(w, http.StatusForbidden, bodyNotAuthorized)
		return
	}
	var match []*interaction
	for _, it := range a.list {
		d := localDate(a, it.created)
		if d.Before(after) || !d.Before(before) || (et != "" && it.doc["event_type"] != et) {
			continue
		}
		match = append(match, it)
	}
	size := f.opts.PageSize
	total := (len(match) + size - 1) / size
	lo := (page - 1) * size
	if lo >= len(match) {
		// Past the end: "an empty JSON array is returned".
		writeRaw(w, http.StatusOK, []byte("[]"))
		return
	}
	resp := interactionsPage{GMAID: gmaid, Page: page, TotalPages: total}
	for _, it := range match[lo:min(lo+size, len(match))] {
		b, err := json.Marshal(it.doc)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp.Interactions = append(resp.Interactions, b)
	}
	if page < total {
		next := nextLocation(r, q, page+1)
		resp.NextPageLocation = &next
	}
	simkit.WriteJSON(w, http.StatusOK, resp)
}

// nextLocation is the full URL of page n, with the path as the client sent it (so it stays
// right when the fake is mounted under a prefix).
func nextLocation(r *http.Request, q url.Values, n int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		path = u.Path
	}
	v := url.Values{}
	for k, vs := range q {
		v[k] = vs
	}
	v.Set("page", strconv.Itoa(n))
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: path, RawQuery: v.Encode()}).String()
}

// interaction is GET /crm/contact_interactions/{id}.
func (f *Fake) interaction(w http.ResponseWriter, r *http.Request, user string) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.RLock()
	defer f.mu.RUnlock()
	it := f.byID[id]
	if err != nil || it == nil || f.linked(user, it.adv.gmaid) == nil {
		writeRaw(w, http.StatusNotFound, bodyNotFound)
		return
	}
	if _, ok := f.leadAccess(user, it.adv.gmaid); !ok {
		writeRaw(w, http.StatusForbidden, bodyNotAuthorized)
		return
	}
	simkit.WriteJSON(w, http.StatusOK, it.doc)
}

type intervalTotals struct {
	StartDate          string `json:"start_date"`
	Calls              int    `json:"calls"`
	Emails             int    `json:"emails"`
	WebEvents          int    `json:"web_events"`
	QualifiedWebEvents int    `json:"qualified_web_events"`
	Chats              int    `json:"chats"`
}

type durationBucket struct {
	Duration string `json:"duration"`
	Total    int    `json:"total"`
}

type reportTotals struct {
	Calls             int     `json:"calls"`
	UniqueCalls       int     `json:"unique_calls"`
	CallsConnected    int     `json:"calls_connected"`
	AverageCallLength float64 `json:"average_call_length"`
	Emails            int     `json:"emails"`
	WebEvents         int     `json:"web_events"`
	QualifiedWeb      int     `json:"qualified_web_events"`
	Chats             int     `json:"chats"`
	Leads             int     `json:"leads"`
}

type leadDetailReport struct {
	ReportType            string `json:"report_type"`
	ReportDate            string `json:"report_date"`
	EarliestDateAvailable string `json:"earliest_date_available"`
	StartDate             string `json:"start_date"`
	EndDate               string `json:"end_date"`
	TimeZone              string `json:"time_zone"`
	IntervalSize          string `json:"interval_size"`
	ReportData            struct {
		TotalsPerInterval []intervalTotals           `json:"totals_per_interval"`
		CallDuration      []durationBucket           `json:"call_duration"`
		CallsByTimeAndDay map[string]json.RawMessage `json:"calls_by_time_and_day"`
		Totals            reportTotals               `json:"totals"`
	} `json:"report_data"`
	GMAID string `json:"global_master_advertiser_id"`
}

// leadDetail is GET /client_reports/lead_detail/{gmaid}: PII-free daily counts, not
// HIPAA-gated (only linked advertisers). Dates are inclusive, in the advertiser's time zone.
func (f *Fake) leadDetail(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	gmaid := r.PathValue("gmaid")
	start, ok1 := parseDate(q.Get("start_date"))
	end, ok2 := parseDate(q.Get("end_date"))
	if !ok1 || !ok2 || end.Before(start) {
		unprocessable(w, "start_date and end_date are required (YYYY-MM-DD), start_date <= end_date")
		return
	}
	if is := q.Get("interval_size"); is != "" && is != "day" {
		unprocessable(w, "interval_size: only daily intervals are available in the sandbox")
		return
	}
	if end.Sub(start) > 5*366*24*time.Hour {
		unprocessable(w, "date range too large")
		return
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.linked(user, gmaid)
	if a == nil {
		writeRaw(w, http.StatusForbidden, bodyNotAuthorized)
		return
	}
	rep := leadDetailReport{ReportType: "lead_detail", ReportDate: localDate(a, f.clock.Now()).Format(dateLayout),
		StartDate: start.Format(dateLayout), EndDate: end.Format(dateLayout), TimeZone: a.tzName,
		IntervalSize: "day", GMAID: gmaid}
	rep.EarliestDateAvailable = localDate(a, f.clock.Now().Add(-f.opts.History)).Format(dateLayout)
	index := map[time.Time]int{}
	for d := start; !d.After(end); d = d.AddDate(0, 0, 1) {
		index[d] = len(rep.ReportData.TotalsPerInterval)
		rep.ReportData.TotalsPerInterval = append(rep.ReportData.TotalsPerInterval, intervalTotals{StartDate: d.Format(dateLayout)})
	}
	buckets := []durationBucket{{"0-29", 0}, {"30-59", 0}, {"60-119", 0}, {"120", 0}}
	byDay := map[string]map[string]int{}
	maxHour, callSecs := 0, 0
	t := &rep.ReportData.Totals
	for _, it := range a.list {
		i, ok := index[localDate(a, it.created)]
		if !ok || it.nonLead {
			continue
		}
		iv := &rep.ReportData.TotalsPerInterval[i]
		switch it.kind {
		case "call":
			iv.Calls++
			t.Calls++
			callSecs += it.callSecs
			switch s := it.callSecs; {
			case s < 30:
				buckets[0].Total++
			case s < 60:
				buckets[1].Total++
			case s < 120:
				buckets[2].Total++
			default:
				buckets[3].Total++
			}
			lt := it.created.In(a.loc)
			day := strings.ToLower(lt.Weekday().String())
			if byDay[day] == nil {
				byDay[day] = map[string]int{}
			}
			h := strconv.Itoa(lt.Hour())
			byDay[day][h]++
			maxHour = max(maxHour, byDay[day][h])
		case "email":
			iv.Emails++
			t.Emails++
		case "form":
			iv.WebEvents++
			iv.QualifiedWebEvents++
			t.WebEvents++
			t.QualifiedWeb++
		case "chat":
			iv.Chats++
			t.Chats++
		}
	}
	t.UniqueCalls, t.CallsConnected = t.Calls, t.Calls
	if t.Calls > 0 {
		t.AverageCallLength = float64(callSecs*100/t.Calls) / 100
	}
	t.Leads = t.Calls + t.Emails + t.WebEvents + t.Chats
	rep.ReportData.CallDuration = buckets
	rep.ReportData.CallsByTimeAndDay = map[string]json.RawMessage{"max": json.RawMessage(strconv.Itoa(maxHour))}
	for day, hours := range byDay {
		b, _ := json.Marshal(hours)
		rep.ReportData.CallsByTimeAndDay[day] = b
	}
	simkit.WriteJSON(w, http.StatusOK, rep)
}
