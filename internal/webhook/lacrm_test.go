package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// The LACRM bodies in testdata/lacrm are written to the shape API-CONTRACTS.md §6.2 gives
// ({Contacts:[…]} in the GetContacts shape, {PipelineItems:[…]}, UserId, TriggeringEvent):
// there is no vendor example to copy.

func TestLACRMHandshake(t *testing.T) {
	t.Parallel()
	secret, ok, err := LACRMHandshake(http.Header{"X-Hook-Secret": {"s3cr3t-Value_1"}})
	if !ok || err != nil || secret != "s3cr3t-Value_1" {
		t.Fatalf("%q %v %v", secret, ok, err)
	}
	if _, ok, err := LACRMHandshake(http.Header{"X-Hook-Signature": {"ab"}}); ok || err != nil {
		t.Fatalf("a delivery taken for a handshake: %v %v", ok, err)
	}
	for name, vals := range map[string][]string{
		"empty":       {""},
		"blank":       {"  "},
		"two":         {"a", "b"},
		"too long":    {strings.Repeat("s", maxSecretLen+1)},
		"a control":   {"a\x01b"},
		"not ASCII":   {"clé"},
		"a line feed": {"a\nb"},
	} {
		_, ok, err := LACRMHandshake(http.Header{"X-Hook-Secret": vals})
		if !ok {
			t.Errorf("%s: not seen as a handshake", name)
		}
		wantReason(t, err, ReasonMalformed)
	}
}

func TestVerifyLACRM(t *testing.T) {
	t.Parallel()
	const secret = "hook-secret-from-the-handshake"
	body := readTestdata(t, "lacrm/contact_create.json")
	sig := SignLACRM(secret, body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	sum := mac.Sum(nil)

	for name, s := range map[string]string{
		"hex":        sig,
		"upper hex":  strings.ToUpper(sig),
		"base64":     base64.StdEncoding.EncodeToString(sum),
		"spaced hex": " " + sig + " ",
	} {
		if err := VerifyLACRM(http.Header{"X-Hook-Signature": {s}}, body, secret); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	tampered := bytes.Replace(body, []byte("Google Ads"), []byte("Google Adz"), 1)
	for _, tc := range []struct {
		name   string
		h      http.Header
		body   []byte
		secret string
		want   Reason
	}{
		{"unsigned", http.Header{}, body, secret, ReasonMissingSignature},
		{"empty", http.Header{"X-Hook-Signature": {""}}, body, secret, ReasonMissingSignature},
		{"bad HMAC: another secret", http.Header{"X-Hook-Signature": {SignLACRM("another", body)}}, body, secret, ReasonBadSignature},
		{"tampered body", http.Header{"X-Hook-Signature": {sig}}, tampered, secret, ReasonBadSignature},
		{"truncated digest", http.Header{"X-Hook-Signature": {sig[:62]}}, body, secret, ReasonBadSignature},
		{"not hex", http.Header{"X-Hook-Signature": {"zz"}}, body, secret, ReasonBadSignature},
		{"two", http.Header{"X-Hook-Signature": {sig, sig}}, body, secret, ReasonBadSignature},
		{"no secret stored", http.Header{"X-Hook-Signature": {SignLACRM("", body)}}, body, "", ReasonUnconfigured},
	} {
		wantReason(t, VerifyLACRM(tc.h, tc.body, tc.secret), tc.want)
	}
}

func TestParseLACRMContactCreate(t *testing.T) {
	t.Parallel()
	body := readTestdata(t, "lacrm/contact_create.json")
	evs, err := ParseLACRM(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	want := []struct {
		id       string
		updated  time.Time
		occurred time.Time
	}{
		{"3941718562750163245919874026533", time.Date(2026, 3, 2, 15, 15, 0, 0, time.UTC), time.Date(2026, 3, 2, 15, 15, 0, 0, time.UTC)},
		// An id sent as a number keeps its digits; no LastUpdate: no update time.
		{"3941718562750163245919874026534", time.Time{}, time.Date(2026, 3, 2, 9, 16, 0, 0, time.UTC)},
	}
	for i, ev := range evs {
		if ev.Vendor != sources.LACRM || ev.Type != "Contact.Create" || ev.Account != "1027" || ev.Kind != KindContact ||
			ev.Op != OpUpsert || ev.RecordID != want[i].id || !ev.VendorUpdatedAt.Equal(want[i].updated) ||
			!ev.OccurredAt.Equal(want[i].occurred) || !bytes.Contains(body, ev.Raw) || ev.Raw[0] != '{' {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if evs[0].WebhookID == evs[1].WebhookID {
		t.Fatal("two records of a delivery share an id")
	}
	again, _ := ParseLACRM(bytes.Clone(body))
	if again[0].WebhookID != evs[0].WebhookID || again[1].WebhookID != evs[1].WebhookID {
		t.Fatal("the same delivery twice got other ids")
	}
	other, _ := ParseLACRM(bytes.Replace(body, []byte("Google Ads"), []byte("Bing Ads"), 1))
	if other[0].WebhookID == evs[0].WebhookID {
		t.Fatal("another delivery got the same id")
	}
}

func TestParseLACRMPipelineItemStatus(t *testing.T) {
	t.Parallel()
	body := readTestdata(t, "lacrm/pipeline_item_status_update.json")
	evs, err := ParseLACRM(body)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	ev := evs[0]
	if ev.Type != "PipelineItemStatus.Update" || ev.Account != "88001" || ev.Kind != KindOpportunity || ev.Op != OpUpsert ||
		ev.RecordID != "5512093847561029384756102938475" || !ev.VendorUpdatedAt.Equal(time.Date(2026, 3, 2, 17, 30, 0, 0, time.UTC)) {
		t.Fatalf("%+v", ev)
	}
	create := bytes.Replace(body, []byte("PipelineItemStatus.Update"), []byte("PipelineItemStatus.Create"), 1)
	if evs, err := ParseLACRM(create); err != nil || evs[0].Op != OpUpsert {
		t.Fatalf("create: %v %v", evs, err)
	}
}

func TestParseLACRMOtherEventsAreIgnored(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{
		readTestdata(t, "lacrm/event_create.json"),
		[]byte(`{"TriggeringEvent":"GroupMembership.Create","UserId":"1"}`),
		[]byte(`{"UserId":"1"}`),
	} {
		evs, err := ParseLACRM(body)
		if err != nil || len(evs) != 1 || evs[0].Op != OpIgnore || evs[0].WebhookID == "" {
			t.Errorf("%s: %+v %v", body, evs, err)
		}
	}
}

func TestParseLACRMMalformed(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not JSON":                `{"TriggeringEvent":`,
		"no Contacts":             `{"TriggeringEvent":"Contact.Create"}`,
		"Contacts not a list":     `{"TriggeringEvent":"Contact.Create","Contacts":{}}`,
		"a contact not an object": `{"TriggeringEvent":"Contact.Create","Contacts":[1]}`,
		"a contact without id":    `{"TriggeringEvent":"Contact.Create","Contacts":[{"ContactId":null}]}`,
		"an item without id":      `{"TriggeringEvent":"PipelineItemStatus.Update","PipelineItems":[{"ContactId":"1"}]}`,
		"too deep":                `{"TriggeringEvent":"Contact.Create","Contacts":[` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `]}`,
	} {
		_, err := ParseLACRM([]byte(body))
		if r, ok := ReasonOf(err); !ok || r != ReasonMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	if evs, err := ParseLACRM([]byte(`{"TriggeringEvent":"Contact.Create","Contacts":[]}`)); err != nil || len(evs) != 0 {
		t.Errorf("no contacts: %v %v", evs, err)
	}
}
