package leadconnector

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/leadsync/leadsync/sources"
)

// The dictionaries that name the ids on contacts and opportunities: custom-field
// definitions (HighLevel puts only {id, value} on records, highlevel-api-docs#177) and
// users (assignedTo). Each is one request per location, read whole on every run; a field
// or user the vendor no longer lists is soft-deleted by the full refresh. Neither holds
// lead PII, so a location that refuses its contacts still gives them.

// Streams of the dictionaries.
const (
	StreamCustomFields = "custom_fields"
	StreamUsers        = "users"
)

// Scopes of the dictionaries' endpoints.
const (
	ScopeCustomFields = "locations/customFields.readonly"
	ScopeUsers        = "users.readonly"
)

func init() {
	registerStream(streamDef{Stream: sources.Stream{Name: StreamCustomFields, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		Order: 6, Scope: ScopeCustomFields, read: (*Source).customFields})
	registerStream(streamDef{Stream: sources.Stream{Name: StreamUsers, Mode: sources.FullRefresh, Table: sources.TableDictionary},
		Order: 7, Scope: ScopeUsers, read: (*Source).users})
}

// dictRequest is one dictionary listing of a location.
type dictRequest struct {
	stream, scope string
	path          string
	endpoint      string // PII-free, id-free name for errors and metrics
	query         url.Values
	key           string // the records' member in the answer
	// decode maps one record; skip is a record the vendor lists but that is not an entry.
	decode func(r sources.Record) (e sources.DictEntry, id, reason string, skip bool)
	// redact is what of a rejected record goes to the quarantine (nil: all of it).
	redact func(raw []byte) []byte
}

// customFields lists a location's custom-field definitions of every model with
// GET /locations/{locationId}/customFields?model=all (vendor-docs/leadconnector/locations.json).
func (s *Source) customFields(ctx context.Context, acct sources.Account, _ sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return s.readDictionary(ctx, acct, dictRequest{
		stream: StreamCustomFields, scope: ScopeCustomFields,
		path:     "/locations/" + url.PathEscape(acct.ID) + "/customFields",
		endpoint: "locations/customFields",
		query:    url.Values{"model": {"all"}},
		key:      "customFields",
		decode:   decodeCustomField,
	})
}

// users lists a location's users with GET /users/?locationId= (vendor-docs/leadconnector/
// users.json: one answer, no paging). Only a user's name is kept: staff emails and phones
// stay at the vendor, in the quarantine too.
func (s *Source) users(ctx context.Context, acct sources.Account, _ sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return s.readDictionary(ctx, acct, dictRequest{
		stream: StreamUsers, scope: ScopeUsers,
		path:     "/users/",
		endpoint: "users",
		query:    url.Values{"locationId": {acct.ID}},
		key:      "users",
		decode:   decodeUser,
		redact:   redactUser,
	})
}

// readDictionary makes the one request of a dictionary and yields its single page (empty
// when the location has no entries, so that the pass completes).
func (s *Source) readDictionary(ctx context.Context, acct sources.Account, req dictRequest) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		if acct.ID == "" {
			yield(sources.Page{}, fmt.Errorf("leadconnector: %s of an account without id", req.stream))
			return
		}
		var page sources.Page
		err := s.locationGet(ctx, acct, s.tokens.Account(acct.ID, s.minter(acct.ID)), req.path, req.endpoint, req.query,
			func(body []byte) (err error) {
				page, err = decodeDictionary(body, req)
				return err
			})
		if err != nil {
			yield(sources.Page{}, s.streamError(acct, req.stream, err, req.endpoint))
			return
		}
		for _, r := range page.Rejected {
			s.cfg.Logger.WarnContext(ctx, "leadconnector: quarantined a dictionary entry", slog.String("location", acct.ID),
				slog.String("stream", req.stream), slog.Any("rejected", r))
		}
		yield(page, nil)
	}
}

// decodeDictionary maps an answer's records to entries, quarantining those that cannot be
// one.
func decodeDictionary(body []byte, req dictRequest) (sources.Page, error) {
	_, recs, found, err := sources.SplitRecords(body, req.key)
	switch {
	case err != nil:
		return sources.Page{}, fmt.Errorf("decode %s: %w", req.endpoint, err)
	case !found:
		// Not an empty dictionary: read as one, the full refresh would delete every entry.
		return sources.Page{}, fmt.Errorf("decode %s: the answer has no %s", req.endpoint, req.key)
	}
	page := sources.Page{Dictionary: make([]sources.DictEntry, 0, len(recs))}
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		var e sources.DictEntry
		var id, reason string
		var skip bool
		switch {
		case r.TooDeep():
			reason = sources.TooDeepReason
		case len(r.Raw) == 0 || r.Raw[0] != '{':
			reason = "not a JSON object"
		default:
			e, id, reason, skip = req.decode(r)
		}
		switch {
		case reason != "":
			rej := r.Reject(id, reason)
			if req.redact != nil {
				rej.Raw = req.redact(rej.Raw)
			}
			page.Rejected = append(page.Rejected, rej)
		case !skip && !seen[e.ID]: // an entry listed twice is kept once, as first listed
			seen[e.ID] = true
			page.Dictionary = append(page.Dictionary, e)
		}
	}
	return page, nil
}

// customFieldJSON is what the source reads of a custom field (locations.json, CustomFieldSchema).
type customFieldJSON struct {
	ID              flexString      `json:"id"`
	Name            flexString      `json:"name"`
	FieldKey        flexString      `json:"fieldKey"`
	DataType        flexString      `json:"dataType"`
	Position        flexString      `json:"position"`
	PicklistOptions json.RawMessage `json:"picklistOptions"`
	Model           flexString      `json:"model"`
}

// customFieldDetail is a custom field's DictEntry.Detail: what is present of its fieldKey
// and picklistOptions (kept as the vendor sent them: strings, or objects on some types).
type customFieldDetail struct {
	FieldKey        string          `json:"fieldKey,omitempty"`
	PicklistOptions json.RawMessage `json:"picklistOptions,omitempty"`
}

// decodeCustomField maps a custom field: Category is its model (contact, opportunity).
func decodeCustomField(r sources.Record) (sources.DictEntry, string, string, bool) {
	var c customFieldJSON
	if err := json.Unmarshal(r.Raw, &c); err != nil {
		return sources.DictEntry{}, recordID(r), sources.DecodeReason(err), false
	}
	if strings.TrimSpace(string(c.ID)) == "" {
		return sources.DictEntry{}, "", "no id", false
	}
	e := sources.DictEntry{Kind: sources.DictCustomField, ID: string(c.ID), Name: string(c.Name),
		Position: position(c.Position), DataType: strings.TrimSpace(string(c.DataType)),
		Category: strings.ToLower(strings.TrimSpace(string(c.Model)))}
	d := customFieldDetail{FieldKey: string(c.FieldKey)}
	if opts := c.PicklistOptions; len(opts) > 0 && opts[0] == '[' && !emptyArray(opts) {
		d.PicklistOptions = opts
	}
	if d.FieldKey != "" || d.PicklistOptions != nil {
		b, err := json.Marshal(d) // valid JSON from a record already scanned
		if err != nil {
			return sources.DictEntry{}, e.ID, "picklistOptions: not JSON", false
		}
		e.Detail = b
	}
	return e, e.ID, "", false
}

// userJSON is what the source reads of a user (users.json, UserSchema): never its email or
// phone.
type userJSON struct {
	ID        flexString      `json:"id"`
	Name      flexString      `json:"name"`
	FirstName flexString      `json:"firstName"`
	LastName  flexString      `json:"lastName"`
	Roles     json.RawMessage `json:"roles"`
	Deleted   json.RawMessage `json:"deleted"`
}

// userDetail is a user's DictEntry.Detail: the kind of user, "agency" or "account" (the
// vendor's roles.type), when present.
type userDetail struct {
	RoleType string `json:"roleType"`
}

// decodeUser maps a user: Name is its name (else first and last name), Category its role
// (roles.role: admin, user). A user the vendor marks deleted is not an entry: the full
// refresh soft-deletes it. The roles are read leniently: an odd one leaves them empty.
func decodeUser(r sources.Record) (sources.DictEntry, string, string, bool) {
	var u userJSON
	if err := json.Unmarshal(r.Raw, &u); err != nil {
		return sources.DictEntry{}, recordID(r), sources.DecodeReason(err), false
	}
	if strings.TrimSpace(string(u.ID)) == "" {
		return sources.DictEntry{}, "", "no id", false
	}
	if string(u.Deleted) == "true" {
		return sources.DictEntry{}, string(u.ID), "", true
	}
	var roles struct {
		Type, Role flexString
	}
	_ = json.Unmarshal(u.Roles, &roles)
	name := strings.TrimSpace(string(u.Name))
	if name == "" {
		name = strings.TrimSpace(string(u.FirstName) + " " + string(u.LastName))
	}
	e := sources.DictEntry{Kind: sources.DictUser, ID: string(u.ID), Name: name,
		Category: strings.ToLower(strings.TrimSpace(string(roles.Role)))}
	if t := strings.ToLower(strings.TrimSpace(string(roles.Type))); t != "" {
		e.Detail, _ = json.Marshal(userDetail{RoleType: t}) // a string always encodes
	}
	return e, e.ID, "", false
}

// staffContact are the members of a user record that never leave the vendor (matched
// ignoring case, as encoding/json matches them).
var staffContact = []string{"email", "phone", "lcPhone", "extension", "additionalEmails"}

// redactUser is a quarantined user without its contact details: the object re-encoded
// without them, or nothing when it cannot be read as one.
func redactUser(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	for k := range m {
		for _, s := range staffContact {
			if strings.EqualFold(k, s) {
				delete(m, k)
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

// recordID is a record's id when it can be read alone, for a rejection.
func recordID(r sources.Record) string {
	var id struct {
		ID flexString `json:"id"`
	}
	_ = json.Unmarshal(r.Raw, &id)
	return string(id.ID)
}

// position reads the vendor's position (a JSON number, sometimes a string or a fraction)
// as an int; anything else is 0.
func position(p flexString) int {
	f, err := strconv.ParseFloat(strings.TrimSpace(string(p)), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > math.MaxInt32 {
		return 0
	}
	return int(math.Round(f))
}

func emptyArray(raw json.RawMessage) bool {
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) == 0
}
