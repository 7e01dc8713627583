package lacrm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// flexString is sources.FlexString: LACRM ids are ~31-digit decimal strings or numbers, kept
// verbatim, never through a number type.
type flexString = sources.FlexString

// flexBool is true/false, 1/0, "1"/"0"/"true"/"false", or null (false).
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	switch string(bytes.TrimSpace(b)) {
	case "true":
		*f = true
		return nil
	case "false", "null":
		*f = false
		return nil
	}
	if err := s.UnmarshalJSON(b); err != nil {
		return errors.New("expected a boolean")
	}
	v, err := strconv.ParseBool(string(s))
	if err != nil {
		return errors.New("expected a boolean")
	}
	*f = flexBool(v)
	return nil
}

// entries are the Email and Phone lists: [{"Text","Type"}], also accepting null, a bare
// string or a list of strings.
type entries []string

func (e *entries) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*e = nil
		return nil
	}
	if b[0] == '"' {
		var s flexString
		if err := s.UnmarshalJSON(b); err != nil {
			return err
		}
		*e = entries{string(s)}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return errors.New("expected a list of {Text, Type}")
	}
	out := make(entries, 0, len(items))
	for _, it := range items {
		it = bytes.TrimSpace(it)
		if len(it) > 0 && it[0] == '{' {
			var v struct {
				Text flexString `json:"Text"`
			}
			if err := json.Unmarshal(it, &v); err != nil {
				return err
			}
			out = append(out, string(v.Text))
			continue
		}
		var s flexString
		if err := s.UnmarshalJSON(it); err != nil {
			return errors.New("expected a list of {Text, Type}")
		}
		out = append(out, string(s))
	}
	*e = out
	return nil
}

func (e entries) first() string {
	for _, s := range e {
		if s != "" {
			return s
		}
	}
	return ""
}

type contactJSON struct {
	ContactID   flexString `json:"ContactId"`
	IsCompany   flexBool   `json:"IsCompany"`
	Name        *nameJSON  `json:"Name"`
	Email       entries    `json:"Email"`
	Phone       entries    `json:"Phone"`
	CompanyName flexString `json:"Company Name"`
	DateCreated flexString `json:"DateCreated"`
	LastUpdate  flexString `json:"LastUpdate"`
	// LeadSource is the "Lead Source" field (API-CONTRACTS.md §5.2: built in or custom, by
	// display name), read leniently: an odd shape is no channel, never a rejected contact.
	LeadSource json.RawMessage `json:"Lead Source"`
}

type nameJSON struct {
	FirstName flexString `json:"FirstName"`
	LastName  flexString `json:"LastName"`
}

// timeLayouts are the shapes LACRM dates come in: ISO-8601 with an offset (API v2), and the
// older "2006-01-02 15:04:05" without one, read as UTC.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05", "2006-01-02"}

func parseTime(field string, s flexString) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, string(s)); err == nil {
			return t.UTC().Truncate(time.Millisecond), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s is not a date", field)
}

func times(created, updated flexString) (time.Time, time.Time, error) {
	c, err := parseTime("DateCreated", created)
	if err != nil {
		return c, c, err
	}
	u, err := parseTime("LastUpdate", updated)
	if err != nil {
		return c, u, err
	}
	if u.IsZero() {
		u = c
	}
	return c, u, nil
}

// listPage is one page of GetContacts or GetPipelineItems.
type listPage struct {
	more bool
	recs []sources.Record
}

// decodeList splits a page into its paging flag and its records, which are decoded one by
// one (decodeRecords) so that a bad one is quarantined, not fatal to the page.
func decodeList(body []byte) (listPage, error) {
	env, recs, _, err := sources.SplitRecords(body, "Results")
	if err != nil {
		return listPage{}, err
	}
	var e struct {
		HasMoreResults bool `json:"HasMoreResults"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return listPage{}, err
	}
	return listPage{more: e.HasMoreResults, recs: recs}, nil
}

// row is one decoded record of a listing: a contact's lead, or a pipeline item's deal.
type row struct {
	id      string
	updated time.Time
	lead    *sources.Lead
	deal    *sources.Deal
}

// recordDecoder maps one record. keep is false for records that are not rows (companies);
// an error rejects the record, and must name fields, never values. The row's id is set
// whenever the record had one, also on an error.
type recordDecoder func(raw []byte) (r row, keep bool, err error)

// contactDecoder decodes GetContacts results of an account.
func contactDecoder(acct string) recordDecoder {
	return func(raw []byte) (row, bool, error) {
		l, keep, err := decodeContact(acct, raw)
		return row{id: l.ID, updated: l.UpdatedAt, lead: &l}, keep, err
	}
}

// itemDecoder decodes GetPipelineItems results of one pipeline.
func itemDecoder(acct sources.Account, pl pipelineInfo) recordDecoder {
	return func(raw []byte) (row, bool, error) {
		d, err := decodePipelineItem(acct, pl, raw)
		return row{id: d.ID, updated: d.UpdatedAt, deal: &d}, err == nil, err
	}
}

// decodeRecords maps a page's records; those that cannot become a row are quarantined. keys
// are every record's PageGuard key, companies included.
func decodeRecords(recs []sources.Record, one recordDecoder) (rows []row, rejected []sources.Rejected, keys []string) {
	rows = make([]row, 0, len(recs))
	for _, r := range recs {
		if r.TooDeep() {
			rejected = append(rejected, r.Reject("", sources.TooDeepReason))
			keys = append(keys, r.Key(""))
			continue
		}
		if len(r.Raw) == 0 || r.Raw[0] != '{' {
			rejected = append(rejected, r.Reject("", "not a JSON object"))
			keys = append(keys, r.Key(""))
			continue
		}
		d, keep, err := one(r.Raw)
		keys = append(keys, r.Key(d.id))
		switch {
		case err != nil:
			rejected = append(rejected, r.Reject(d.id, err.Error()))
		case keep:
			rows = append(rows, d)
		}
	}
	return rows, rejected, keys
}

// decodeContact maps a GetContacts result; company records are not leads. The channel is
// the contact's Lead Source.
func decodeContact(acct string, raw []byte) (sources.Lead, bool, error) {
	var c contactJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		// The id alone, to name the quarantined record.
		var id struct {
			ContactID flexString `json:"ContactId"`
		}
		_ = json.Unmarshal(raw, &id)
		return sources.Lead{ID: string(id.ContactID)}, false, errors.New(sources.DecodeReason(err))
	}
	if c.ContactID == "" {
		return sources.Lead{}, false, errors.New("no ContactId")
	}
	l := sources.Lead{Source: sources.LACRM, AccountID: acct, ID: string(c.ContactID), Kind: sources.KindContact}
	if c.IsCompany {
		return l, false, nil
	}
	created, updated, err := times(c.DateCreated, c.LastUpdate)
	if err != nil {
		return l, false, err
	}
	l.Email, l.Phone, l.Company = c.Email.first(), c.Phone.first(), string(c.CompanyName)
	l.CreatedAt, l.UpdatedAt, l.Raw = created, updated, bytes.Clone(raw)
	l.Channel = leadSource(c.LeadSource)
	if c.Name != nil {
		l.FirstName, l.LastName = string(c.Name.FirstName), string(c.Name.LastName)
	}
	return l, true, nil
}

// leadSource reads a Lead Source value: a string or number as text, a list's first
// non-empty one (a multi-select), an option object's Text or Name; anything else (null, a
// boolean) is none.
func leadSource(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '[':
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return ""
		}
		for _, v := range list {
			if s := leadSource(v); s != "" {
				return s
			}
		}
		return ""
	case '{':
		var o struct {
			Text, Name flexString
		}
		if json.Unmarshal(raw, &o) != nil {
			return ""
		}
		return strings.TrimSpace(string(cmpOr(string(o.Text), string(o.Name))))
	}
	var s flexString
	if raw[0] == 't' || raw[0] == 'f' || s.UnmarshalJSON(raw) != nil {
		return "" // a checkbox names no source
	}
	return strings.TrimSpace(string(s))
}
