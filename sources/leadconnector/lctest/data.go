package lctest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// location is one installed sub-account and its contacts.
type location struct {
	ID          string
	Name        string
	Address     string
	InstalledAt time.Time
	Forbidden   bool
	contacts    map[string]*contact
	// byUpdated and byAdded index the latest versions of live contacts, sorted by
	// (sort time, id); nil when a write made them stale.
	byUpdated []*version
	byAdded   []*version
	lastWrite time.Time
	// life is the location's data beyond contacts (lifecycle.go).
	life lifecycle
}

// contact is a contact's history as the search index sees it: versions in write order.
type contact struct {
	versions []*version
}

// version is one state of a contact, written at At; Deleted marks the deletion.
type version struct {
	At      time.Time
	Deleted bool
	Data    contactData
	// json is Data rendered, without the closing brace (searchAfter is appended per query).
	json []byte
}

// contactData is a contact as POST /contacts/search returns it (field names per the vendor).
type contactData struct {
	ID                    string        `json:"id"`
	LocationID            string        `json:"locationId"`
	ContactName           string        `json:"contactName"`
	FirstName             string        `json:"firstName"`
	LastName              string        `json:"lastName"`
	FirstNameLowerCase    string        `json:"firstNameLowerCase"`
	LastNameLowerCase     string        `json:"lastNameLowerCase"`
	CompanyName           string        `json:"companyName"`
	Email                 string        `json:"email"`
	Phone                 string        `json:"phone"`
	DND                   bool          `json:"dnd"`
	Type                  string        `json:"type"`
	Source                string        `json:"source"`
	AssignedTo            *string       `json:"assignedTo"`
	Address               string        `json:"address"`
	City                  string        `json:"city"`
	State                 string        `json:"state"`
	PostalCode            string        `json:"postalCode"`
	Country               string        `json:"country"`
	Timezone              string        `json:"timezone"`
	DateAdded             string        `json:"dateAdded"`
	DateUpdated           string        `json:"dateUpdated"`
	DateOfBirth           *int64        `json:"dateOfBirth"`
	Tags                  []string      `json:"tags"`
	Followers             []string      `json:"followers"`
	CustomFields          []customField `json:"customFields"`
	AdditionalEmails      []string      `json:"additionalEmails"`
	AttributionSource     *attribution  `json:"attributionSource,omitempty"`
	LastAttributionSource *attribution  `json:"lastAttributionSource,omitempty"`
	added, updated        time.Time     // parsed forms of DateAdded/DateUpdated
}

type customField struct {
	ID    string `json:"id"`
	Value any    `json:"value"`
}

type attribution struct {
	URL           string `json:"url"`
	Campaign      string `json:"campaign,omitempty"`
	UTMSource     string `json:"utmSource,omitempty"`
	UTMMedium     string `json:"utmMedium,omitempty"`
	UTMCampaign   string `json:"utmCampaign,omitempty"`
	Referrer      string `json:"referrer,omitempty"`
	Medium        string `json:"medium,omitempty"`
	MediumID      string `json:"mediumId,omitempty"`
	SessionSource string `json:"sessionSource,omitempty"`
	GCLID         string `json:"gclid,omitempty"`
	FBCLID        string `json:"fbclid,omitempty"`
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newID draws a 20-character id like the vendor's.
func newID(r *rand.Rand) string {
	var b [20]byte
	for i := range b {
		b[i] = idChars[r.IntN(len(idChars))]
	}
	return string(b[:])
}

// isoMillis formats t the way the vendor does: UTC, milliseconds, Z.
func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Custom field ids of the sandbox locations (the same definitions everywhere, like a snapshot).
var customFieldIDs = []string{"Rk4Lq1xT9mWcV2bN8sPa", "hZ3yU7eD0fKjG5tQ1wXo", "Mn8Bv2Cx4Zl6Ka9Sd3Fg"}

var (
	sources    = []string{"website form", "facebook form", "public api", "phone call", "chat widget", "manual", "zapier"}
	mediums    = []string{"form", "survey", "funnel", "calendar", "chat_widget"}
	utmSources = map[string][2]string{
		"Google Ads": {"google", "cpc"}, "Facebook Ads": {"facebook", "paid_social"},
		"Organic Search": {"google", "organic"}, "Email Campaign": {"newsletter", "email"},
		"Yelp": {"yelp", "referral"}, "Google Business Profile": {"gbp", "organic"},
	}
	timezones = []string{"America/Chicago", "America/Denver", "America/New_York", "America/Los_Angeles", "America/Phoenix"}
)

// seed builds the company, its locations and their contacts from the seed.
func (f *Fake) seed() {
	r := simkit.RandFor(f.opts.Seed, "lc/company")
	// Ids are drawn even when given, so the rest of the data does not depend on it.
	f.companyID = orDrawn(f.opts.CompanyID, newID(r))
	f.appID = orDrawn(f.opts.AppID, fmt.Sprintf("%016x%08x", r.Uint64(), r.Uint32())) // ObjectId-like
	f.userID = newID(r)
	f.byID = map[string]*location{}
	end := f.opts.DataEnd
	start := end.AddDate(-2, 0, 0)
	for i := range f.opts.Locations {
		lr := simkit.RandFor(f.opts.Seed, fmt.Sprintf("lc/location/%d", i))
		p := simkit.NewPerson(lr)
		l := &location{
			ID:          newID(lr),
			Name:        simkit.CompanyName(lr),
			Address:     fmt.Sprintf("%s, %s, %s %s, USA", p.Street, p.City, p.State, p.Zip),
			InstalledAt: simkit.TimeBetween(lr, start, start.AddDate(0, 3, 0)),
			Forbidden:   i >= f.opts.Locations-f.opts.ForbiddenLocations,
			contacts:    map[string]*contact{},
		}
		for range f.opts.ContactsPerLocation {
			d := newContact(lr, l.ID, f.userID, start, end)
			l.contacts[d.ID] = &contact{versions: []*version{newVersion(d.updated, false, d)}}
		}
		f.locs = append(f.locs, l)
		f.byID[l.ID] = l
		f.seedLifecycle(i, l, start, end)
	}
}

func orDrawn(given, drawn string) string {
	if given != "" {
		return given
	}
	return drawn
}

// newContact draws a realistic contact added in [from, to).
func newContact(r *rand.Rand, locID, userID string, from, to time.Time) contactData {
	p := simkit.NewPerson(r)
	added := simkit.TimeBetween(r, from, to)
	updated := added
	if r.IntN(10) < 6 { // most contacts were touched after creation
		updated = simkit.TimeBetween(r, added, to)
	}
	d := contactData{
		ID: newID(r), LocationID: locID,
		FirstName: p.FirstName, LastName: p.LastName,
		ContactName:        strings.ToLower(p.FirstName + " " + p.LastName),
		FirstNameLowerCase: strings.ToLower(p.FirstName), LastNameLowerCase: strings.ToLower(p.LastName),
		Email: p.Email, Phone: p.Phone, DND: r.IntN(20) == 0,
		Type:   simkit.Pick(r, []string{"lead", "lead", "lead", "customer"}),
		Source: simkit.Pick(r, sources),
		City:   p.City, State: p.State, PostalCode: p.Zip, Country: "US", Address: p.Street,
		Timezone: simkit.Pick(r, timezones),
		Tags:     simkit.PickTags(r), Followers: []string{}, AdditionalEmails: []string{},
	}
	if r.IntN(3) > 0 {
		d.CompanyName = p.Company
	}
	if r.IntN(2) == 0 {
		u := userID
		d.AssignedTo = &u
	}
	if r.IntN(3) == 0 {
		dob := time.Date(1950+r.IntN(55), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).UnixMilli()
		d.DateOfBirth = &dob
	}
	d.CustomFields = []customField{{ID: customFieldIDs[0], Value: simkit.Pick(r, []string{"Website", "Referral", "Walk-in", "Phone"})}}
	if r.IntN(2) == 0 {
		d.CustomFields = append(d.CustomFields, customField{ID: customFieldIDs[1], Value: 500 + r.IntN(20000)})
	}
	if r.IntN(4) == 0 {
		d.CustomFields = append(d.CustomFields, customField{ID: customFieldIDs[2], Value: []string{"Option A", "Option C"}})
	}
	if r.IntN(5) > 0 { // a fifth of the contacts carry no attribution
		d.AttributionSource = newAttribution(r)
		if r.IntN(3) == 0 {
			d.LastAttributionSource = newAttribution(r)
		}
	}
	d.setTimes(added, updated)
	return d
}

func newAttribution(r *rand.Rand) *attribution {
	ch := simkit.Pick(r, simkit.Channels)
	a := &attribution{
		URL:           "https://" + simkit.Pick(r, []string{"www.example.com/contact", "book.example.com/free-estimate", "example.com/lp/offer"}),
		SessionSource: ch,
		Medium:        simkit.Pick(r, mediums),
		MediumID:      newID(r),
	}
	if us, ok := utmSources[ch]; ok {
		a.UTMSource, a.UTMMedium = us[0], us[1]
	}
	switch ch {
	case "Google Ads":
		a.GCLID = "Cj0KCQ" + newID(r)
	case "Facebook Ads":
		a.FBCLID = "IwAR" + newID(r)
	case "Referral":
		a.Referrer = "https://www.google.com/"
	}
	if ch != "Direct" && ch != "Organic Search" {
		a.Campaign = simkit.Pick(r, simkit.Campaigns)
		a.UTMCampaign = strings.ToLower(strings.ReplaceAll(a.Campaign, " ", "_"))
	}
	return a
}

func (d *contactData) setTimes(added, updated time.Time) {
	d.added, d.updated = added.UTC().Truncate(time.Millisecond), updated.UTC().Truncate(time.Millisecond)
	d.DateAdded, d.DateUpdated = isoMillis(d.added), isoMillis(d.updated)
}

func newVersion(at time.Time, deleted bool, d contactData) *version {
	v := &version{At: at, Deleted: deleted, Data: d}
	if !deleted {
		b, err := json.Marshal(d)
		if err != nil {
			panic(fmt.Sprintf("lctest: render contact: %v", err)) // only plain types: cannot happen
		}
		v.json = b[:len(b)-1]
	}
	return v
}

// latest is the contact's newest version.
func (c *contact) latest() *version { return c.versions[len(c.versions)-1] }

// visible is the version search sees at now with the index lag (nil: not (yet) indexed).
func (c *contact) visible(now time.Time, lag time.Duration) *version {
	cut := now.Add(-lag)
	for i := len(c.versions) - 1; i >= 0; i-- {
		if v := c.versions[i]; !v.At.After(cut) {
			return v
		}
	}
	return nil
}

// write appends a new version, dropping history the index can no longer show.
func (c *contact) write(v *version, now time.Time, lag time.Duration) {
	c.versions = append(c.versions, v)
	cut := now.Add(-lag)
	keep := 0
	for i, old := range c.versions {
		if !old.At.After(cut) {
			keep = i
		}
	}
	c.versions = c.versions[keep:]
}

// sortKey orders versions for a sort field.
func sortTime(v *version, byAdded bool) time.Time {
	if byAdded {
		return v.Data.added
	}
	return v.Data.updated
}

func compareVersions(a, b *version, byAdded bool) int {
	if c := sortTime(a, byAdded).Compare(sortTime(b, byAdded)); c != 0 {
		return c
	}
	return strings.Compare(a.Data.ID, b.Data.ID)
}

// index returns the live versions sorted by (sort time, id) as search sees them at now.
// Without recent writes inside the lag the cached index of latest versions serves.
func (l *location) index(now time.Time, lag time.Duration, byAdded bool) []*version {
	if lag <= 0 || now.Sub(l.lastWrite) >= lag {
		idx := &l.byUpdated
		if byAdded {
			idx = &l.byAdded
		}
		if *idx == nil {
			s := make([]*version, 0, len(l.contacts))
			for _, c := range l.contacts {
				if v := c.latest(); !v.Deleted {
					s = append(s, v)
				}
			}
			slices.SortFunc(s, func(a, b *version) int { return compareVersions(a, b, byAdded) })
			*idx = s
		}
		return *idx
	}
	s := make([]*version, 0, len(l.contacts))
	for _, c := range l.contacts {
		if v := c.visible(now, lag); v != nil && !v.Deleted {
			s = append(s, v)
		}
	}
	slices.SortFunc(s, func(a, b *version) int { return compareVersions(a, b, byAdded) })
	return s
}

func (l *location) touched(now time.Time) {
	l.byUpdated, l.byAdded, l.lastWrite = nil, nil, now
}

// CreateContact adds a new contact to a location now and returns its id.
func (f *Fake) CreateContact(locID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return "", fmt.Errorf("lctest: unknown location %q", locID)
	}
	now := f.clock.Now().UTC()
	d := newContact(f.rng, locID, f.userID, now, now)
	d.setTimes(now, now)
	l.contacts[d.ID] = &contact{versions: []*version{newVersion(now, false, d)}}
	l.touched(now)
	return d.ID, nil
}

// UpdateContact changes a contact now (its tags and type), which moves it to the end of a
// dateUpdated-ascending search.
func (f *Fake) UpdateContact(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, l, err := f.contactLocked(locID, id)
	if err != nil {
		return err
	}
	now := f.clock.Now().UTC()
	d := c.latest().Data
	d.Tags = append(slices.Clone(d.Tags), fmt.Sprintf("touched-%d", f.rng.IntN(1000)))
	if d.Type == "lead" && f.rng.IntN(3) == 0 {
		d.Type = "customer"
	}
	d.setTimes(d.added, now)
	c.write(newVersion(now, false, d), now, f.lag)
	l.touched(now)
	return nil
}

// DeleteContact deletes a contact now: it vanishes from search.
func (f *Fake) DeleteContact(locID, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, l, err := f.contactLocked(locID, id)
	if err != nil {
		return err
	}
	now := f.clock.Now().UTC()
	c.write(newVersion(now, true, c.latest().Data), now, f.lag)
	l.touched(now)
	return nil
}

func (f *Fake) contactLocked(locID, id string) (*contact, *location, error) {
	l, ok := f.byID[locID]
	if !ok {
		return nil, nil, fmt.Errorf("lctest: unknown location %q", locID)
	}
	c, ok := l.contacts[id]
	if !ok || c.latest().Deleted {
		return nil, nil, fmt.Errorf("lctest: unknown contact %q in location %q", id, locID)
	}
	return c, l, nil
}

// ContactIDs lists a location's live contacts, sorted by (dateUpdated, id).
func (f *Fake) ContactIDs(locID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return nil
	}
	idx := l.index(f.clock.Now(), 0, false)
	out := make([]string, len(idx))
	for i, v := range idx {
		out[i] = v.Data.ID
	}
	return out
}

// SetForbidden makes a location's contact search answer 403 (or lifts it).
func (f *Fake) SetForbidden(locID string, forbidden bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byID[locID]
	if !ok {
		return fmt.Errorf("lctest: unknown location %q", locID)
	}
	l.Forbidden = forbidden
	return nil
}

// GroundTruth is what leadsync must end up storing: every live contact of every location,
// by id, with its latest dateUpdated.
func (f *Fake) GroundTruth() []simkit.AccountTruth {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]simkit.AccountTruth, 0, len(f.locs))
	for _, l := range f.locs {
		at := simkit.AccountTruth{Source: "leadconnector", AccountID: l.ID, Restricted: l.Forbidden, Leads: []simkit.LeadTruth{}}
		for _, c := range l.contacts {
			if v := c.latest(); !v.Deleted {
				at.Leads = append(at.Leads, simkit.LeadTruth{ID: v.Data.ID, Kind: "contact", UpdatedAt: v.Data.updated})
			}
		}
		slices.SortFunc(at.Leads, func(a, b simkit.LeadTruth) int { return strings.Compare(a.ID, b.ID) })
		at.Records = f.lifecycleTruth(l)
		out = append(out, at)
	}
	return out
}
