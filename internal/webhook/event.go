package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// Kinds of record an event is about (Event.Kind).
const (
	KindContact     = "contact"     // LeadConnector contacts, LACRM contacts
	KindOpportunity = "opportunity" // LeadConnector opportunities, LACRM pipeline items: deals
	KindLead        = "lead"        // a LocaliQ lead event (a contact interaction)
	KindInstall     = "install"     // a LeadConnector app install or uninstall
	KindLocation    = "location"    // a LeadConnector location (sub-account)
)

// What an event asks of the applier (Event.Op). Stage and status events carry the whole
// record as well: they upsert it, and add a stage history row.
const (
	OpUpsert    = "upsert"
	OpDelete    = "delete"
	OpStage     = "stage"
	OpStatus    = "status"
	OpInstall   = "install"
	OpUninstall = "uninstall"
	OpIgnore    = "ignore" // a type this package does not know, or one leadsync does not use
)

// Limits on what the parsers accept. The endpoint limits the bytes it reads to MaxBodyBytes
// too; the parsers check again so that no caller depends on it.
const (
	// MaxBodyBytes bounds a body. The largest documented payload (a LocaliQ chat lead with
	// its transcript) is about 8 KiB.
	MaxBodyBytes = 1 << 20
	// MaxDepth bounds the nesting of objects and arrays; the documented payloads nest 5 deep.
	MaxDepth = 64
	// maxIDLen bounds the ids an event carries: they become database keys.
	maxIDLen = 256
)

// Event is one verified change, in the same shape for every vendor.
type Event struct {
	Vendor string // sources.LeadConnector, sources.LACRM or sources.LocaliQ
	// Type is the vendor's own event type (ContactCreate, Contact.Create, new_lead), kept
	// also when Op is OpIgnore.
	Type string
	// Account is the account the record belongs to: the LeadConnector locationId (empty for
	// an agency-level install), the LACRM AccountId (else UserId) of the body, the LocaliQ
	// advertiser (GMAID) whose hook received it.
	Account string
	// Company is LeadConnector's companyId (the agency) when the body has one.
	Company  string
	Kind     string
	Op       string
	RecordID string
	// VendorUpdatedAt is the record's own update time when the payload carries one (UTC,
	// milliseconds), else zero: then OccurredAt is the best time to compare with polled data.
	VendorUpdatedAt time.Time
	// OccurredAt is the vendor's time for the event: LeadConnector's signed timestamp; for
	// LACRM and LocaliQ, which send none, the record's update (else creation) time.
	OccurredAt time.Time
	// WebhookID keys the event for deduplication: LeadConnector's webhookId; for LACRM and
	// LocaliQ a hash of the raw body (and of the record's place in it), so that a delivery
	// sent twice is the same event twice.
	WebhookID string
	// Raw is the record's JSON for the applier to decode with the polling decoders: the
	// LeadConnector body (for contacts with its top-level "type" set to null: that is the
	// event type there, where the contacts search has the contact's type), the LACRM
	// element of Contacts or PipelineItems, the LocaliQ lead object; as sent, without the
	// white space around it. It holds PII.
	Raw json.RawMessage
}

// LogValue keeps PII out of logs: an event logs as its ids.
func (e Event) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("vendor", e.Vendor), slog.String("type", e.Type),
		slog.String("account", e.Account), slog.String("op", e.Op),
		slog.String("record", e.RecordID), slog.String("webhook_id", e.WebhookID))
}

// String keeps PII out of %v.
func (e Event) String() string {
	return fmt.Sprintf("webhook event %s %s %s/%s", e.Vendor, e.Type, e.Account, e.RecordID)
}

// checkBody refuses what no parser should decode: too big, nested deeper than MaxDepth, not
// a single JSON object. The depth is measured by sources' scanner, which does not recurse, so
// no depth of input costs more than a byte of it.
func checkBody(vendor string, body []byte) error {
	if len(body) > MaxBodyBytes {
		return reject(vendor, ReasonMalformed, "body larger than %d bytes", MaxBodyBytes)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return reject(vendor, ReasonMalformed, "body is not a JSON object")
	}
	wrapped := make([]byte, 0, len(body)+2)
	wrapped = append(append(append(wrapped, '['), body...), ']')
	_, recs, _, err := sources.SplitRecords(wrapped, "")
	if err != nil || len(recs) != 1 {
		return reject(vendor, ReasonMalformed, "body is not JSON")
	}
	if recs[0].Depth > MaxDepth {
		return reject(vendor, ReasonMalformed, "body nested deeper than %d", MaxDepth)
	}
	return nil
}

// decode unmarshals a checked body; an error names the field, never its value.
func decode(vendor string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return reject(vendor, ReasonMalformed, "%s", sources.DecodeReason(err))
	}
	return nil
}

// text is a scalar read leniently: an object or array where a scalar belongs is "".
func text(raw json.RawMessage) string {
	var s sources.FlexString
	if len(raw) == 0 || s.UnmarshalJSON(raw) != nil {
		return ""
	}
	return strings.TrimSpace(string(s))
}

// checkIDs refuses ids too long to be keys.
func checkIDs(vendor string, ids ...string) error {
	for _, id := range ids {
		if len(id) > maxIDLen {
			return reject(vendor, ReasonMalformed, "an id longer than %d bytes", maxIDLen)
		}
	}
	return nil
}

// timeLayouts are the vendors' date shapes: ISO 8601 with an offset or Z, with or without
// fractions, and the zoneless forms LACRM and LocaliQ also send (read as UTC).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

// parseTime reads a vendor time as UTC at millisecond precision, like the warehouse. An
// integer is Unix milliseconds (LeadConnector's API sends those), or seconds when it is too
// small to be milliseconds of this era. ok is false for "" and for anything unreadable.
func parseTime(s string) (t time.Time, ok bool) {
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > -1e11 && n < 1e11 {
			return time.Unix(n, 0).UTC(), true
		}
		return time.UnixMilli(n).UTC(), true
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), true
		}
	}
	return time.Time{}, false
}

// latest is the latest of the readable times.
func latest(vs ...string) time.Time {
	var out time.Time
	for _, v := range vs {
		if t, ok := parseTime(v); ok && t.After(out) {
			out = t
		}
	}
	return out
}

// bodyID is a stable id for a delivery that carries none: a hash of its parts, each length
// prefixed so that no two different part lists hash alike.
func bodyID(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// nullMembers returns a copy of the object body with the value of each top-level member
// named name (matched as encoding/json matches a field: ignoring case) replaced by null, and
// every other byte as it was. body must have passed checkBody.
func nullMembers(body []byte, name string) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bytes.Clone(body)
	}
	var cuts [][2]int // from just after the key (the colon and the value) to the value's end
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bytes.Clone(body)
		}
		key, _ := t.(string)
		start := int(dec.InputOffset())
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return bytes.Clone(body)
		}
		if strings.EqualFold(key, name) {
			cuts = append(cuts, [2]int{start, int(dec.InputOffset())})
		}
	}
	out := make([]byte, 0, len(body))
	last := 0
	for _, c := range cuts {
		out = append(append(out, body[last:c[0]]...), ":null"...)
		last = c[1]
	}
	return append(out, body[last:]...)
}
