package webhook

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/leadsync/leadsync/sources"
)

// HeaderLocaliQAuthorization is the header a LocaliQ delivery carries the hook's
// authorization value in. The register call names the value only "Authorization for Endpoint
// Webhook POSTs data to" (vendor-docs/localiq/_crm_webhooks.md, "Register via API"), and
// Client Center calls it the "Authentication Header" (same file, "Client Center Webhook"):
// the header is assumed to be Authorization, with the value verbatim (API-CONTRACTS.md §6.3).
const HeaderLocaliQAuthorization = "Authorization"

// LocaliQ event types a hook is registered for (_crm_webhooks.md, "Payload"): new_contact
// is a new lead of a new contact, new_lead a new lead of an existing contact.
const (
	LocaliQNewContact = "new_contact"
	LocaliQNewLead    = "new_lead"
)

// LocaliQHook is one registration of POST /crm/webhooks (_crm_webhooks.md).
type LocaliQHook struct {
	ID         string // what the register call answered, e.g. "84+TEST_1"; DELETE takes it
	Advertiser string // the global_master_advertiser_id it was registered for
	EventType  string // LocaliQNewContact or LocaliQNewLead
	// Authorization is the value registered with it (NewLocaliQAuthorization): a secret.
	Authorization string
}

// LogValue keeps the authorization value out of logs.
func (h LocaliQHook) LogValue() slog.Value {
	return slog.GroupValue(slog.String("hook", h.ID), slog.String("advertiser", h.Advertiser),
		slog.String("event_type", h.EventType))
}

// String keeps the authorization value out of %v.
func (h LocaliQHook) String() string {
	return fmt.Sprintf("localiq hook %s (%s, %s)", h.ID, h.Advertiser, h.EventType)
}

// NewLocaliQAuthorization makes the authorization value to register a hook with: 32 random
// bytes, base64url without padding. LocaliQ deliveries carry no signature, so this value is
// all that tells them from anyone else's POST.
func NewLocaliQAuthorization() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook: localiq: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// VerifyLocaliQ checks that the delivery's authorization header is want, in constant time.
func VerifyLocaliQ(h http.Header, want string) error {
	if want == "" {
		return reject(sources.LocaliQ, ReasonUnconfigured, "no authorization value for this hook")
	}
	_, err := MatchLocaliQ(h, []LocaliQHook{{Authorization: want}})
	return err
}

// MatchLocaliQ finds the hook whose authorization value the delivery carries: the body does
// not name its advertiser, so the value is what says whose lead it is. Every hook is
// compared, in constant time, whatever matched: the time taken says nothing of which did.
// Hooks without a value never match.
func MatchLocaliQ(h http.Header, hooks []LocaliQHook) (LocaliQHook, error) {
	const vendor = sources.LocaliQ
	vals := h.Values(HeaderLocaliQAuthorization)
	switch {
	case len(vals) == 0 || len(vals) == 1 && vals[0] == "":
		return LocaliQHook{}, reject(vendor, ReasonMissingSignature, "no %s header", HeaderLocaliQAuthorization)
	case len(vals) > 1:
		return LocaliQHook{}, reject(vendor, ReasonBadSignature, "%d %s headers", len(vals), HeaderLocaliQAuthorization)
	}
	// Comparing digests keeps the values' lengths out of the timing too.
	got := sha256.Sum256([]byte(vals[0]))
	match := -1
	for i, hook := range hooks {
		configured := 0
		if hook.Authorization != "" {
			configured = 1
		}
		want := sha256.Sum256([]byte(hook.Authorization))
		eq := subtle.ConstantTimeCompare(got[:], want[:]) & configured
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return LocaliQHook{}, reject(vendor, ReasonBadSignature, "%s matches no hook", HeaderLocaliQAuthorization)
	}
	return hooks[match], nil
}

// localiqLead is what of a lead object the parser reads, by the polling decoder's names
// (sources/localiq decode.go); its fields are read leniently, as that decoder reads them.
type localiqLead struct {
	ID          json.RawMessage `json:"id"`
	CreatedAt   json.RawMessage `json:"created_at"`
	ReadAt      json.RawMessage `json:"read_at"`
	ArchivedAt  json.RawMessage `json:"archived_at"`
	ImportantAt json.RawMessage `json:"important_at"`
}

// ParseLocaliQ reads a verified delivery of a hook of advertiser registered for eventType:
// the lead object (_crm_webhooks.md, "Webhook Payload"), bare or wrapped as {"lead":{…}}
// (the document shows both; API-CONTRACTS.md §6.3). VendorUpdatedAt is the latest of the
// lead's created_at, read_at, archived_at and important_at, the time the polls compare;
// OccurredAt its created_at. The body names no event, so the hook's type is Event.Type.
func ParseLocaliQ(advertiser, eventType string, body []byte) (Event, error) {
	const vendor = sources.LocaliQ
	if advertiser == "" {
		return Event{}, reject(vendor, ReasonUnconfigured, "no advertiser for this hook")
	}
	if err := checkBody(vendor, body); err != nil {
		return Event{}, err
	}
	if err := checkIDs(vendor, advertiser, eventType); err != nil {
		return Event{}, err
	}
	lead := bytes.TrimSpace(body)
	var wrap struct {
		Lead json.RawMessage `json:"lead"`
		ID   json.RawMessage `json:"id"`
	}
	if err := decode(vendor, body, &wrap); err != nil {
		return Event{}, err
	}
	// A lead object has an id; a wrapper has a lead object and no id.
	if l := bytes.TrimSpace(wrap.Lead); len(l) > 0 && l[0] == '{' && len(wrap.ID) == 0 {
		lead = l
	}
	ev := Event{Vendor: vendor, Type: eventType, Account: advertiser, Op: OpIgnore,
		WebhookID: bodyID([]byte(advertiser), []byte(eventType), body), Raw: clone(lead)}
	if eventType != LocaliQNewContact && eventType != LocaliQNewLead {
		return ev, nil
	}
	var l localiqLead
	if err := decode(vendor, lead, &l); err != nil {
		return Event{}, err
	}
	// The polls key lead events by their integer id (sources/localiq decode.go).
	id := text(l.ID)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return Event{}, reject(vendor, ReasonMalformed, "lead without an integer id")
	}
	ev.Kind, ev.Op, ev.RecordID = KindLead, OpUpsert, id
	ev.VendorUpdatedAt = latest(text(l.CreatedAt), text(l.ReadAt), text(l.ArchivedAt), text(l.ImportantAt))
	ev.OccurredAt, _ = parseTime(text(l.CreatedAt))
	return ev, nil
}
