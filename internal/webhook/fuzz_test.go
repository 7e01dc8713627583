package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// addTestdata seeds a fuzz target with the documented examples of a vendor, but for the long
// chat transcript: the engine minimizes every new input it finds, and one grown from 8 KiB
// takes it seconds that are better spent fuzzing.
func addTestdata(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/%s: %v", dir, err)
	}
	for _, p := range files {
		if b := readTestdata(f, filepath.Join(dir, filepath.Base(p))); len(b) <= 4<<10 {
			f.Add(b)
		}
	}
}

var validOps = map[string]bool{OpUpsert: true, OpDelete: true, OpStage: true, OpStatus: true, OpInstall: true, OpUninstall: true, OpIgnore: true}

// checkEvent holds for every event a parser returns: a known op, a kind unless ignored, a
// record id to act on, ids short enough for keys, and Raw taken from the body as it was.
func checkEvent(t *testing.T, vendor string, body []byte, ev Event) {
	t.Helper()
	if ev.Vendor != vendor || !validOps[ev.Op] || (ev.Op != OpIgnore) == (ev.Kind == "") {
		t.Fatalf("event %+v", ev)
	}
	if ev.Op != OpIgnore && ev.RecordID == "" {
		t.Fatalf("an event to apply without a record id: %+v", ev)
	}
	for _, id := range []string{ev.Type, ev.Account, ev.Company, ev.RecordID, ev.WebhookID} {
		if len(id) > maxIDLen {
			t.Fatalf("an id of %d bytes", len(id))
		}
	}
	if !json.Valid(ev.Raw) || ev.Raw[0] != '{' {
		t.Fatalf("raw %q", ev.Raw)
	}
	if ev.Kind != KindContact || vendor != sources.LeadConnector {
		if !bytes.Contains(body, ev.Raw) {
			t.Fatal("raw is not a part of the body")
		}
	}
}

// FuzzParseLeadConnector: no body panics the parser, and what parses is a usable event.
func FuzzParseLeadConnector(f *testing.F) {
	addTestdata(f, "leadconnector")
	f.Add([]byte(`{"type":"ContactCreate","locationId":"L","id":"C","timestamp":1784023200000,"webhookId":7,"type":"ContactDelete"}`))
	f.Add([]byte(`{"TYPE":"ContactCreate","locationId":"L","id":"C","Type":"ContactUpdate","dateUpdated":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseLeadConnector(body)
		if err != nil {
			if _, ok := ReasonOf(err); !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		checkEvent(t, sources.LeadConnector, body, ev)
		if ev.Kind == KindContact {
			var top map[string]json.RawMessage
			if json.Unmarshal(ev.Raw, &top) != nil {
				t.Fatal("a contact's raw does not decode")
			}
			for k, v := range top {
				if (k == "type" || k == "Type" || k == "TYPE") && string(v) != "null" {
					t.Fatalf("the event type is left in a contact's raw: %s", v)
				}
			}
		}
	})
}

// FuzzParseLACRM: no body panics the parser, and each event is a record of the body.
func FuzzParseLACRM(f *testing.F) {
	addTestdata(f, "lacrm")
	f.Add([]byte(`{"TriggeringEvent":"PipelineItemStatus.Create","PipelineItems":[{"PipelineItemId":1,"LastUpdate":"2026-01-01 00:00:00"},{"PipelineItemId":"2"}],"pipelineitems":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := ParseLACRM(body)
		if err != nil {
			if _, ok := ReasonOf(err); !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		ids := map[string]bool{}
		for _, ev := range evs {
			checkEvent(t, sources.LACRM, body, ev)
			if ids[ev.WebhookID] {
				t.Fatal("two events of a delivery share an id")
			}
			ids[ev.WebhookID] = true
		}
	})
}

// FuzzParseLocaliQ: no body panics the parser, and what parses is a lead of the body.
func FuzzParseLocaliQ(f *testing.F) {
	addTestdata(f, "localiq")
	f.Add([]byte(`{"lead":{"id":"12","created_at":"2026-01-01 00:00:00 -0500","read_at":1784023200}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseLocaliQ("TEST_1", LocaliQNewLead, body)
		if err != nil {
			if _, ok := ReasonOf(err); !ok {
				t.Fatalf("not a rejection: %v", err)
			}
			return
		}
		checkEvent(t, sources.LocaliQ, body, ev)
		if ev.Op != OpUpsert || ev.Account != "TEST_1" {
			t.Fatalf("event %+v", ev)
		}
	})
}

// FuzzVerifyLeadConnector: a delivery is accepted only with the exact bytes that were signed.
// signed is what the sender signed, sent what arrives; the Ed25519 header covers signed, and
// an RSA header covers a fixed template (RSA signing is too slow to do per input).
func FuzzVerifyLeadConnector(f *testing.F) {
	now := lcNow
	// A short template: the engine minimizes what it finds, and that costs a signature per
	// try, so long inputs stall it.
	tmpl := []byte(`{"type":"ContactCreate","locationId":"L","id":"C","timestamp":"` + now.Format(time.RFC3339) + `","webhookId":"w1"}`)
	f.Add(tmpl, tmpl, false)
	f.Add(tmpl, append(bytes.Clone(tmpl), ' '), false)
	f.Add(tmpl, tmpl, true)
	f.Add(tmpl, bytes.Replace(tmpl, []byte(`"C"`), []byte(`"D"`), 1), true)
	f.Add([]byte(`{}`), []byte(`{ }`), false)

	pub, priv, _ := GenerateSandboxKeyPair()
	pemPub, _ := MarshalPublicKey(pub)
	rsaPub, _ := MarshalPublicKey(&testRSAKey().PublicKey)
	v, err := NewLeadConnectorVerifier(LeadConnectorConfig{Ed25519Keys: []string{pemPub}, RSAKeys: []string{rsaPub},
		Now: func() time.Time { return now }, Replays: &memReplays{}})
	if err != nil {
		f.Fatal(err)
	}
	rsaSig, err := SignWH(testRSAKey(), tmpl)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, signed, sent []byte, useRSA bool) {
		h := http.Header{}
		if useRSA {
			signed = tmpl
			h.Set(HeaderWHSignature, rsaSig)
		} else {
			h.Set(HeaderGHLSignature, SignGHL(priv, signed))
		}
		sigErr := v.checkSignature(h, sent)
		if same := bytes.Equal(signed, sent); (sigErr == nil) != same {
			t.Fatalf("signature check %v for a body that is the signed one: %v", sigErr, same)
		}
		ev, err := v.Verify(context.Background(), h, sent)
		if err == nil {
			if !bytes.Equal(signed, sent) {
				t.Fatal("accepted a body the signature does not cover")
			}
			checkEvent(t, sources.LeadConnector, sent, ev)
			if d := ev.OccurredAt.Sub(now); d > DefaultMaxSkew || d < -DefaultMaxSkew || ev.WebhookID == "" {
				t.Fatalf("accepted a delivery out of the window or without an id: %+v", ev)
			}
		} else if _, ok := ReasonOf(err); !ok {
			t.Fatalf("not a rejection: %v", err)
		}
	})
}

// FuzzVerifyLACRM: only the exact signed bytes, under the same secret, verify.
func FuzzVerifyLACRM(f *testing.F) {
	body := readTestdata(f, "lacrm/contact_create.json")
	f.Add(body, body, "secret", "secret")
	f.Add(body, body, "secret", "Secret")
	f.Add(body, body[1:], "s", "s")
	f.Add([]byte{}, []byte{}, "", "")
	f.Fuzz(func(t *testing.T, signed, sent []byte, signKey, checkKey string) {
		// HMAC pads a short key with NULs, so "k" and "k\x00" are one key. A stored secret
		// has none: LACRMHandshake takes printable ASCII only.
		if strings.ContainsRune(signKey, 0) || strings.ContainsRune(checkKey, 0) {
			return
		}
		h := http.Header{HeaderHookSignature: {SignLACRM(signKey, signed)}}
		err := VerifyLACRM(h, sent, checkKey)
		ok := bytes.Equal(signed, sent) && signKey == checkKey && checkKey != ""
		if (err == nil) != ok {
			t.Fatalf("verify %v, want accepted %v", err, ok)
		}
		if err != nil {
			if _, isRejection := ReasonOf(err); !isRejection {
				t.Fatalf("not a rejection: %v", err)
			}
		}
	})
}

// FuzzVerifyLocaliQ: only the registered value is accepted.
func FuzzVerifyLocaliQ(f *testing.F) {
	f.Add("token jokin", "token jokin")
	f.Add("token jokin", "token jokin ")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, want, got string) {
		err := VerifyLocaliQ(http.Header{HeaderLocaliQAuthorization: {got}}, want)
		if (err == nil) != (want != "" && got == want) {
			t.Fatalf("verify %q against %q: %v", got, want, err)
		}
	})
}
