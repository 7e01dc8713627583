package webhook

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

func TestNewLocaliQAuthorization(t *testing.T) {
	t.Parallel()
	a, err := NewLocaliQAuthorization()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewLocaliQAuthorization()
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || a == b {
		t.Fatalf("%q %q %v", a, b, err)
	}
}

func TestVerifyLocaliQ(t *testing.T) {
	t.Parallel()
	want, _ := NewLocaliQAuthorization()
	if err := VerifyLocaliQ(http.Header{"Authorization": {want}}, want); err != nil {
		t.Fatal(err)
	}
	other, _ := NewLocaliQAuthorization()
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
		r    Reason
	}{
		{"wrong value", http.Header{"Authorization": {other}}, want, ReasonBadSignature},
		{"a prefix of it", http.Header{"Authorization": {want[:20]}}, want, ReasonBadSignature},
		{"with a scheme", http.Header{"Authorization": {"Bearer " + want}}, want, ReasonBadSignature},
		{"missing", http.Header{}, want, ReasonMissingSignature},
		{"empty", http.Header{"Authorization": {""}}, want, ReasonMissingSignature},
		{"two", http.Header{"Authorization": {want, want}}, want, ReasonBadSignature},
		{"nothing stored", http.Header{"Authorization": {""}}, "", ReasonUnconfigured},
	} {
		wantReason(t, VerifyLocaliQ(tc.h, tc.want), tc.r)
	}
}

func TestMatchLocaliQ(t *testing.T) {
	t.Parallel()
	var hooks []LocaliQHook
	for i, gmaid := range []string{"TEST_1", "TEST_1", "TEST_2"} {
		auth, _ := NewLocaliQAuthorization()
		et := []string{LocaliQNewContact, LocaliQNewLead, LocaliQNewContact}[i]
		hooks = append(hooks, LocaliQHook{ID: fmt.Sprintf("%d+%s", 84+i, gmaid), Advertiser: gmaid, EventType: et, Authorization: auth})
	}
	hooks = append(hooks, LocaliQHook{ID: "unset", Advertiser: "TEST_3"})
	for _, want := range hooks[:3] {
		got, err := MatchLocaliQ(http.Header{"Authorization": {want.Authorization}}, hooks)
		if err != nil || got != want {
			t.Fatalf("got %v, %v; want %v", got, err, want)
		}
	}
	_, err := MatchLocaliQ(http.Header{"Authorization": {"guess"}}, hooks)
	wantReason(t, err, ReasonBadSignature)
	// A hook with no value never matches, not even an empty header.
	_, err = MatchLocaliQ(http.Header{"Authorization": {""}}, hooks[3:])
	wantReason(t, err, ReasonMissingSignature)
	// The hook logs without its secret.
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "hook", hooks[0])
	if strings.Contains(buf.String(), hooks[0].Authorization) || strings.Contains(hooks[0].String(), hooks[0].Authorization) {
		t.Fatal("the authorization value is in a log line")
	}
}

// TestParseLocaliQDocExamples parses the lead events of _crm_webhooks.md (copied to
// testdata/localiq): wrapped as {"lead":{…}} (chat, form, email) and bare (call).
func TestParseLocaliQDocExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file    string
		id      string
		created time.Time
		updated time.Time
	}{
		// The chat example as documented lacks its last "}"; chat_lead.json adds it.
		{"chat_lead.json", "1632500", time.Date(2021, 7, 30, 15, 54, 30, 0, time.UTC), time.Date(2021, 7, 30, 15, 54, 30, 0, time.UTC)},
		{"call_lead.json", "136294964", time.Date(2021, 5, 10, 21, 12, 8, 0, time.UTC), time.Date(2021, 5, 10, 21, 12, 8, 0, time.UTC)},
		// read_at is later than created_at: it is the time the polls keep.
		{"form_lead.json", "21", time.Date(2017, 5, 30, 15, 56, 5, 0, time.UTC), time.Date(2017, 6, 6, 18, 32, 48, 0, time.UTC)},
		{"email_lead.json", "1632500", time.Date(2021, 7, 30, 15, 54, 30, 0, time.UTC), time.Date(2021, 7, 30, 15, 54, 30, 0, time.UTC)},
	} {
		body := readTestdata(t, "localiq/"+tc.file)
		ev, err := ParseLocaliQ("TEST_1", LocaliQNewContact, body)
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if ev.Vendor != sources.LocaliQ || ev.Type != LocaliQNewContact || ev.Account != "TEST_1" || ev.Kind != KindLead ||
			ev.Op != OpUpsert || ev.RecordID != tc.id || !ev.OccurredAt.Equal(tc.created) || !ev.VendorUpdatedAt.Equal(tc.updated) {
			t.Errorf("%s: %+v", tc.file, ev)
		}
		// Raw is the lead object, unwrapped, byte for byte.
		if !bytes.Contains(body, ev.Raw) || !bytes.HasPrefix(ev.Raw, []byte("{")) || bytes.HasPrefix(bytes.TrimLeft(ev.Raw[1:], " \n"), []byte(`"lead"`)) {
			t.Errorf("%s: raw is not the lead object", tc.file)
		}
	}
	_, err := ParseLocaliQ("TEST_1", LocaliQNewLead, readTestdata(t, "localiq/chat_lead_as_documented.json"))
	wantReason(t, err, ReasonMalformed)
}

func TestParseLocaliQIDs(t *testing.T) {
	t.Parallel()
	body := readTestdata(t, "localiq/call_lead.json")
	a, _ := ParseLocaliQ("TEST_1", LocaliQNewLead, body)
	b, _ := ParseLocaliQ("TEST_1", LocaliQNewLead, bytes.Clone(body))
	c, _ := ParseLocaliQ("TEST_2", LocaliQNewLead, body)
	wrapped, _ := ParseLocaliQ("TEST_1", LocaliQNewLead, []byte(`{"lead":`+string(body)+`}`))
	if a.WebhookID == "" || a.WebhookID != b.WebhookID || a.WebhookID == c.WebhookID {
		t.Fatalf("ids %q %q %q", a.WebhookID, b.WebhookID, c.WebhookID)
	}
	if wrapped.RecordID != a.RecordID || !bytes.Equal(wrapped.Raw, a.Raw) {
		t.Fatalf("wrapped %+v", wrapped)
	}
}

func TestParseLocaliQOddBodies(t *testing.T) {
	t.Parallel()
	ev, err := ParseLocaliQ("TEST_1", "lead_updated", []byte(`{"id":1}`))
	if err != nil || ev.Op != OpIgnore || ev.Type != "lead_updated" {
		t.Fatalf("unknown event type: %+v %v", ev, err)
	}
	// A string id of digits is an id; a lead object inside a lead is not unwrapped twice.
	ev, err = ParseLocaliQ("TEST_1", LocaliQNewLead, []byte(`{"id":"77","lead":{"id":5}}`))
	if err != nil || ev.RecordID != "77" {
		t.Fatalf("%+v %v", ev, err)
	}
	for name, body := range map[string]string{
		"no id":         `{"lead":{"contact_id":1}}`,
		"a text id":     `{"id":"abc"}`,
		"a negative id": `{"id":-4}`,
		"an array":      `[{"id":1}]`,
		"too deep":      `{"id":1,"x":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
	} {
		_, err := ParseLocaliQ("TEST_1", LocaliQNewLead, []byte(body))
		if r, ok := ReasonOf(err); !ok || r != ReasonMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err = ParseLocaliQ("", LocaliQNewLead, []byte(`{"id":1}`))
	wantReason(t, err, ReasonUnconfigured)
}
