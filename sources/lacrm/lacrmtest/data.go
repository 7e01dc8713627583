package lacrmtest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// account is one LACRM account (a company using LACRM) and its records.
type account struct {
	id, company string
	zone        *time.Location // LACRM answers in the account's time zone
	userID      string
	pipelines   []*pipeline
	contacts    map[string]*contact
	items       map[string]*item
	// fields are the custom-field definitions, in the order GetCustomFields lists them.
	fields []*customField
}

// Record types of custom fields (GetCustomFields' RecordType).
const (
	recordContact  = "Contact"
	recordCompany  = "Company"
	recordPipeline = "Pipeline"
)

// customField is one custom-field definition. Records carry its values as extra keys named
// after the field (API-CONTRACTS.md §5.2).
type customField struct {
	ID, Name, Type string
	RecordType     string // recordContact, recordCompany or recordPipeline
	PipelineID     string // a pipeline field's pipeline
	Options        []option
}

type option struct{ ID, Name string }

type pipeline struct {
	ID, Name string
	Statuses []status
}

type status struct {
	ID, Name string
	Active   bool
}

type typed struct{ Text, Type string }

type address struct{ Street, City, State, Zip, Country, Type string }

type contact struct {
	ID                                      string
	IsCompany                               bool
	CompanyID                               string
	AssignedTo                              int
	Salutation, First, Middle, Last, Suffix string
	Emails, Phones                          []typed
	Addresses                               []address
	CompanyName, JobTitle, Background       string
	Created, Updated                        time.Time
	Custom                                  map[string]any
}

type item struct {
	ID, PipelineID, StatusID, ContactID string
	Created, Updated                    time.Time
	Custom                              map[string]any
}

// newID draws a LACRM-style id: ~31 decimal digits, far beyond int64.
func newID(r *rand.Rand) string {
	var b strings.Builder
	b.WriteByte(byte('1' + r.IntN(9)))
	for range 30 {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	return b.String()
}

var zones = []*time.Location{
	time.FixedZone("EST", -5*3600), time.FixedZone("CST", -6*3600),
	time.FixedZone("MST", -7*3600), time.FixedZone("PST", -8*3600),
}

var jobTitles = []string{"Owner", "Office Manager", "Marketing Director", "CEO", "Front Desk", "", ""}

func generateAccount(opts Options, u User) *account {
	r := simkit.RandFor(opts.Seed, "lacrm/account/"+u.AccountID)
	a := &account{
		id: u.AccountID, company: u.Company, zone: simkit.Pick(r, zones), userID: newID(r),
		contacts: map[string]*contact{}, items: map[string]*item{},
	}
	// The field definitions draw from their own stream, so that adding them leaves every other
	// record of a seed as it was.
	fr := simkit.RandFor(opts.Seed, "lacrm/fields/"+u.AccountID)
	a.addField(fr, recordContact, "", "Lead Source", "Dropdown", simkit.Channels...)
	a.addField(fr, recordContact, "", "Budget", "Currency")
	a.addField(fr, recordCompany, "", "Industry", "Dropdown", "Dental", "Legal", "Home Services", "Retail")
	for _, p := range []struct {
		name     string
		statuses []string
		closed   int      // the last `closed` statuses are inactive
		text     []string // the pipeline's Text fields, beside Estimated Value
	}{
		{"Leads", []string{"New", "Contacted", "Qualified", "Won", "Lost"}, 2, nil},
		{"Deals", []string{"Proposal", "Negotiation", "Closed Won", "Closed Lost"}, 2, []string{"Next Step"}},
	} {
		pl := &pipeline{ID: newID(r), Name: p.name}
		for i, s := range p.statuses {
			pl.Statuses = append(pl.Statuses, status{ID: newID(r), Name: s, Active: i < len(p.statuses)-p.closed})
		}
		a.pipelines = append(a.pipelines, pl)
		a.addField(fr, recordPipeline, pl.ID, "Estimated Value", "Currency")
		for _, name := range p.text {
			a.addField(fr, recordPipeline, pl.ID, name, "Text")
		}
	}
	end := opts.DataEnd
	start := end.Add(-365 * 24 * time.Hour)
	var companies []*contact
	for range max(opts.Contacts, 0) / 10 {
		c := &contact{ID: newID(r), IsCompany: true, CompanyName: simkit.CompanyName(r), AssignedTo: 1 + r.IntN(3)}
		c.Created = simkit.TimeBetween(r, start, end.Add(-7*24*time.Hour)).Truncate(time.Second)
		c.Updated = simkit.TimeBetween(r, c.Created, end).Truncate(time.Second)
		c.Custom = map[string]any{}
		a.contacts[c.ID] = c
		companies = append(companies, c)
	}
	var people []*contact
	for range max(opts.Contacts, 0) {
		c := newPerson(r, start, end)
		if len(companies) > 0 && r.IntN(2) == 0 {
			co := simkit.Pick(r, companies)
			c.CompanyID, c.CompanyName = co.ID, co.CompanyName
		}
		a.contacts[c.ID] = c
		people = append(people, c)
	}
	for range max(opts.PipelineItems, 0) {
		if len(people) == 0 {
			break
		}
		c := simkit.Pick(r, people)
		pl := simkit.Pick(r, a.pipelines)
		it := &item{ID: newID(r), PipelineID: pl.ID, StatusID: simkit.Pick(r, pl.Statuses).ID, ContactID: c.ID}
		it.Created = simkit.TimeBetween(r, c.Created, end).Truncate(time.Second)
		it.Updated = simkit.TimeBetween(r, it.Created, end).Truncate(time.Second)
		it.Custom = map[string]any{"Estimated Value": float64(100 * (1 + r.IntN(200)))}
		for _, f := range a.fieldsOf(recordPipeline, pl.ID) {
			if f.Type == "Text" {
				it.Custom[f.Name] = simkit.Pick(fr, nextSteps)
			}
		}
		a.items[it.ID] = it
	}
	return a
}

var nextSteps = []string{"Send quote", "Book a demo", "Follow-up call", "Await signature"}

// addField defines a custom field of a record type (and pipeline).
func (a *account) addField(r *rand.Rand, recordType, pipelineID, name, typ string, options ...string) {
	f := &customField{ID: newID(r), Name: name, Type: typ, RecordType: recordType, PipelineID: pipelineID}
	for _, o := range options {
		f.Options = append(f.Options, option{ID: newID(r), Name: o})
	}
	a.fields = append(a.fields, f)
}

// fieldsOf are the fields of a record type ("" → all), and of one pipeline when pipelineID
// is set, in definition order.
func (a *account) fieldsOf(recordType, pipelineID string) []*customField {
	var out []*customField
	for _, f := range a.fields {
		if (recordType == "" || f.RecordType == recordType) && (pipelineID == "" || f.PipelineID == pipelineID) {
			out = append(out, f)
		}
	}
	return out
}

// json renders a field definition the way GetCustomFields does [ours: the API's field
// definitions are documented by third-party clients only (API-CONTRACTS.md §5.2)].
func (f *customField) json() map[string]any {
	opts := make([]map[string]string, 0, len(f.Options))
	for _, o := range f.Options {
		opts = append(opts, map[string]string{"OptionId": o.ID, "Name": o.Name})
	}
	var pipelineID any
	if f.PipelineID != "" {
		pipelineID = f.PipelineID
	}
	return map[string]any{"FieldId": f.ID, "Name": f.Name, "Type": f.Type, "RecordType": f.RecordType,
		"PipelineId": pipelineID, "IsRequired": false, "Options": opts}
}

// newPerson draws a contact created in [start, end).
func newPerson(r *rand.Rand, start, end time.Time) *contact {
	p := simkit.NewPerson(r)
	c := &contact{
		ID: newID(r), First: p.FirstName, Last: p.LastName, AssignedTo: 1 + r.IntN(3),
		Emails:      []typed{{p.Email, "Work"}},
		Phones:      []typed{{p.Phone, simkit.Pick(r, []string{"Work", "Mobile", "Home"})}},
		Addresses:   []address{{p.Street, p.City, p.State, p.Zip, "United States", "Work"}},
		CompanyName: p.Company, JobTitle: simkit.Pick(r, jobTitles),
		Custom: map[string]any{"Lead Source": simkit.Pick(r, simkit.Channels)},
	}
	if r.IntN(4) == 0 {
		c.Salutation = simkit.Pick(r, []string{"Mr.", "Ms.", "Dr."})
	}
	if r.IntN(3) == 0 {
		c.Phones = append(c.Phones, typed{fmt.Sprintf("+1%03d555%04d", 200+r.IntN(800), r.IntN(10000)), "Mobile"})
	}
	if r.IntN(3) == 0 {
		c.Background = "Met at the " + simkit.Pick(r, simkit.Campaigns) + " event."
	}
	if r.IntN(2) == 0 {
		c.Custom["Budget"] = float64(500 * (1 + r.IntN(40)))
	}
	c.Created = simkit.TimeBetween(r, start, end.Add(-7*24*time.Hour)).Truncate(time.Second)
	c.Updated = simkit.TimeBetween(r, c.Created, end).Truncate(time.Second)
	return c
}

const timeLayout = "2006-01-02T15:04:05-07:00"

// json renders a contact the way GetContacts does: custom fields as extra keys.
func (c *contact) json(zone *time.Location) map[string]any {
	m := map[string]any{}
	for k, v := range c.Custom {
		m[k] = v
	}
	emails := make([]map[string]string, 0, len(c.Emails))
	for _, e := range c.Emails {
		emails = append(emails, map[string]string{"Text": e.Text, "Type": e.Type})
	}
	phones := make([]map[string]string, 0, len(c.Phones))
	for _, p := range c.Phones {
		phones = append(phones, map[string]string{"Text": p.Text, "Type": p.Type})
	}
	addrs := make([]map[string]string, 0, len(c.Addresses))
	for _, a := range c.Addresses {
		addrs = append(addrs, map[string]string{"Street": a.Street, "City": a.City, "State": a.State,
			"Zip": a.Zip, "Country": a.Country, "Type": a.Type})
	}
	var name any
	if !c.IsCompany {
		name = map[string]string{"Salutation": c.Salutation, "FirstName": c.First, "MiddleName": c.Middle,
			"LastName": c.Last, "Suffix": c.Suffix}
	}
	var companyID any
	if c.CompanyID != "" {
		companyID = c.CompanyID
	}
	m["ContactId"] = c.ID
	m["IsCompany"] = c.IsCompany
	m["CompanyId"] = companyID
	m["AssignedTo"] = c.AssignedTo
	m["Name"] = name
	m["Email"] = emails
	m["Phone"] = phones
	m["Address"] = addrs
	m["Company Name"] = c.CompanyName
	m["Job Title"] = c.JobTitle
	m["Background Info"] = c.Background
	m["DateCreated"] = c.Created.In(zone).Format(timeLayout)
	m["LastUpdate"] = c.Updated.In(zone).Format(timeLayout)
	return m
}

func (a *account) pipeline(id string) *pipeline {
	for _, p := range a.pipelines {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (p *pipeline) status(id string) (int, status) {
	for i, s := range p.Statuses {
		if s.ID == id {
			return i, s
		}
	}
	return -1, status{}
}

func (it *item) json(a *account) map[string]any {
	m := map[string]any{}
	for k, v := range it.Custom {
		m[k] = v
	}
	pl := a.pipeline(it.PipelineID)
	_, st := pl.status(it.StatusID)
	m["PipelineItemId"] = it.ID
	m["PipelineId"] = it.PipelineID
	m["StatusId"] = it.StatusID
	m["ContactId"] = it.ContactID
	m["DateCreated"] = it.Created.In(a.zone).Format(timeLayout)
	m["LastUpdate"] = it.Updated.In(a.zone).Format(timeLayout)
	m["StatusMetaData"] = map[string]any{"Name": st.Name, "IsActive": st.Active}
	m["PipelineMetaData"] = map[string]any{"Name": pl.Name}
	return m
}
