package localiq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// The decoders below are lenient on purpose: the API documents integers that arrive as
// "00:55", booleans typed String, nullable fields and missing keys. A leaf value of an
// unexpected type decodes to its zero value instead of failing the whole page; only a body
// that is not JSON, or an interaction we cannot key, is an error.

// flexString is sources.FlexString read leniently, as the vendor's documented type drift
// asks: an object or an array where a scalar belongs is "", and strings are trimmed.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	var f sources.FlexString
	if f.UnmarshalJSON(b) != nil {
		*s = ""
		return nil
	}
	*s = flexString(strings.TrimSpace(string(f)))
	return nil
}

// flexInt accepts a number or a numeric string; anything else is 0.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	var s flexString
	_ = s.UnmarshalJSON(b)
	if v, err := strconv.ParseInt(string(s), 10, 64); err == nil {
		*n = flexInt(v)
	} else if f, err := strconv.ParseFloat(string(s), 64); err == nil && !math.IsNaN(f) && math.Abs(f) < 1<<62 {
		*n = flexInt(f)
	}
	return nil
}

// flexBool accepts true/false, "true"/"false"/"1"/"yes", and numbers (non-zero is true).
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	_ = s.UnmarshalJSON(b)
	switch strings.ToLower(string(s)) {
	case "true", "t", "1", "yes", "y":
		*v = true
	default:
		f, err := strconv.ParseFloat(string(s), 64)
		*v = flexBool(err == nil && f != 0)
	}
	return nil
}

// flexStrings accepts an array of scalars or a single string.
type flexStrings []string

func (l *flexStrings) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	if b[0] != '[' {
		var s flexString
		_ = s.UnmarshalJSON(b)
		if s != "" {
			*l = flexStrings{string(s)}
		}
		return nil
	}
	var items []flexString
	if json.Unmarshal(b, &items) != nil {
		return nil
	}
	out := make(flexStrings, 0, len(items))
	for _, it := range items {
		if it != "" {
			out = append(out, string(it))
		}
	}
	*l = out
	return nil
}

// object decodes b into v only when b is a JSON object; v's fields are all lenient.
func object(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	_ = json.Unmarshal(b, v)
	return nil
}

type contactJSON struct {
	Status      flexString  `json:"status"`
	FirstName   flexString  `json:"first_name"`
	LastName    flexString  `json:"last_name"`
	Email       flexString  `json:"email"`
	Company     flexString  `json:"company"`
	PhoneWork   flexString  `json:"phone_work"`
	PhoneMobile flexString  `json:"phone_mobile"`
	PhoneHome   flexString  `json:"phone_home"`
	Tags        flexStrings `json:"tags"`
}

func (c *contactJSON) UnmarshalJSON(b []byte) error {
	type plain contactJSON
	return object(b, (*plain)(c))
}

type callJSON struct {
	Duration     json.RawMessage `json:"duration"`
	CallerNumber flexString      `json:"caller_number"`
}

func (c *callJSON) UnmarshalJSON(b []byte) error {
	type plain callJSON
	return object(b, (*plain)(c))
}

type formJSON struct {
	SubType flexString `json:"sub_type"`
}

func (f *formJSON) UnmarshalJSON(b []byte) error {
	type plain formJSON
	return object(b, (*plain)(f))
}

// interactionJSON is the part of a contact interaction leadsync maps; Raw keeps all of it.
type interactionJSON struct {
	ID           flexString  `json:"id"`
	CampaignName flexString  `json:"campaign_name"`
	CreatedAt    flexString  `json:"created_at"`
	ReadAt       flexString  `json:"read_at"`
	ArchivedAt   flexString  `json:"archived_at"`
	ImportantAt  flexString  `json:"important_at"`
	EventType    flexString  `json:"event_type"`
	Status       flexString  `json:"status"`
	DisplayName  flexString  `json:"display_name"`
	Tags         flexStrings `json:"tags"`
	Contact      contactJSON `json:"contact"`
	Call         callJSON    `json:"call"`
	Form         formJSON    `json:"form"`
}

// interactionsPage is one page of /crm/contact_interactions.
type interactionsPage struct {
	Page         int
	TotalPages   int
	NextLocation string
	Items        []sources.Record
}

// More reports whether the vendor says pages follow this one.
func (p interactionsPage) More() bool {
	return len(p.Items) > 0 && (p.NextLocation != "" || p.Page < p.TotalPages)
}

// decodeInteractionsPage reads a page: the documented object, or the bare empty array the
// API answers past the last page. The interactions stay raw for toLead, one at a time.
func decodeInteractionsPage(body []byte) (interactionsPage, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		_, items, _, err := sources.SplitRecords(body, "")
		return interactionsPage{Items: items}, err
	}
	env, items, _, err := sources.SplitRecords(body, "contact_interactions")
	if err != nil {
		return interactionsPage{}, err
	}
	var w struct {
		Page         flexInt    `json:"page"`
		TotalPages   flexInt    `json:"total_pages"`
		NextLocation flexString `json:"next_page_location"`
	}
	if err := json.Unmarshal(env, &w); err != nil {
		return interactionsPage{}, err
	}
	return interactionsPage{Page: int(w.Page), TotalPages: int(w.TotalPages), NextLocation: string(w.NextLocation), Items: items}, nil
}

// NonLeadChatEmail is the mock contact email of non-lead chats, which are not leads.
const NonLeadChatEmail = "nonleadchat@reachlocal.com"

// toLead maps one interaction. keep is false for non-lead chats. An error says, without
// PII, why the interaction cannot be a lead; lead.ID is set whenever it had one.
func toLead(acct sources.Account, rec sources.Record) (lead sources.Lead, keep bool, err error) {
	raw := rec.Raw
	switch {
	case rec.TooDeep():
		return lead, false, errors.New(sources.TooDeepReason)
	case len(raw) == 0 || raw[0] != '{':
		return lead, false, errors.New("interaction is not a JSON object")
	}
	var in interactionJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return lead, false, errors.New(sources.DecodeReason(err))
	}
	id := string(in.ID)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return lead, false, errors.New("interaction without an integer id")
	}
	c := in.Contact
	if strings.EqualFold(string(c.Email), NonLeadChatEmail) {
		return lead, false, nil
	}
	kind := strings.ToLower(string(in.EventType))
	if kind == sources.KindForm && strings.EqualFold(string(in.Form.SubType), "FormEmail") {
		kind = sources.KindEmail
	}
	first, last := string(c.FirstName), string(c.LastName)
	if first == "" && last == "" {
		// display_name is "Last, First" when the contact has no name fields.
		if l, f, ok := strings.Cut(string(in.DisplayName), ","); ok {
			first, last = strings.TrimSpace(f), strings.TrimSpace(l)
		}
	}
	channel := string(in.CampaignName)
	if len(c.Tags) > 0 {
		channel = c.Tags[0] // the contact's source tag: "Organic Search", "Google Ads"...
	}
	created, _ := parseTime(string(in.CreatedAt))
	read, _ := parseTime(string(in.ReadAt))
	archived, _ := parseTime(string(in.ArchivedAt))
	important, _ := parseTime(string(in.ImportantAt))
	updated := created
	for _, t := range []time.Time{read, archived, important} {
		if t.After(updated) {
			updated = t
		}
	}
	// call.duration: integer seconds per the docs, "04:54" or "1:14:01" in practice. One we
	// cannot read is unknown (0), as a duration is for every kind but calls.
	var secs int64
	if kind == sources.KindCall {
		secs, _ = parseDuration(in.Call.Duration)
	}
	lead = sources.Lead{
		Source: sources.LocaliQ, AccountID: acct.ID, ID: id, Kind: kind,
		Status:    firstNonEmpty(string(in.Status), string(c.Status)),
		FirstName: first, LastName: last, Email: string(c.Email), Company: string(c.Company),
		Phone:   firstNonEmpty(string(c.PhoneWork), string(c.PhoneMobile), string(c.PhoneHome), string(in.Call.CallerNumber)),
		Channel: channel, Campaign: string(in.CampaignName), Tags: []string(in.Tags),
		CreatedAt: created, UpdatedAt: updated, Raw: append(json.RawMessage(nil), raw...), HIPAA: acct.HIPAAProtected,
		ReadAt: read, ArchivedAt: archived, DurationSeconds: secs,
	}
	return lead, true, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02T15:04:05", // no zone: UTC
	"2006-01-02 15:04:05",
	"2006-01-02",
}

// parseTime reads the API's timestamps (offsets or Z, with or without fractions) as UTC,
// millisecond precision like the rest of the warehouse.
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), true
		}
	}
	return time.Time{}, false
}

// maxCallSeconds bounds a call duration: anything longer is junk, not a call.
const maxCallSeconds = 1e9

// parseDuration reads an interaction's call.duration as whole seconds. It is documented as
// integer seconds (265) and also arrives as "04:54" (mm:ss) and "1:14:01" (h:mm:ss), or as a
// numeric string. A fraction rounds to the nearest second; in the colon forms every field but
// the first has two digits, at most 59. ok is false for anything else: null, "", negative
// numbers, junk.
func parseDuration(raw json.RawMessage) (seconds int64, ok bool) {
	var s flexString
	if s.UnmarshalJSON(raw) != nil || s == "" {
		return 0, false
	}
	parts := strings.Split(string(s), ":")
	switch len(parts) {
	case 1:
		f, err := strconv.ParseFloat(parts[0], 64)
		if err != nil || !(f >= 0 && f < maxCallSeconds) {
			return 0, false
		}
		return int64(math.Round(f)), true
	case 2, 3:
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil || (i > 0 && (len(p) != 2 || n > 59)) {
				return 0, false
			}
			seconds = seconds*60 + int64(n)
		}
		if seconds >= maxCallSeconds {
			return 0, false
		}
		return seconds, true
	}
	return 0, false
}

// identitiesPage is one page of /identities/v3.
type identitiesPage struct {
	AdvertiserCount flexInt          `json:"advertiser_count"`
	Page            flexInt          `json:"page"`
	PageSize        flexInt          `json:"page_size"`
	Advertisers     []advertiserJSON `json:"authorized_advertisers"`
}

type advertiserJSON struct {
	GMAID          flexString `json:"gmaid"`
	Name           flexString `json:"name"`
	Platform       flexString `json:"platform"`
	HIPAAProtected flexBool   `json:"hipaa_protected"`
	ActiveState    *flexInt   `json:"active_state"`
	PrivilegeLevel *flexInt   `json:"privilege_level"`
}

func (a *advertiserJSON) UnmarshalJSON(b []byte) error {
	type plain advertiserJSON
	return object(b, (*plain)(a))
}

// decodeIdentities reads a page of advertisers. An entry that cannot be read is left out
// and its index returned in bad: one bad entry must not hide the other advertisers.
func decodeIdentities(body []byte) (p identitiesPage, keys []string, bad []int, err error) {
	env, recs, _, err := sources.SplitRecords(body, "authorized_advertisers")
	if err != nil {
		return p, nil, nil, err
	}
	if err := json.Unmarshal(env, &p); err != nil {
		return p, nil, nil, err
	}
	for i, r := range recs {
		var a advertiserJSON
		if r.TooDeep() || json.Unmarshal(r.Raw, &a) != nil || a.GMAID == "" {
			bad = append(bad, i)
			keys = append(keys, r.Key(""))
			continue
		}
		keys = append(keys, r.Key(string(a.GMAID)))
		p.Advertisers = append(p.Advertisers, a)
	}
	return p, keys, bad, nil
}

// account maps an advertiser; ok is false for entries without a GMAID.
func (a advertiserJSON) account() (sources.Account, bool) {
	if a.GMAID == "" {
		return sources.Account{}, false
	}
	acct := sources.Account{Source: sources.LocaliQ, ID: string(a.GMAID), Name: string(a.Name),
		HIPAAProtected: bool(a.HIPAAProtected), Active: true, Meta: map[string]string{}}
	if a.ActiveState != nil {
		// 2 active, 1 inactive in grace period (still served), 0 inactive.
		acct.Active = *a.ActiveState != 0
		acct.Meta["active_state"] = strconv.FormatInt(int64(*a.ActiveState), 10)
	}
	if a.PrivilegeLevel != nil {
		acct.Meta["privilege_level"] = strconv.FormatInt(int64(*a.PrivilegeLevel), 10)
	}
	if a.Platform != "" {
		acct.Meta["platform"] = string(a.Platform)
	}
	return acct, true
}

// leadDetail is the part of the lead_detail report DailyCounts reads.
type leadDetail struct {
	ReportData struct {
		TotalsPerInterval []struct {
			StartDate flexString `json:"start_date"`
			Calls     flexInt    `json:"calls"`
			Emails    flexInt    `json:"emails"`
			WebEvents flexInt    `json:"web_events"`
			Chats     flexInt    `json:"chats"`
		} `json:"totals_per_interval"`
	} `json:"report_data"`
}

func decodeLeadDetail(body []byte) ([]sources.DailyCount, error) {
	var rep leadDetail
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, err
	}
	var out []sources.DailyCount
	for _, iv := range rep.ReportData.TotalsPerInterval {
		day, err := time.Parse("2006-01-02", string(iv.StartDate))
		if err != nil {
			return nil, fmt.Errorf("interval start_date %q: %w", iv.StartDate, err)
		}
		for _, c := range []struct {
			kind string
			n    flexInt
		}{{sources.KindCall, iv.Calls}, {sources.KindEmail, iv.Emails}, {sources.KindForm, iv.WebEvents}, {sources.KindChat, iv.Chats}} {
			out = append(out, sources.DailyCount{Day: day, Kind: c.kind, Count: int(c.n)})
		}
	}
	return out, nil
}
