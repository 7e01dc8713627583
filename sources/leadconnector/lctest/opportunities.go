package lctest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Defaults and limits of GET /opportunities/search ("Limit Per Page records count. will
// allow maximum up to 100 and default will be 20") and GET /opportunities/lost-reason
// (limit default 100).
const (
	DefaultOppLimit        = 20
	MaxOppLimit            = 100
	DefaultLostReasonLimit = 100
)

// Opportunity statuses (UpdateStatusDto's enum; "all" is a search filter only).
var oppStatuses = []string{"open", "won", "lost", "abandoned"}

// oppCustomFieldIDs are the opportunity custom fields of the sandbox locations (the same
// definitions everywhere, like contacts' customFieldIDs).
var oppCustomFieldIDs = []string{"Op7Qx2LmR4tY9wZc1VbN", "Kd3Hs8Jf6Ga1Lp0Mz5Qr", "Tw9Ev4Bn2Cx7Yu1Io6Pa"}

// oppData is a location's opportunities, pipelines and lost reasons.
type oppData struct {
	pipelines   []*pipeline
	lostReasons []lostReason
	opps        map[string]*opportunity
	// sorted is the live opportunities by (createdAt, id); nil when a write made it stale.
	sorted []*opportunity
	// rng draws the location's opportunity mutations (not the seed's stream, nor the
	// contacts' mutations).
	rng *rand.Rand
}

// pipeline is PipelinesResponseSchema (stages as the vendor sends them: id, name, position).
type pipeline struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Stages         []stage `json:"stages"`
	ShowInFunnel   bool    `json:"showInFunnel"`
	ShowInPieChart bool    `json:"showInPieChart"`
	LocationID     string  `json:"locationId"`
}

type stage struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Position       int    `json:"position"`
	ShowInFunnel   bool   `json:"showInFunnel"`
	ShowInPieChart bool   `json:"showInPieChart"`
}

// lostReason is LostReasonResponseSchema.
type lostReason struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	LocationID string `json:"locationId"`
	CreatedAt  string `json:"createdAt"`
	UpdatedAt  string `json:"updatedAt"`
}

// opportunity is SearchOpportunitiesResponseSchema.
type opportunity struct {
	ID                 string           `json:"id"`
	Name               string           `json:"name"`
	MonetaryValue      float64          `json:"monetaryValue"`
	PipelineID         string           `json:"pipelineId"`
	PipelineStageID    string           `json:"pipelineStageId"`
	AssignedTo         *string          `json:"assignedTo"`
	Status             string           `json:"status"`
	Source             string           `json:"source"`
	LastStatusChangeAt string           `json:"lastStatusChangeAt"`
	LastStageChangeAt  string           `json:"lastStageChangeAt"`
	LastActionDate     string           `json:"lastActionDate"`
	IndexVersion       int              `json:"indexVersion"`
	CreatedAt          string           `json:"createdAt"`
	UpdatedAt          string           `json:"updatedAt"`
	ContactID          string           `json:"contactId"`
	LocationID         string           `json:"locationId"`
	Contact            oppContact       `json:"contact"`
	Notes              []any            `json:"notes"`
	Tasks              []any            `json:"tasks"`
	CalendarEvents     []any            `json:"calendarEvents"`
	LostReasonID       *string          `json:"lostReasonId"`
	CustomFields       []oppCustomField `json:"customFields"`
	Followers          []string         `json:"followers"`

	created, updated, stageChanged, statusChanged time.Time
}

// oppContact is SearchOpportunitiesContactResponseSchema: the contact as it was when the
// opportunity was made.
type oppContact struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	CompanyName string   `json:"companyName"`
	Email       string   `json:"email"`
	Phone       string   `json:"phone"`
	Tags        []string `json:"tags"`
}

// oppCustomField is CustomFieldResponseSchema: {id, fieldValue}.
type oppCustomField struct {
	ID         string `json:"id"`
	FieldValue any    `json:"fieldValue"`
}

func (o *opportunity) setCreated(t time.Time) {
	o.created = t.UTC().Truncate(time.Millisecond)
	o.CreatedAt = isoMillis(o.created)
}

func (o *opportunity) setUpdated(t time.Time) {
	o.updated = t.UTC().Truncate(time.Millisecond)
	o.UpdatedAt = isoMillis(o.updated)
}

func (o *opportunity) setStageChanged(t time.Time) {
	o.stageChanged = t.UTC().Truncate(time.Millisecond)
	o.LastStageChangeAt = isoMillis(o.stageChanged)
}

func (o *opportunity) setStatusChanged(t time.Time) {
	o.statusChanged = t.UTC().Truncate(time.Millisecond)
	o.LastStatusChangeAt = isoMillis(o.statusChanged)
}

func compareOpps(a, b *opportunity) int {
	return cmp.Or(a.created.Compare(b.created), strings.Compare(a.ID, b.ID))
}

// index is the live opportunities by (createdAt, id) (f.mu held).
func (d *oppData) index() []*opportunity {
	if d.sorted == nil {
		s := make([]*opportunity, 0, len(d.opps))
		for _, o := range d.opps {
			s = append(s, o)
		}
		slices.SortFunc(s, compareOpps)
		d.sorted = s
	}
	return d.sorted
}

// stage finds a stage of the location and its pipeline.
func (d *oppData) stage(id string) (*pipeline, *stage) {
	for _, p := range d.pipelines {
		for i := range p.Stages {
			if p.Stages[i].ID == id {
				return p, &p.Stages[i]
			}
		}
	}
	return nil, nil
}

func (d *oppData) pipeline(id string) *pipeline {
	for _, p := range d.pipelines {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (d *oppData) hasLostReason(id string) bool {
	return slices.ContainsFunc(d.lostReasons, func(r lostReason) bool { return r.ID == id })
}

// Pipeline templates: a name and up to six stages, of which a pipeline keeps the first 4–6.
var pipelineTemplates = []struct {
	name   string
	stages []string
}{
	{"Sales Pipeline", []string{"New Lead", "Contacted", "Appointment Set", "Proposal Sent", "Negotiation", "Closed"}},
	{"Service Estimates", []string{"Estimate Requested", "Site Visit", "Estimate Sent", "Follow Up", "Scheduled", "Job Complete"}},
	{"Patient Intake", []string{"Inquiry", "Consult Booked", "Consult Done", "Treatment Plan", "Financing", "Started"}},
	{"Reactivation", []string{"Identified", "Reached Out", "Replied", "Booked", "Returned", "Retained"}},
}

var lostReasonNames = []string{"Price too high", "Went with a competitor", "No response", "Not a fit", "Bad timing", "Budget cut"}

var dealKinds = []string{"New install", "Repair", "Consultation", "Annual plan", "Upgrade", "Estimate"}

// newUUID draws a v4-shaped UUID, the form of the vendor's stage and submission ids.
func newUUID(r *rand.Rand) string {
	const hex = "0123456789abcdef"
	b := []byte("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx")
	for i, c := range b {
		switch c {
		case 'x':
			b[i] = hex[r.IntN(16)]
		case 'y':
			b[i] = hex[8+r.IntN(4)]
		}
	}
	return string(b)
}

// seedOpps draws location l's (the i-th) pipelines, lost reasons and opportunities, each
// opportunity of one of its contacts, created after that contact was.
func (f *Fake) seedOpps(i int, l *location, _, end time.Time) {
	r := simkit.RandFor(f.opts.Seed, fmt.Sprintf("lc/location/%d/opps", i))
	d := &l.life.opps
	d.rng = simkit.RandFor(f.opts.Seed, fmt.Sprintf("lc/location/%d/opps/mutations", i))
	d.opps = map[string]*opportunity{}
	first := r.IntN(len(pipelineTemplates))
	for k := range 2 {
		t := pipelineTemplates[(first+k)%len(pipelineTemplates)]
		p := &pipeline{ID: newID(r), Name: t.name, ShowInFunnel: true, ShowInPieChart: k == 0, LocationID: l.ID}
		for pos, name := range t.stages[:4+r.IntN(3)] {
			p.Stages = append(p.Stages, stage{ID: newUUID(r), Name: name, Position: pos, ShowInFunnel: true, ShowInPieChart: true})
		}
		d.pipelines = append(d.pipelines, p)
	}
	names := slices.Clone(lostReasonNames)
	r.Shuffle(len(names), func(a, b int) { names[a], names[b] = names[b], names[a] })
	for _, name := range names[:3+r.IntN(3)] {
		at := isoMillis(simkit.TimeBetween(r, l.InstalledAt, l.InstalledAt.AddDate(0, 1, 0)))
		d.lostReasons = append(d.lostReasons, lostReason{ID: newID(r), Name: name, LocationID: l.ID, CreatedAt: at, UpdatedAt: at})
	}
	ids := contactIDs(l)
	if len(ids) == 0 {
		return
	}
	for range max(1, len(ids)/4) {
		c := l.contacts[simkit.Pick(r, ids)].latest().Data
		o := f.drawOpp(r, d, l.ID, c, c.added, end)
		d.opps[o.ID] = o
	}
}

// contactIDs are the location's live contacts, sorted (map order is random).
func contactIDs(l *location) []string {
	ids := make([]string, 0, len(l.contacts))
	for id, c := range l.contacts {
		if !c.latest().Deleted {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// drawOpp draws an opportunity of contact c created in [from, to): its stage and status
// changed after it was created, and it was last updated at the later of the two.
func (f *Fake) drawOpp(r *rand.Rand, d *oppData, locID string, c contactData, from, to time.Time) *opportunity {
	p := simkit.Pick(r, d.pipelines)
	status := simkit.Pick(r, []string{"open", "open", "open", "open", "won", "won", "lost", "lost", "abandoned"})
	st := p.Stages[r.IntN(len(p.Stages))]
	if status == "won" {
		st = p.Stages[len(p.Stages)-1]
	}
	o := &opportunity{
		ID: newID(r), Name: strings.TrimSpace(c.FirstName + " " + c.LastName + " - " + simkit.Pick(r, dealKinds)),
		MonetaryValue: float64(r.IntN(400)) * 25, PipelineID: p.ID, PipelineStageID: st.ID,
		Status: status, Source: simkit.Pick(r, sources), ContactID: c.ID, LocationID: locID,
		Contact: oppContact{ID: c.ID, Name: strings.TrimSpace(c.FirstName + " " + c.LastName), CompanyName: c.CompanyName,
			Email: c.Email, Phone: c.Phone, Tags: slices.Clone(c.Tags)},
		Notes: []any{}, Tasks: []any{}, CalendarEvents: []any{}, Followers: []string{},
		CustomFields: []oppCustomField{},
	}
	if o.Contact.Tags == nil {
		o.Contact.Tags = []string{}
	}
	if r.IntN(2) == 0 {
		u := f.userID
		o.AssignedTo = &u
	}
	if status == "lost" {
		lr := simkit.Pick(r, d.lostReasons).ID
		o.LostReasonID = &lr
	}
	if r.IntN(3) > 0 {
		o.CustomFields = append(o.CustomFields, oppCustomField{ID: oppCustomFieldIDs[0], FieldValue: simkit.Pick(r, []string{"Residential", "Commercial"})})
	}
	if r.IntN(2) == 0 {
		o.CustomFields = append(o.CustomFields, oppCustomField{ID: oppCustomFieldIDs[1], FieldValue: strconv.Itoa(1 + r.IntN(24))})
	}
	if r.IntN(4) == 0 {
		o.CustomFields = append(o.CustomFields, oppCustomField{ID: oppCustomFieldIDs[2], FieldValue: []string{"Financing", "Warranty"}})
	}
	created := simkit.TimeBetween(r, from, to)
	o.setCreated(created)
	o.setStageChanged(created)
	o.setStatusChanged(created)
	if r.IntN(3) > 0 {
		o.setStageChanged(simkit.TimeBetween(r, created, to))
	}
	if status != "open" {
		o.setStatusChanged(simkit.TimeBetween(r, created, to))
	}
	o.setUpdated(latest(o.stageChanged, o.statusChanged))
	o.LastActionDate = o.UpdatedAt
	o.IndexVersion = 1
	return o
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// oppEndpoints serve opportunities, pipelines and lost reasons, as ../shared/vendor-docs/leadconnector/opportunities.json
// (API 2021-07-28; API-CONTRACTS.md §5.1: the same under v3) documents them:
//
//	GET /opportunities/search?location_id=…   SearchSuccessfulResponseDto: {opportunities, meta, aggregations};
//	                                          limit (default 20, at most 100), startAfter/startAfterId
//	                                          keyset paging on (createdAt, id), order added_asc|added_desc,
//	                                          page, filters status, pipeline_id, pipeline_stage_id,
//	                                          contact_id, assigned_to
//	GET /opportunities/pipelines?locationId=… GetPipelinesSuccessfulResponseDto: {pipelines:[{…, stages}]}
//	GET /opportunities/lost-reason?locationId=…  LostReasonsResponseSchema: {lostReasons, total}; skip/limit
//
// All three need opportunities.readonly and a location token. A Forbidden location answers 403
// on the search (its records are PII: opportunities embed the contact), like contact search;
// pipelines and lost reasons are PII-free and answer normally. The search has no index lag.
func (f *Fake) oppEndpoints() []endpoint {
	return []endpoint{
		{method: "GET", path: "/opportunities/search", class: "Location", scope: "opportunities.readonly", h: f.handleOppSearch},
		{method: "GET", path: "/opportunities/pipelines", class: "Location", scope: "opportunities.readonly", h: f.handlePipelines},
		{method: "GET", path: "/opportunities/lost-reason", class: "Location", scope: "opportunities.readonly", h: f.handleLostReasons},
	}
}

// oppSearchMeta is SearchMetaResponseSchema. startAfter and startAfterId are the last
// opportunity's on the page (null on an empty one); nextPage and nextPageUrl are null when
// nothing follows.
type oppSearchMeta struct {
	Total        int     `json:"total"`
	NextPageURL  *string `json:"nextPageUrl"`
	StartAfterID *string `json:"startAfterId"`
	StartAfter   *int64  `json:"startAfter"`
	CurrentPage  int     `json:"currentPage"`
	NextPage     *int    `json:"nextPage"`
	PrevPage     *int    `json:"prevPage"`
}

// queryInt reads an optional integer query parameter; ok is false when it is not one.
func queryInt(q url.Values, name string, def int) (int, bool) {
	s := q.Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// handleOppSearch is GET /opportunities/search.
func (f *Fake) handleOppSearch(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	var msgs []string
	locID := q.Get("location_id")
	if locID == "" {
		msgs = append(msgs, "location_id should not be empty", "location_id must be a string")
	}
	limit, ok := queryInt(q, "limit", DefaultOppLimit)
	switch {
	case !ok:
		msgs = append(msgs, "limit must be a number conforming to the specified constraints")
	case limit < 1:
		msgs = append(msgs, "limit must not be less than 1")
	case limit > MaxOppLimit:
		msgs = append(msgs, fmt.Sprintf("limit must not be greater than %d", MaxOppLimit))
	}
	page, ok := queryInt(q, "page", 1)
	if !ok || page < 1 {
		msgs = append(msgs, "page must not be less than 1")
	}
	status := q.Get("status")
	if status != "" && status != "all" && !slices.Contains(oppStatuses, status) {
		msgs = append(msgs, "status must be one of the following values: open, won, lost, abandoned, all")
	}
	desc := true // newest first unless asked: the document names no default order
	switch q.Get("order") {
	case "", "added_desc":
	case "added_asc":
		desc = false
	default:
		msgs = append(msgs, "order must be one of the following values: added_asc, added_desc")
	}
	var after *opportunity
	if sa := q.Get("startAfter"); sa != "" {
		ms, err := strconv.ParseInt(sa, 10, 64)
		if err != nil {
			msgs = append(msgs, "startAfter must be a number string")
		} else {
			after = &opportunity{ID: q.Get("startAfterId"), created: time.UnixMilli(ms).UTC()}
		}
	}
	if len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	match := func(o *opportunity) bool {
		return (status == "" || status == "all" || o.Status == status) &&
			(q.Get("pipeline_id") == "" || o.PipelineID == q.Get("pipeline_id")) &&
			(q.Get("pipeline_stage_id") == "" || o.PipelineStageID == q.Get("pipeline_stage_id")) &&
			(q.Get("contact_id") == "" || o.ContactID == q.Get("contact_id")) &&
			(q.Get("assigned_to") == "" || (o.AssignedTo != nil && *o.AssignedTo == q.Get("assigned_to"))) &&
			(q.Get("id") == "" || o.ID == q.Get("id"))
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byID[locID]
	if l == nil || l.Forbidden || c.location != locID {
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	idx := l.life.opps.index()
	// The matching opportunities in the requested order, from the keyset position (or the
	// page's offset without one).
	var ordered []*opportunity
	total := 0
	for _, o := range idx {
		if match(o) {
			total++
			ordered = append(ordered, o)
		}
	}
	if desc {
		slices.Reverse(ordered)
	}
	start := 0
	switch {
	case after != nil:
		start = len(ordered)
		for i, o := range ordered {
			k := compareOpps(o, after)
			if (!desc && k > 0) || (desc && k < 0) {
				start = i
				break
			}
		}
	default:
		start = min((page-1)*limit, len(ordered))
	}
	end := min(start+limit, len(ordered))
	list := ordered[start:end]
	meta := oppSearchMeta{Total: total, CurrentPage: page}
	if page > 1 {
		prev := page - 1
		meta.PrevPage = &prev
	}
	if n := len(list); n > 0 {
		last := list[n-1]
		ms := last.created.UnixMilli()
		meta.StartAfter, meta.StartAfterID = &ms, &last.ID
		if end < len(ordered) {
			next := page + 1
			nq := url.Values{}
			for k, v := range q {
				nq[k] = v
			}
			nq.Set("startAfter", strconv.FormatInt(ms, 10))
			nq.Set("startAfterId", last.ID)
			nq.Set("page", strconv.Itoa(next))
			u := "http://" + r.Host + "/opportunities/search?" + nq.Encode()
			meta.NextPage, meta.NextPageURL = &next, &u
		}
	}
	c.q.write(w.Header())
	if list == nil {
		list = []*opportunity{}
	}
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"opportunities": list, "meta": meta, "aggregations": map[string]any{}})
}

// handlePipelines is GET /opportunities/pipelines.
func (f *Fake) handlePipelines(w http.ResponseWriter, r *http.Request, c *call) {
	locID := r.URL.Query().Get("locationId")
	if locID == "" {
		write422(w, c.q, "locationId should not be empty", "locationId must be a string")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byID[locID]
	if l == nil || c.location != locID {
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"pipelines": l.life.opps.pipelines})
}

// handleLostReasons is GET /opportunities/lost-reason: skip/limit paging, name and query
// filters; the sandbox keeps no deleted lost reasons, so deleted=true lists none.
func (f *Fake) handleLostReasons(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	var msgs []string
	locID := q.Get("locationId")
	if locID == "" {
		msgs = append(msgs, "locationId should not be empty", "locationId must be a string")
	}
	skip, ok := queryInt(q, "skip", 0)
	if !ok || skip < 0 {
		msgs = append(msgs, "skip must not be less than 0")
	}
	limit, ok := queryInt(q, "limit", DefaultLostReasonLimit)
	if !ok || limit < 1 {
		msgs = append(msgs, "limit must not be less than 1")
	}
	deleted := q.Get("deleted")
	if deleted != "" && deleted != "true" && deleted != "false" {
		msgs = append(msgs, "deleted must be a boolean value")
	}
	if len(msgs) > 0 {
		write422(w, c.q, msgs...)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.byID[locID]
	if l == nil || c.location != locID {
		writeError(w, c.q, http.StatusForbidden, MsgNoLocation)
		return
	}
	list := []lostReason{}
	if deleted != "true" {
		for _, lr := range l.life.opps.lostReasons {
			if (q.Get("name") == "" || lr.Name == q.Get("name")) &&
				(q.Get("query") == "" || strings.Contains(strings.ToLower(lr.Name), strings.ToLower(q.Get("query")))) {
				list = append(list, lr)
			}
		}
	}
	total := len(list)
	list = list[min(skip, total):min(skip+limit, total)]
	c.q.write(w.Header())
	simkit.WriteJSON(w, http.StatusOK, map[string]any{"lostReasons": list, "total": total})
}

// errNotFound marks an unknown location or opportunity (the admin API's 404).
var errNotFound = errors.New("not found")

func (f *Fake) oppsOf(locID string) (*oppData, error) {
	l, ok := f.byID[locID]
	if !ok {
		return nil, fmt.Errorf("lctest: unknown location %q: %w", locID, errNotFound)
	}
	return &l.life.opps, nil
}

func (f *Fake) oppLocked(locID, id string) (*oppData, *opportunity, error) {
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil, nil, err
	}
	o, ok := d.opps[id]
	if !ok {
		return nil, nil, fmt.Errorf("lctest: unknown opportunity %q in location %q: %w", id, locID, errNotFound)
	}
	return d, o, nil
}

// OpportunitySpec is a new opportunity; a zero field is drawn (a live contact of the
// location) or defaulted (the first pipeline, its first stage, open).
type OpportunitySpec struct {
	ContactID     string   `json:"contact_id,omitempty"`
	StageID       string   `json:"stage_id,omitempty"` // its pipeline is the opportunity's
	MonetaryValue *float64 `json:"monetary_value,omitempty"`
}

// OpportunityState is an opportunity as the fake holds it (no PII).
type OpportunityState struct {
	ID              string    `json:"id"`
	ContactID       string    `json:"contact_id"`
	PipelineID      string    `json:"pipeline_id"`
	StageID         string    `json:"stage_id"`
	Status          string    `json:"status"`
	LostReasonID    string    `json:"lost_reason_id,omitempty"`
	MonetaryValue   float64   `json:"monetary_value"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	StageChangedAt  time.Time `json:"stage_changed_at"`
	StatusChangedAt time.Time `json:"status_changed_at"`
}

func (o *opportunity) state() OpportunityState {
	s := OpportunityState{ID: o.ID, ContactID: o.ContactID, PipelineID: o.PipelineID, StageID: o.PipelineStageID,
		Status: o.Status, MonetaryValue: o.MonetaryValue, CreatedAt: o.created, UpdatedAt: o.updated,
		StageChangedAt: o.stageChanged, StatusChangedAt: o.statusChanged}
	if o.LostReasonID != nil {
		s.LostReasonID = *o.LostReasonID
	}
	return s
}

// CreateOpportunity adds an opportunity to a location now and returns its id.
func (f *Fake) CreateOpportunity(locID string, spec OpportunitySpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return "", err
	}
	l := f.byID[locID]
	contactID := spec.ContactID
	if contactID == "" {
		ids := contactIDs(l)
		if len(ids) == 0 {
			return "", fmt.Errorf("lctest: location %q has no contact", locID)
		}
		contactID = simkit.Pick(d.rng, ids)
	}
	c, ok := l.contacts[contactID]
	if !ok || c.latest().Deleted {
		return "", fmt.Errorf("lctest: unknown contact %q in location %q", contactID, locID)
	}
	p, st := d.pipelines[0], &d.pipelines[0].Stages[0]
	if spec.StageID != "" {
		if p, st = d.stage(spec.StageID); st == nil {
			return "", fmt.Errorf("lctest: unknown stage %q in location %q", spec.StageID, locID)
		}
	}
	now := f.clock.Now()
	o := f.drawOpp(d.rng, d, locID, c.latest().Data, now, now)
	o.PipelineID, o.PipelineStageID, o.Status, o.LostReasonID = p.ID, st.ID, "open", nil
	if spec.MonetaryValue != nil {
		o.MonetaryValue = *spec.MonetaryValue
	}
	d.opps[o.ID] = o
	d.sorted = nil
	return o.ID, nil
}

// touch records a change of o now.
func (f *Fake) touch(o *opportunity) time.Time {
	now := f.clock.Now()
	o.setUpdated(now)
	o.IndexVersion++
	return now
}

// MoveOpportunity moves an opportunity to a stage now (of its pipeline or another: the
// pipeline follows the stage). Moving it to the stage it is in changes nothing.
func (f *Fake) MoveOpportunity(locID, id, stageID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, o, err := f.oppLocked(locID, id)
	if err != nil {
		return err
	}
	p, st := d.stage(stageID)
	if st == nil {
		return fmt.Errorf("lctest: unknown stage %q in location %q", stageID, locID)
	}
	if o.PipelineStageID == st.ID {
		return nil
	}
	o.PipelineID, o.PipelineStageID = p.ID, st.ID
	o.setStageChanged(f.touch(o))
	return nil
}

// SetOpportunityStatus sets an opportunity's status now (open, won, lost, abandoned); a lost
// one may name one of the location's lost reasons, the others carry none.
func (f *Fake) SetOpportunityStatus(locID, id, status, lostReasonID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, o, err := f.oppLocked(locID, id)
	if err != nil {
		return err
	}
	switch {
	case !slices.Contains(oppStatuses, status):
		return fmt.Errorf("lctest: status %q is not one of %v", status, oppStatuses)
	case lostReasonID != "" && status != "lost":
		return fmt.Errorf("lctest: a lost reason for status %q", status)
	case lostReasonID != "" && !d.hasLostReason(lostReasonID):
		return fmt.Errorf("lctest: unknown lost reason %q in location %q", lostReasonID, locID)
	}
	changed := o.Status != status
	o.Status, o.LostReasonID = status, nil
	if lostReasonID != "" {
		o.LostReasonID = &lostReasonID
	}
	now := f.touch(o)
	if changed {
		o.setStatusChanged(now)
	}
	return nil
}

// SetOpportunityValue changes an opportunity's monetary value now.
func (f *Fake) SetOpportunityValue(locID, id string, value float64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, o, err := f.oppLocked(locID, id)
	if err != nil {
		return err
	}
	if value < 0 {
		return fmt.Errorf("lctest: negative monetary value")
	}
	o.MonetaryValue = value
	f.touch(o)
	return nil
}

// DeleteOpportunity deletes an opportunity now: it vanishes from search.
func (f *Fake) DeleteOpportunity(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, _, err := f.oppLocked(locID, id)
	if err != nil {
		return err
	}
	delete(d.opps, id)
	d.sorted = nil
	return nil
}

// OpportunityIDs lists a location's opportunities by (createdAt, id).
func (f *Fake) OpportunityIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil
	}
	var out []string
	for _, o := range d.index() {
		out = append(out, o.ID)
	}
	return out
}

// Opportunities lists a location's opportunities by (createdAt, id).
func (f *Fake) Opportunities(locID string) ([]OpportunityState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil, err
	}
	out := []OpportunityState{}
	for _, o := range d.index() {
		out = append(out, o.state())
	}
	return out, nil
}

// Opportunity is one opportunity of a location.
func (f *Fake) Opportunity(locID, id string) (OpportunityState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, o, err := f.oppLocked(locID, id)
	if err != nil {
		return OpportunityState{}, err
	}
	return o.state(), nil
}

// PipelineIDs lists a location's pipelines.
func (f *Fake) PipelineIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range d.pipelines {
		out = append(out, p.ID)
	}
	return out
}

// StageIDs lists a pipeline's stages by position.
func (f *Fake) StageIDs(locID, pipelineID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil
	}
	p := d.pipeline(pipelineID)
	if p == nil {
		return nil
	}
	var out []string
	for _, s := range p.Stages {
		out = append(out, s.ID)
	}
	return out
}

// LostReasonIDs lists a location's lost reasons.
func (f *Fake) LostReasonIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.oppsOf(locID)
	if err != nil {
		return nil
	}
	var out []string
	for _, lr := range d.lostReasons {
		out = append(out, lr.ID)
	}
	return out
}

// adminFail answers an admin mutation's error: 404 for an unknown location or
// opportunity, else 400.
func adminFail(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		adminNotFound(w, err)
		return
	}
	adminError(w, err.Error())
}

// adminOpps adds the admin routes of opportunities (JSON):
//
//	GET    /_admin/locations/{loc}/opportunities              []OpportunityState, by (createdAt, id)
//	POST   /_admin/locations/{loc}/opportunities              OpportunitySpec (every field optional) → 201 {"id"}
//	PUT    /_admin/locations/{loc}/opportunities/{id}/stage   {"stage_id":"…"} → 204
//	PUT    /_admin/locations/{loc}/opportunities/{id}/status  {"status":"won|lost|open|abandoned","lost_reason_id":"…"} → 204
//	PUT    /_admin/locations/{loc}/opportunities/{id}/value   {"monetary_value":1200} → 204
//	DELETE /_admin/locations/{loc}/opportunities/{id}         → 204: it vanishes from search
//	GET    /_admin/locations/{loc}/pipelines                  the pipelines, as the vendor answers them
func (f *Fake) adminOpps(mux *http.ServeMux) {
	const base = "/locations/{loc}/opportunities"
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		list, err := f.Opportunities(r.PathValue("loc"))
		if err != nil {
			adminFail(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST "+base, func(w http.ResponseWriter, r *http.Request) {
		var spec OpportunitySpec
		if err := simkit.DecodeStrict(r, &spec); err != nil && !errors.Is(err, io.EOF) {
			adminError(w, err.Error())
			return
		}
		id, err := f.CreateOpportunity(r.PathValue("loc"), spec)
		if err != nil {
			adminFail(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("PUT "+base+"/{id}/stage", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			StageID string `json:"stage_id"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil {
			adminError(w, err.Error())
			return
		}
		noContent(w, f.MoveOpportunity(r.PathValue("loc"), r.PathValue("id"), b.StageID))
	})
	mux.HandleFunc("PUT "+base+"/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Status       string `json:"status"`
			LostReasonID string `json:"lost_reason_id"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil {
			adminError(w, err.Error())
			return
		}
		noContent(w, f.SetOpportunityStatus(r.PathValue("loc"), r.PathValue("id"), b.Status, b.LostReasonID))
	})
	mux.HandleFunc("PUT "+base+"/{id}/value", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			MonetaryValue *float64 `json:"monetary_value"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || b.MonetaryValue == nil {
			adminError(w, `want {"monetary_value":N}`)
			return
		}
		noContent(w, f.SetOpportunityValue(r.PathValue("loc"), r.PathValue("id"), *b.MonetaryValue))
	})
	mux.HandleFunc("DELETE "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		noContent(w, f.DeleteOpportunity(r.PathValue("loc"), r.PathValue("id")))
	})
	mux.HandleFunc("GET /locations/{loc}/pipelines", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, err := f.oppsOf(r.PathValue("loc"))
		if err != nil {
			adminFail(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusOK, map[string]any{"pipelines": d.pipelines})
	})
}

func noContent(w http.ResponseWriter, err error) {
	if err != nil {
		adminFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// oppTruth is location l's live deals (none for a Forbidden location: its search answers
// 403) and its pipelines, stages and lost reasons (f.mu held).
func (f *Fake) oppTruth(l *location) []simkit.RecordTruth {
	d := &l.life.opps
	var out []simkit.RecordTruth
	if !l.Forbidden {
		for _, o := range d.opps {
			out = append(out, simkit.RecordTruth{Table: "deals", ID: o.ID, Updated: o.updated})
		}
	}
	for _, p := range d.pipelines {
		out = append(out, simkit.RecordTruth{Table: "crm_dictionary", ID: "pipeline:" + p.ID})
		for _, s := range p.Stages {
			out = append(out, simkit.RecordTruth{Table: "crm_dictionary", ID: "stage:" + s.ID})
		}
	}
	for _, lr := range d.lostReasons {
		out = append(out, simkit.RecordTruth{Table: "crm_dictionary", ID: "lost_reason:" + lr.ID})
	}
	return out
}
