package liqtest

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Advertiser is an advertiser (GMAID) as the admin API shows it.
type Advertiser struct {
	GMAID          string `json:"gmaid"`
	Name           string `json:"name"`
	HIPAAProtected bool   `json:"hipaa_protected"`
	ActiveState    int    `json:"active_state"` // 2 active, 1 grace, 0 inactive
	TimeZone       string `json:"time_zone"`
	Interactions   int    `json:"interactions"` // including non-lead chats
	// AgencyCustomer: the sandbox user has the Agency Customer role on it (privilege level 3).
	AgencyCustomer bool `json:"agency_customer"`
}

type advertiser struct {
	gmaid        string
	name         string
	hipaa        bool
	activeState  int
	advertiserID int
	businessID   int
	tzName       string
	loc          *time.Location
	list         []*interaction // sorted by (created, id)
}

type interaction struct {
	id       int64
	adv      *advertiser
	created  time.Time // UTC instant
	kind     string    // call, form, email, chat: the lead kind leadsync stores
	nonLead  bool      // a non-lead chat (mock contact)
	callSecs int       // call duration
	updated  time.Time // latest of created_at, read_at, archived_at, important_at
	doc      map[string]any
}

var zones = []struct {
	name   string
	offset int // hours
}{{"America/Los_Angeles", -8}, {"America/Denver", -7}, {"America/Chicago", -6}, {"America/New_York", -5}, {"UTC", 0}}

var statuses = []string{"pending_contact", "active_contact", "client", "none"}

func share(s float64, n int) int {
	if s <= 0 {
		return 0
	}
	k := int(math.Round(s * float64(n)))
	if k == 0 && n >= 3 {
		k = 1
	}
	return k
}

// seed builds the advertisers and their interactions from Options.Seed.
func (f *Fake) seed() {
	n := f.opts.Advertisers
	r := simkit.RandFor(f.opts.Seed, "advertisers")
	nh := share(f.opts.HIPAAShare, n)
	ni := share(f.opts.InactiveShare, n)
	// Advertiser 0 is always a plain active one, so every sandbox has syncable leads.
	nh = min(nh, n-1)
	ni = min(ni, n-1-nh)
	now := f.clock.Now()
	seen := map[string]bool{}
	for i := range n {
		var gmaid string
		for gmaid == "" || seen[gmaid] {
			switch {
			case i == 4:
				gmaid = "TEST_1"
			case i%3 == 2:
				gmaid = fmt.Sprintf("CAN_%d", 100000+r.IntN(900000))
			default:
				gmaid = fmt.Sprintf("USA_%d", 100000+r.IntN(900000))
			}
			if seen[gmaid] {
				gmaid = fmt.Sprintf("USA_%d", 100000+r.IntN(900000))
			}
		}
		seen[gmaid] = true
		z := zones[r.IntN(len(zones))]
		a := &advertiser{
			gmaid: gmaid, name: simkit.CompanyName(r), activeState: 2,
			advertiserID: 10000 + r.IntN(90000), businessID: 100 + r.IntN(900),
			tzName: z.name, loc: time.FixedZone(z.name, z.offset*3600),
		}
		switch {
		case i >= 1 && i <= nh:
			a.hipaa = true
		case i > nh && i <= nh+ni:
			a.activeState = 0
		case i == nh+ni+1 && n >= 5:
			a.activeState = 1 // grace period: still served
		}
		f.advertisers = append(f.advertisers, a)
		f.byGMAID[gmaid] = a

		ar := simkit.RandFor(f.opts.Seed, "interactions/"+gmaid)
		from := now.Add(-f.opts.History)
		times := make([]time.Time, f.opts.InteractionsPerAdvertiser)
		for k := range times {
			times[k] = simkit.TimeBetween(ar, from, now).Truncate(time.Second)
		}
		slices.SortFunc(times, time.Time.Compare)
		id := int64(1_000_000_000) + int64(i)*100_000_000
		for _, t := range times {
			id += 1 + ar.Int64N(9)
			it := f.newInteraction(ar, a, id, t, NewInteraction{})
			f.seedLook(it, now)
			a.list = append(a.list, it)
			f.byID[id] = it
		}
	}
	f.nextID = 9_000_000_000
}

// seedLook marks most seeded interactions read by the business, and some of those archived,
// before now: read_at and archived_at are nullable datetimes of an interaction
// (../shared/vendor-docs/localiq/_contact_interactions.md), sent in the advertiser's offset
// or in Z like the other times. They draw from their own stream per interaction, so the ids,
// times and contents drawn from the advertiser's stream stay as they were. Interactions
// added later arrive unread.
func (f *Fake) seedLook(it *interaction, now time.Time) {
	r := simkit.RandFor(f.opts.Seed, "look/"+strconv.FormatInt(it.id, 10))
	stamp := func(x time.Time) string {
		if r.IntN(4) == 0 {
			return x.UTC().Format(time.RFC3339)
		}
		return x.In(it.adv.loc).Format(time.RFC3339)
	}
	if r.Float64() >= 0.7 {
		return // unread
	}
	// A first look within minutes to three days.
	read := it.created.Add(time.Duration(1+r.IntN(72*60)) * time.Minute)
	if read.After(now) {
		return
	}
	it.doc["read_at"] = stamp(read)
	it.updated = read
	if r.IntN(5) > 0 {
		return
	}
	archived := read.Add(time.Duration(1+r.IntN(30*24)) * time.Hour)
	if archived.After(now) {
		return
	}
	it.doc["archived_at"] = stamp(archived)
	it.updated = archived
}

// NewInteraction describes an interaction to add. Zero values draw at random.
type NewInteraction struct {
	GMAID     string    `json:"gmaid"`
	EventType string    `json:"event_type,omitempty"` // call, form or chat
	SubType   string    `json:"sub_type,omitempty"`   // forms: FormPost or FormEmail
	CreatedAt time.Time `json:"created_at,omitzero"`  // zero → now
	NonLead   bool      `json:"non_lead,omitempty"`   // a non-lead chat
}

// newInteraction draws one interaction of advertiser a created at t, with the quirks of the
// real API: durations as "mm:ss" or integer seconds, timestamps in local offsets or Z,
// missing keys, empty strings and nulls.
func (f *Fake) newInteraction(r *rand.Rand, a *advertiser, id int64, t time.Time, spec NewInteraction) *interaction {
	t = t.UTC()
	et := spec.EventType
	if et == "" {
		switch x := r.Float64(); {
		case x < 0.45:
			et = "call"
		case x < 0.80:
			et = "form"
		default:
			et = "chat"
		}
	}
	nonLead := spec.NonLead || (et == "chat" && spec.EventType == "" && r.Float64() < 0.15)
	if nonLead {
		et = "chat"
	}
	it := &interaction{id: id, adv: a, created: t, kind: et, nonLead: nonLead}
	stamp := func(x time.Time) string {
		switch v := r.IntN(10); {
		case v < 3:
			return x.UTC().Format(time.RFC3339)
		case v == 3:
			return x.In(a.loc).Format("2006-01-02T15:04:05.000Z07:00")
		default:
			return x.In(a.loc).Format(time.RFC3339)
		}
	}
	p := simkit.NewPerson(r)
	status := simkit.Pick(r, statuses)
	contactID := 400_000_000 + r.Int64N(600_000_000)
	campaign := simkit.Pick(r, simkit.Campaigns)
	channel := simkit.Pick(r, simkit.Channels)
	occurred := t.Add(-time.Duration(1+r.IntN(180)) * time.Second)

	contact := map[string]any{
		"status": status, "id": contactID, "created_at": stamp(t),
		"first_name": p.FirstName, "last_name": p.LastName,
	}
	if r.IntN(5) > 0 {
		contact["tags"] = []string{channel}
	} else {
		contact["tags"] = []string{}
	}
	doc := map[string]any{
		"id": id, "contact_id": contactID, "campaign_id": 20000 + r.IntN(50_000_000),
		"campaign_name": campaign, "created_at": stamp(t), "occured_at": stamp(occurred),
		"event_type": et, "status": status, "display_name": p.LastName + ", " + p.FirstName,
		"contact": contact,
	}
	switch r.IntN(10) {
	case 0: // missing key
	case 1:
		doc["tags"] = []string{}
	default:
		tags := []string{strings.ToUpper(et[:1]) + et[1:] + " Lead", campaign}
		doc["tags"] = append(tags, simkit.PickTags(r)...)
	}
	if r.IntN(30) == 0 {
		doc["campaign_name"] = ""
	}
	// Contact details: keys present, missing, empty or null, as the API sends them.
	switch r.IntN(4) {
	case 0:
		contact["company"] = ""
	case 1:
		contact["company"] = p.Company
	}
	if r.IntN(8) == 0 {
		contact["last_name"] = nil
	}
	phoneKey := simkit.Pick(r, []string{"phone_work", "phone_work", "phone_mobile", "phone_home", ""})
	if phoneKey != "" {
		contact[phoneKey] = p.Phone
		if phoneKey != "phone_work" && r.IntN(2) == 0 {
			contact["phone_work"] = ""
		}
	}
	if et != "call" || r.IntN(3) == 0 {
		contact["email"] = p.Email
	}
	if r.IntN(2) == 0 {
		contact["address1"], contact["city"], contact["state"], contact["postal"] = p.Street, p.City, p.State, p.Zip
		if r.IntN(2) == 0 {
			contact["country"] = "USA"
		}
	}

	switch et {
	case "call":
		secs := 5 + r.IntN(600)
		if r.IntN(20) == 0 {
			secs = 3600 + r.IntN(3600)
		}
		it.callSecs = secs
		call := map[string]any{"occured_at": stamp(occurred), "target_number": fmt.Sprintf("%d", 2000000000+r.IntN(7999999999))}
		if r.IntN(2) == 0 {
			call["duration"] = secs
		} else if secs >= 3600 {
			call["duration"] = fmt.Sprintf("%d:%02d:%02d", secs/3600, secs/60%60, secs%60)
		} else {
			call["duration"] = fmt.Sprintf("%02d:%02d", secs/60, secs%60)
		}
		if r.IntN(5) > 0 {
			call["recording_url"] = fmt.Sprintf("https://recordings.example/%d.mp3", id)
		}
		if r.IntN(10) < 7 {
			call["caller_number"] = p.Phone
		}
		doc["call"] = call
	case "form":
		sub := spec.SubType
		if sub == "" {
			sub = "FormPost"
			if r.IntN(10) < 3 {
				sub = "FormEmail"
			}
		}
		if sub == "FormEmail" {
			it.kind = "email"
		}
		form := map[string]any{"sub_type": sub, "message": "Please call me back about " + strings.ToLower(campaign) + "."}
		form["full_message"] = "Message:\n" + form["message"].(string)
		if r.IntN(4) == 0 {
			form["full_message"] = ""
		}
		if sub == "FormEmail" {
			form["subject"] = "Website inquiry"
		} else if r.IntN(2) == 0 {
			form["subject"] = nil
		}
		extra := map[string]any{}
		if r.IntN(2) == 0 {
			extra["full_name"] = p.FirstName + " " + p.LastName
			extra["zip_code"] = p.Zip
			extra["are_you_the_homeowner?"] = simkit.Pick(r, []string{"Yes", "No"})
		}
		form["extra_fields"] = extra
		doc["form"] = form
	case "chat":
		if nonLead {
			contact["first_name"], contact["last_name"] = "Non-Lead", "Chat"
			contact["email"] = NonLeadChatEmail
			delete(contact, "company")
			delete(contact, phoneKey)
			doc["display_name"] = "Chat, Non-Lead"
		}
		ts := occurred.In(a.loc)
		doc["chat"] = map[string]any{
			"summary": "Hello, how can I help you?\r\nI would like a quote.\r\n",
			"transcript": []map[string]any{
				{"id": 1, "timestamp": ts.Format("1/2/2006 3:04:05 PM"), "from": "Virtual Assistant:", "message": "Hello, how can I help you?"},
				{"id": 2, "timestamp": ts.Add(9 * time.Second).Format("1/2/2006 3:04:05 PM"), "from": "Visitor:", "message": "I would like a quote."},
			},
		}
	}
	// A new interaction is unread: its update time is its creation time. seedLook marks seeded
	// ones read (and archived); an edit (EditInteraction) sets read_at, which becomes the
	// update time.
	it.updated = t
	it.doc = doc
	return it
}

// insert places it in its advertiser's list, keeping the (created, id) order.
func insert(a *advertiser, it *interaction) {
	i, _ := slices.BinarySearchFunc(a.list, it, func(x, y *interaction) int {
		return cmp.Or(x.created.Compare(y.created), cmp.Compare(x.id, y.id))
	})
	a.list = slices.Insert(a.list, i, it)
}

func (a *advertiser) public() Advertiser {
	return Advertiser{GMAID: a.gmaid, Name: a.name, HIPAAProtected: a.hipaa, ActiveState: a.activeState,
		TimeZone: a.tzName, Interactions: len(a.list)}
}
