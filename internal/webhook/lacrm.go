package webhook

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/leadsync/leadsync/sources"
)

// LACRM's webhook headers (API-CONTRACTS.md §6.2, from the vendor's "Using Webhooks" page,
// api_docs/v2/Advanced/UsingWebhooks, of which there is no copy in vendor-docs).
const (
	// HeaderHookSecret carries the secret on the handshake, the first POST after
	// CreateWebhook; the endpoint answers with the same header and keeps the secret.
	HeaderHookSecret = "X-Hook-Secret"
	// HeaderHookSignature carries the HMAC-SHA256 of every later delivery's body.
	HeaderHookSignature = "X-Hook-Signature"
)

// maxSecretLen bounds a handshake secret; it is echoed in a header and stored.
const maxSecretLen = 1024

// LACRMHandshake recognizes the handshake (API-CONTRACTS.md §6.2): ok is true when the
// request carries X-Hook-Secret, and then either secret is the value to echo back in
// X-Hook-Secret and keep, or err (an *Error) says why it is unusable.
//
// Anyone can send a handshake, and whoever sets the secret can sign deliveries: the caller
// must accept one only for a hook it has just registered with CreateWebhook and that has no
// secret yet, and never let a handshake replace a stored secret.
func LACRMHandshake(h http.Header) (secret string, ok bool, err error) {
	const vendor = sources.LACRM
	vals := h.Values(HeaderHookSecret)
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) != 1 {
		return "", true, reject(vendor, ReasonMalformed, "%d %s headers", len(vals), HeaderHookSecret)
	}
	s := vals[0]
	if strings.TrimSpace(s) == "" || len(s) > maxSecretLen {
		return "", true, reject(vendor, ReasonMalformed, "%s empty or longer than %d bytes", HeaderHookSecret, maxSecretLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "", true, reject(vendor, ReasonMalformed, "%s is not printable ASCII", HeaderHookSecret)
		}
	}
	return s, true, nil
}

// VerifyLACRM checks X-Hook-Signature against the HMAC-SHA256 of body keyed with the hook's
// secret (API-CONTRACTS.md §6.2), with hmac.Equal. The contract does not say how the digest
// is written, nor what the key is. Assumed: the digest in hex, either case (base64 is
// accepted too: both decode to the 32 bytes that are compared, and their lengths differ, so
// neither is mistaken for the other), and the key the secret's bytes as the handshake sent
// them, not decoded. Check both against a real delivery before relying on LACRM webhooks.
func VerifyLACRM(h http.Header, body []byte, secret string) error {
	const vendor = sources.LACRM
	if secret == "" {
		return reject(vendor, ReasonUnconfigured, "no secret for this hook")
	}
	vals := h.Values(HeaderHookSignature)
	switch {
	case len(vals) == 0:
		return reject(vendor, ReasonMissingSignature, "no %s", HeaderHookSignature)
	case len(vals) > 1:
		return reject(vendor, ReasonBadSignature, "%d %s headers", len(vals), HeaderHookSignature)
	}
	s := strings.TrimSpace(vals[0])
	if s == "" {
		return reject(vendor, ReasonMissingSignature, "empty %s", HeaderHookSignature)
	}
	got, err := hex.DecodeString(s)
	if err != nil {
		b, ok := decodeBase64(s)
		if !ok {
			return reject(vendor, ReasonBadSignature, "%s is neither hex nor base64", HeaderHookSignature)
		}
		got = b
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if len(got) != sha256.Size || !hmac.Equal(mac.Sum(nil), got) {
		return reject(vendor, ReasonBadSignature, "%s does not verify", HeaderHookSignature)
	}
	return nil
}

// SignLACRM is the X-Hook-Signature value of body: its HMAC-SHA256 keyed with secret, in
// lower-case hex.
func SignLACRM(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// lacrmRecords are the events that carry records, and the body member that holds them
// (API-CONTRACTS.md §6.2: {Contacts:[…]} in the GetContacts shape, {PipelineItems:[…]}).
// Other events (Event.*, GroupMembership.Create) are ignored: leadsync keeps neither.
var lacrmRecords = map[string]struct{ member, kind string }{
	"Contact.Create":            {"Contacts", KindContact},
	"PipelineItemStatus.Create": {"PipelineItems", KindOpportunity},
	"PipelineItemStatus.Update": {"PipelineItems", KindOpportunity},
}

// lacrmRecord is what of a record the parser reads, by the polling decoders' field names
// (sources/lacrm decode.go, deals.go), matched the same way.
type lacrmRecord struct {
	ContactID      json.RawMessage `json:"ContactId"`
	PipelineItemID json.RawMessage `json:"PipelineItemId"`
	DateCreated    json.RawMessage `json:"DateCreated"`
	LastUpdate     json.RawMessage `json:"LastUpdate"`
}

// ParseLACRM reads a verified LACRM delivery: one Event per record, in order. Each record's
// WebhookID is the body's hash and the record's index, so a delivery sent twice gives the
// same ids. An event type it does not know is one Event with Op "ignore".
func ParseLACRM(body []byte) ([]Event, error) {
	const vendor = sources.LACRM
	if err := checkBody(vendor, body); err != nil {
		return nil, err
	}
	var env struct {
		UserID          json.RawMessage `json:"UserId"`
		AccountID       json.RawMessage `json:"AccountId"`
		TriggeringEvent json.RawMessage `json:"TriggeringEvent"`
	}
	if err := decode(vendor, body, &env); err != nil {
		return nil, err
	}
	typ, account := text(env.TriggeringEvent), cmp.Or(text(env.AccountID), text(env.UserID))
	if err := checkIDs(vendor, typ, account); err != nil {
		return nil, err
	}
	hash := bodyID(body)
	spec, known := lacrmRecords[typ]
	if !known {
		return []Event{{Vendor: vendor, Type: typ, Account: account, Op: OpIgnore, WebhookID: hash + ".0", Raw: clone(bytes.TrimSpace(body))}}, nil
	}
	_, recs, found, err := sources.SplitRecords(body, spec.member)
	if err != nil || !found {
		return nil, reject(vendor, ReasonMalformed, "%s without a %s array", typ, spec.member)
	}
	events := make([]Event, 0, len(recs))
	for i, r := range recs {
		if len(r.Raw) == 0 || r.Raw[0] != '{' {
			return nil, reject(vendor, ReasonMalformed, "%s element %d is not an object", spec.member, i)
		}
		var rec lacrmRecord
		if err := decode(vendor, r.Raw, &rec); err != nil {
			return nil, err
		}
		id, idField := text(rec.ContactID), "ContactId"
		if spec.kind == KindOpportunity {
			id, idField = text(rec.PipelineItemID), "PipelineItemId"
		}
		if id == "" {
			return nil, reject(vendor, ReasonMalformed, "%s element %d without %s", spec.member, i, idField)
		}
		if err := checkIDs(vendor, id); err != nil {
			return nil, err
		}
		updated, _ := parseTime(text(rec.LastUpdate))
		created, _ := parseTime(text(rec.DateCreated))
		events = append(events, Event{Vendor: vendor, Type: typ, Account: account, Kind: spec.kind, Op: OpUpsert,
			RecordID: id, VendorUpdatedAt: updated, OccurredAt: cmp.Or(updated, created),
			WebhookID: hash + "." + strconv.Itoa(i), Raw: clone(r.Raw)})
	}
	return events, nil
}

func clone(b []byte) json.RawMessage { return append(json.RawMessage(nil), b...) }
