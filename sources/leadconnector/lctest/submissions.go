package lctest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Form and survey submissions, as ../shared/vendor-docs/leadconnector/forms.json and
// surveys.json document them (API-CONTRACTS.md §5.1):
//
//	GET /forms/submissions     locationId, page (from 1), limit (default 20, ≤ 100), formId, q,
//	                           startAt/endAt (YYYY-MM-DD); scope forms.readonly
//	GET /surveys/submissions   the same with surveyId; scope surveys.readonly
//	GET /forms/, GET /surveys/ the location's forms and surveys: skip, limit (default 10, ≤ 50)
//
// The documented trap: without startAt the listing starts on "the same date of last month",
// without endAt it ends today, so a client that leaves them out never sees older
// submissions. Dates are whole UTC days [ours: the vendor does not name a time zone] and both
// ends are inclusive ("by starting of this date", "by ending of this date"). The order is
// not documented [ours]: newest createdAt first, as the app lists them, with the id as a tie
// breaker. Paging is by page number, so a submission added or deleted while a client pages
// shifts the rest by one place.
//
// Admin API (under /_admin):
//
//	POST   /locations/{loc}/form-submissions     a new form submission now → 201 {"id"}
//	POST   /locations/{loc}/survey-submissions   a new survey submission now → 201 {"id"}
//	DELETE /locations/{loc}/submissions/{id}     delete a submission → 204

// Submission kinds, as SubmissionKind reports them.
const (
	KindFormSubmission   = "form"
	KindSurveySubmission = "survey"
)

// MaxSubmissionsLimit is the largest limit the submissions listings allow; maxFormsLimit the
// largest of the forms and surveys listings.
const (
	MaxSubmissionsLimit = 100
	maxFormsLimit       = 50
)

// subData is a location's forms, surveys and their submissions.
type subData struct {
	forms, surveys []formDef
	// subs are the live submissions of both kinds, sorted by (createdAt, id).
	subs []*submission
}

// formDef is a form or a survey (FormsParams, GetSurveysSchema).
type formDef struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	LocationID string `json:"locationId"`
}

// submission is one submission and its rendered JSON.
type submission struct {
	ID, Kind, ParentID, ContactID string
	Created                       time.Time
	name, email, phone            string // for the q filter
	json                          json.RawMessage
}

// submissionJSON is a submission as the listings return it (FormsSubmissionsSubmissionsSchema,
// SubmissionSchema): formId or surveyId by kind.
type submissionJSON struct {
	ID        string         `json:"id"`
	ContactID string         `json:"contactId"`
	CreatedAt string         `json:"createdAt"`
	FormID    string         `json:"formId,omitempty"`
	SurveyID  string         `json:"surveyId,omitempty"`
	Name      string         `json:"name"`
	Email     string         `json:"email"`
	Others    map[string]any `json:"others"`
}

// eventData is the tracking of a submission (EventDataSchema), with the url_params, gclid,
// fbclid and campaign that live submissions carry beyond the schema (API-CONTRACTS.md §5.1).
type eventData struct {
	Fbc           string            `json:"fbc,omitempty"`
	Fbp           string            `json:"fbp,omitempty"`
	Page          pageDetails       `json:"page"`
	Type          string            `json:"type"`
	Domain        string            `json:"domain"`
	Medium        string            `json:"medium"`
	Source        string            `json:"source"`
	Version       string            `json:"version"`
	AdSource      string            `json:"adSource,omitempty"`
	MediumID      string            `json:"mediumId"`
	ParentID      string            `json:"parentId"`
	Referrer      string            `json:"referrer,omitempty"`
	FbEventID     string            `json:"fbEventId,omitempty"`
	Timestamp     int64             `json:"timestamp"`
	ParentName    string            `json:"parentName"`
	Fingerprint   string            `json:"fingerprint"`
	PageVisitType string            `json:"pageVisitType"`
	Campaign      string            `json:"campaign,omitempty"`
	GCLID         string            `json:"gclid,omitempty"`
	FBCLID        string            `json:"fbclid,omitempty"`
	URLParams     map[string]string `json:"url_params,omitempty"`
	// ContactSessionIDs is nullable in the schema.
	ContactSessionIDs *struct {
		IDs []string `json:"ids"`
	} `json:"contactSessionIds"`
}

type pageDetails struct {
	URL   string `json:"url"`
	Title string `json:"title"`
}

var (
	formNames   = []string{"Contact Us", "Free Estimate Request", "Book an Appointment", "Request a Callback"}
	surveyNames = []string{"Customer Satisfaction Survey", "New Patient Questionnaire", "Project Scoping Survey"}
	messages    = []string{"Please call me back about a quote.", "Do you have availability next week?",
		"I'd like to know your prices.", "Looking for help as soon as possible.", ""}
	// sessionSources are the source labels the vendor's tracking gives each channel.
	sessionSources = map[string]string{"Google Ads": "Paid Search", "Facebook Ads": "Paid Social",
		"Organic Search": "Organic Search", "Direct": "Direct traffic", "Referral": "Referral",
		"Google Business Profile": "Organic Search", "Yelp": "Referral", "Email Campaign": "Email"}
	referrers = map[string]string{"Google Ads": "https://www.google.com/", "Facebook Ads": "https://l.facebook.com/",
		"Organic Search": "https://www.google.com/", "Referral": "https://www.angi.com/",
		"Google Business Profile": "https://www.google.com/", "Yelp": "https://www.yelp.com/"}
	keywords = []string{"emergency repair near me", "best local service", "free estimate", "same day appointment"}
)

// seedSubs draws location l's (the i-th) two forms, one survey, and about a third as many
// form submissions as it has contacts and a tenth as many survey submissions, each by one of
// its contacts, over [start, end).
func (f *Fake) seedSubs(i int, l *location, start, end time.Time) {
	r := simkit.RandFor(f.opts.Seed, fmt.Sprintf("lc/location/%d/subs", i))
	d := &l.life.subs
	perm := r.Perm(len(formNames))
	d.forms = []formDef{{ID: newID(r), Name: formNames[perm[0]], LocationID: l.ID}, {ID: newID(r), Name: formNames[perm[1]], LocationID: l.ID}}
	d.surveys = []formDef{{ID: newID(r), Name: simkit.Pick(r, surveyNames), LocationID: l.ID}}
	ids := make([]string, 0, len(l.contacts))
	for id := range l.contacts {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids) // map order is random; the draws must not be
	n := f.opts.ContactsPerLocation
	for k := range n/3 + n/10 {
		kind, parent := KindSurveySubmission, d.surveys[0]
		if k < n/3 {
			kind, parent = KindFormSubmission, simkit.Pick(r, d.forms)
		}
		c := l.contacts[simkit.Pick(r, ids)].latest().Data
		at := c.added // the submission that created the contact
		if r.IntN(2) == 0 {
			at = simkit.TimeBetween(r, c.added, end)
		}
		d.subs = append(d.subs, newSubmission(r, l, kind, parent, c, at))
	}
	slices.SortFunc(d.subs, compareSubs)
}

func compareSubs(a, b *submission) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// newSubmission draws a submission of kind to parent by contact c at time at, with answers
// and (for most) the tracking of the visit that led to it.
func newSubmission(r *rand.Rand, l *location, kind string, parent formDef, c contactData, at time.Time) *submission {
	at = at.UTC().Truncate(time.Millisecond)
	name := strings.TrimSpace(c.FirstName + " " + c.LastName)
	s := &submission{ID: newUUID(r), Kind: kind, ParentID: parent.ID, ContactID: c.ID, Created: at,
		name: name, email: c.Email, phone: c.Phone}
	others := map[string]any{"first_name": c.FirstName, "last_name": c.LastName, "email": c.Email, "phone": c.Phone}
	seq := []string{"first_name", "last_name", "phone", "email"}
	if kind == KindFormSubmission {
		others["full_name"] = name
		seq = append([]string{"full_name"}, seq...)
		if m := simkit.Pick(r, messages); m != "" {
			others["message"] = m
			seq = append(seq, "message")
		}
		others[customFieldIDs[0]] = simkit.Pick(r, []string{"Website", "Referral", "Walk-in", "Phone"})
		seq = append(seq, customFieldIDs[0])
	} else {
		others[customFieldIDs[0]] = simkit.Pick(r, []string{"Search engine", "Friend or family", "Social media", "Other"})
		others[customFieldIDs[1]] = strconv.Itoa(500 + r.IntN(20000))
		others["rating"] = strconv.Itoa(1 + r.IntN(5))
		seq = append(seq, customFieldIDs[0], customFieldIDs[1], "rating")
	}
	others["fieldsOriSequance"] = seq // sic: the vendor's spelling
	if r.IntN(10) > 0 {               // a tenth came in through the API, with no visit tracked
		others["eventData"] = newEventData(r, l, kind, parent, at)
	}
	sj := submissionJSON{ID: s.ID, ContactID: c.ID, CreatedAt: isoMillis(at), Name: name, Email: c.Email, Others: others}
	if kind == KindFormSubmission {
		sj.FormID = parent.ID
	} else {
		sj.SurveyID = parent.ID
	}
	b, err := json.Marshal(sj)
	if err != nil {
		panic(fmt.Sprintf("lctest: render submission: %v", err)) // only plain types: cannot happen
	}
	s.json = b
	return s
}

// newEventData draws the visit behind a submission: its channel's source label, utm
// parameters, click ids (gclid for Google Ads, fbclid for Facebook Ads), referrer and page.
func newEventData(r *rand.Rand, l *location, kind string, parent formDef, at time.Time) eventData {
	ch := simkit.Pick(r, simkit.Channels)
	host := simkit.Pick(r, []string{"www.example.com", "book.example.com", "example.com"})
	path := simkit.Pick(r, []string{"/contact", "/free-estimate", "/lp/offer", "/survey"})
	e := eventData{Type: "page-visit", Domain: host, Medium: kind, Source: sessionSources[ch], Version: "v3",
		MediumID: parent.ID, ParentID: parent.ID, ParentName: parent.Name, Timestamp: at.UnixMilli(),
		Fingerprint: newUUID(r), PageVisitType: kind, Referrer: referrers[ch],
		Fbp: fmt.Sprintf("fb.1.%d.%d", at.UnixMilli(), r.Int64N(1e10))}
	params := map[string]string{}
	if us, ok := utmSources[ch]; ok {
		params["utm_source"], params["utm_medium"] = us[0], us[1]
	}
	if ch != "Direct" && ch != "Organic Search" {
		e.Campaign = simkit.Pick(r, simkit.Campaigns)
		params["utm_campaign"] = strings.ToLower(strings.ReplaceAll(e.Campaign, " ", "_"))
	}
	switch ch {
	case "Google Ads":
		e.AdSource = "adwords"
		e.GCLID = "Cj0KCQ" + newID(r)
		params["gclid"] = e.GCLID
		params["utm_term"] = simkit.Pick(r, keywords)
	case "Facebook Ads":
		e.AdSource = "facebook"
		e.FBCLID = "IwAR" + newID(r)
		e.Fbc = fmt.Sprintf("fb.1.%d.%s", at.UnixMilli(), e.FBCLID)
		e.FbEventID = newUUID(r)
		params["fbclid"] = e.FBCLID
		params["utm_content"] = simkit.Pick(r, []string{"carousel_a", "video_15s", "lead_ad"})
	}
	e.Page = pageDetails{URL: "https://" + host + path, Title: parent.Name + " | " + l.Name}
	if len(params) > 0 {
		q := url.Values{}
		for k, v := range params {
			q.Set(k, v)
		}
		e.Page.URL += "?" + q.Encode()
		e.URLParams = params
	}
	return e
}

func (f *Fake) subEndpoints() []endpoint {
	return []endpoint{
		{method: "GET", path: "/forms/submissions", class: "Location", scope: "forms.readonly",
			h: func(w http.ResponseWriter, r *http.Request, c *call) {
				f.handleSubmissions(w, r, c, KindFormSubmission)
			}},
		{method: "GET", path: "/surveys/submissions", class: "Location", scope: "surveys.readonly",
			h: func(w http.ResponseWriter, r *http.Request, c *call) {
				f.handleSubmissions(w, r, c, KindSurveySubmission)
			}},
		{method: "GET", path: "/forms/{$}", class: "Location", scope: "forms.readonly",
			h: func(w http.ResponseWriter, r *http.Request, c *call) { f.handleForms(w, r, c, KindFormSubmission) }},
		{method: "GET", path: "/surveys/{$}", class: "Location", scope: "surveys.readonly",
			h: func(w http.ResponseWriter, r *http.Request, c *call) { f.handleForms(w, r, c, KindSurveySubmission) }},
	}
}

// intParam reads an optional positive number parameter: def when absent, a 422 message when
// it is not a whole number in [1, max].
func intParam(q url.Values, name string, def, max int) (int, []string) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || n != float64(int(n)):
		return 0, []string{name + " must be a number conforming to the specified constraints"}
	case n < 1:
		return 0, []string{fmt.Sprintf("%s must not be less than 1", name)}
	case max > 0 && n > float64(max):
		return 0, []string{fmt.Sprintf("%s must not be greater than %d", name, max)}
	}
	return int(n), nil
}

// dayParam reads a YYYY-MM-DD parameter: def when absent.
func dayParam(q url.Values, name string, def time.Time) (time.Time, []string) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, []string{name + " must be a valid date (YYYY-MM-DD)"}
	}
	return t, nil
}

// sameDateLastMonth is the documented default of startAt: the same day of the month before
// (its last day when that month is shorter).
func sameDateLastMonth(today time.Time) time.Time {
	y, m, d := today.Date()
	first := time.Date(y, m-1, 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}

// handleSubmissions is GET /forms/submissions or /surveys/submissions.
func (f *Fake) handleSubmissions(w http.ResponseWriter, r *http.Request, c *call, kind string) {
	q := r.URL.Query()
	var msgs []string
	locID := q.Get("locationId")
	if locID == "" {
		msgs = append(msgs, "locationId should not be empty", "locationId must be a string")
	}
	page, m1 := intParam(q, "page", 1, 0)
	limit, m2 := intParam(q, "limit", 20, MaxSubmissionsLimit)
	today := f.clock.Now().UTC().Truncate(24 * time.Hour)
	from, m3 := dayParam(q, "startAt", sameDateLastMonth(today))
	to, m4 := dayParam(q, "endAt", today)
	if msgs = slices.Concat(msgs, m1, m2, m3, m4); len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	parent := q.Get("formId")
	if kind == KindSurveySubmission {
		parent = q.Get("surveyId")
	}
	needle := strings.ToLower(strings.TrimSpace(q.Get("q")))
	until := to.AddDate(0, 0, 1) // endAt is inclusive: the whole of its day

	f.mu.Lock()
	l := f.byID[locID]
	if l == nil || l.Forbidden || c.location != locID {
		f.mu.Unlock()
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	match := []json.RawMessage{} // newest first; an empty window is [], not null
	subs := l.life.subs.subs
	for i := len(subs) - 1; i >= 0; i-- {
		s := subs[i]
		if !s.Created.Before(until) {
			continue
		}
		if s.Created.Before(from) {
			break
		}
		if s.Kind == kind && (parent == "" || s.ParentID == parent) && (needle == "" || s.matches(needle)) {
			match = append(match, s.json)
		}
	}
	f.mu.Unlock()

	total := len(match)
	lo := min((page-1)*limit, total)
	hi := min(lo+limit, total)
	meta := map[string]any{"total": total, "currentPage": page, "nextPage": nil, "prevPage": nil}
	if hi < total {
		meta["nextPage"] = page + 1
	}
	if page > 1 {
		meta["prevPage"] = page - 1
	}
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"submissions": match[lo:hi], "meta": meta})
}

// matches is the q filter: "contactId, name, email or phone no.".
func (s *submission) matches(needle string) bool {
	return strings.ToLower(s.ContactID) == needle || strings.Contains(strings.ToLower(s.name), needle) ||
		strings.Contains(strings.ToLower(s.email), needle) || (s.phone != "" && strings.Contains(s.phone, needle))
}

// handleForms is GET /forms/ or /surveys/: skip and limit.
func (f *Fake) handleForms(w http.ResponseWriter, r *http.Request, c *call, kind string) {
	q := r.URL.Query()
	locID := q.Get("locationId")
	var msgs []string
	if locID == "" {
		msgs = append(msgs, "locationId should not be empty", "locationId must be a string")
	}
	limit, m1 := intParam(q, "limit", 10, maxFormsLimit)
	skip := 0
	if s := q.Get("skip"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			m1 = append(m1, "skip must not be less than 0")
		}
		skip = n
	}
	if msgs = append(msgs, m1...); len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	f.mu.Lock()
	l := f.byID[locID]
	if l == nil || l.Forbidden || c.location != locID {
		f.mu.Unlock()
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	defs, key := l.life.subs.forms, "forms"
	if kind == KindSurveySubmission {
		defs, key = l.life.subs.surveys, "surveys"
	}
	defs = slices.Clone(defs)
	f.mu.Unlock()
	lo := min(skip, len(defs))
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{key: defs[lo:min(lo+limit, len(defs))], "total": len(defs)})
}

func (f *Fake) adminSubs(mux *http.ServeMux) {
	for path, kind := range map[string]string{"form-submissions": KindFormSubmission, "survey-submissions": KindSurveySubmission} {
		mux.HandleFunc("POST /locations/{loc}/"+path, func(w http.ResponseWriter, r *http.Request) {
			id, err := f.addSubmission(r.PathValue("loc"), kind)
			if err != nil {
				adminNotFound(w, err)
				return
			}
			simkit.WriteJSON(w, http.StatusCreated, map[string]string{"id": id})
		})
	}
	mux.HandleFunc("DELETE /locations/{loc}/submissions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.DeleteSubmission(r.PathValue("loc"), r.PathValue("id")); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// AddFormSubmission adds a submission of one of the location's forms now, by one of its
// contacts, and returns its id.
func (f *Fake) AddFormSubmission(locID string) (string, error) {
	return f.addSubmission(locID, KindFormSubmission)
}

// AddSurveySubmission adds a submission of the location's survey now and returns its id.
func (f *Fake) AddSurveySubmission(locID string) (string, error) {
	return f.addSubmission(locID, KindSurveySubmission)
}

func (f *Fake) addSubmission(locID, kind string) (string, error) {
	return f.addSubmissionAt(locID, kind, f.clock.Now())
}

// addSubmissionAt adds a submission created at (which a test may set in the past).
func (f *Fake) addSubmissionAt(locID, kind string, at time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return "", fmt.Errorf("lctest: unknown location %q", locID)
	}
	var ids []string
	for id, c := range l.contacts {
		if !c.latest().Deleted {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("lctest: location %q has no contact to submit", locID)
	}
	slices.Sort(ids)
	d := &l.life.subs
	parent := d.surveys[0]
	if kind == KindFormSubmission {
		parent = simkit.Pick(f.rng, d.forms)
	}
	s := newSubmission(f.rng, l, kind, parent, l.contacts[simkit.Pick(f.rng, ids)].latest().Data, at)
	i, _ := slices.BinarySearchFunc(d.subs, s, compareSubs)
	d.subs = slices.Insert(d.subs, i, s)
	return s.ID, nil
}

// DeleteSubmission deletes a submission of either kind: it vanishes from the listings.
func (f *Fake) DeleteSubmission(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return fmt.Errorf("lctest: unknown location %q", locID)
	}
	d := &l.life.subs
	i := slices.IndexFunc(d.subs, func(s *submission) bool { return s.ID == id })
	if i < 0 {
		return fmt.Errorf("lctest: unknown submission %q in location %q", id, locID)
	}
	d.subs = slices.Delete(d.subs, i, i+1)
	return nil
}

// SubmissionIDs lists a location's live submissions of both kinds, oldest first (by
// createdAt, then id).
func (f *Fake) SubmissionIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	out := make([]string, len(l.life.subs.subs))
	for i, s := range l.life.subs.subs {
		out[i] = s.ID
	}
	return out
}

// SubmissionKind is a live submission's kind (KindFormSubmission or KindSurveySubmission),
// "" when the location has no such submission.
func (f *Fake) SubmissionKind(locID, id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.byID[locID]; ok {
		for _, s := range l.life.subs.subs {
			if s.ID == id {
				return s.Kind
			}
		}
	}
	return ""
}

// subTruth is the submissions leadsync must store for location l: all of them, unless the
// location answers 403 (f.mu held).
func (f *Fake) subTruth(l *location) []simkit.RecordTruth {
	if l.Forbidden {
		return nil
	}
	out := make([]simkit.RecordTruth, 0, len(l.life.subs.subs))
	for _, s := range l.life.subs.subs {
		out = append(out, simkit.RecordTruth{Table: "submissions", ID: s.ID, Updated: s.Created})
	}
	return out
}
