package lacrm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
}

type nameJSON struct {
	FirstName flexString `json:"FirstName"`
	LastName  flexString `json:"LastName"`
}

type pipelineItemJSON struct {
	PipelineItemID flexString `json:"PipelineItemId"`
	DateCreated    flexString `json:"DateCreated"`
	LastUpdate     flexString `json:"LastUpdate"`
	StatusMetaData *struct {
		Name flexString `json:"Name"`
	} `json:"StatusMetaData"`
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

// recordDecoder maps one record. keep is false for records that are not leads (companies);
// an error rejects the record, and must name fields, never values. The lead's ID is set
// whenever the record had one, also on an error.
type recordDecoder func(acct string, raw []byte) (l sources.Lead, keep bool, err error)

// decodeRecords maps a page's records; those that cannot become a lead are quarantined. keys
// are every record's PageGuard key, companies included.
func decodeRecords(acct string, recs []sources.Record, one recordDecoder) (leads []sources.Lead, rejected []sources.Rejected, keys []string) {
	leads = make([]sources.Lead, 0, len(recs))
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
		l, keep, err := one(acct, r.Raw)
		keys = append(keys, r.Key(l.ID))
		switch {
		case err != nil:
			rejected = append(rejected, r.Reject(l.ID, err.Error()))
		case keep:
			leads = append(leads, l)
		}
	}
	return leads, rejected, keys
}

// decodeContact maps a GetContacts result; company records are not leads.
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
	if c.Name != nil {
		l.FirstName, l.LastName = string(c.Name.FirstName), string(c.Name.LastName)
	}
	return l, true, nil
}

// decodePipelineItem maps a GetPipelineItems result; the contact id stays in Raw.
func decodePipelineItem(acct string, raw []byte) (sources.Lead, bool, error) {
	var it pipelineItemJSON
	if err := json.Unmarshal(raw, &it); err != nil {
		var id struct {
			PipelineItemID flexString `json:"PipelineItemId"`
		}
		_ = json.Unmarshal(raw, &id)
		return sources.Lead{ID: string(id.PipelineItemID)}, false, errors.New(sources.DecodeReason(err))
	}
	if it.PipelineItemID == "" {
		return sources.Lead{}, false, errors.New("no PipelineItemId")
	}
	l := sources.Lead{Source: sources.LACRM, AccountID: acct, ID: string(it.PipelineItemID), Kind: sources.KindPipelineItem}
	created, updated, err := times(it.DateCreated, it.LastUpdate)
	if err != nil {
		return l, false, err
	}
	l.CreatedAt, l.UpdatedAt, l.Raw = created, updated, bytes.Clone(raw)
	if it.StatusMetaData != nil {
		l.Status = string(it.StatusMetaData.Name)
	}
	return l, true, nil
}
