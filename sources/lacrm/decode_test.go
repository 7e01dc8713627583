package lacrm

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func decodePage(body []byte, decode recordDecoder) ([]sources.Lead, []sources.Rejected, bool, error) {
	l, err := decodeList(body)
	if err != nil {
		return nil, nil, false, err
	}
	leads, rejected, _ := decodeRecords("acct-1", l.recs, decode)
	return leads, rejected, l.more, nil
}

func TestDecodeGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		decode recordDecoder
		more   bool
	}{
		{"contacts", decodeContact, true},
		{"pipeline_items", decodePipelineItem, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			leads, rejected, more, err := decodePage(in, tc.decode)
			if err != nil || len(rejected) != 0 {
				t.Fatal(err, rejected)
			}
			if more != tc.more {
				t.Errorf("HasMoreResults = %v, want %v", more, tc.more)
			}
			got, err := json.MarshalIndent(leads, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("leads differ from %s (run with -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestBadRecordsAreQuarantinedAndThePageGoesOn(t *testing.T) {
	t.Parallel()
	good := `{"ContactId":"7","Name":{"FirstName":"Ann"},"LastUpdate":"2026-01-01T00:00:00Z"}`
	for _, tc := range []struct{ record, id, reason string }{
		{`{"IsCompany":false,"Name":{"FirstName":"No Id"}}`, "", "no ContactId"},
		{`{"ContactId":null,"Email":[{"Text":"a@b.c"}]}`, "", "no ContactId"},
		{`{"ContactId":"1","LastUpdate":"yesterday"}`, "1", "LastUpdate is not a date"},
		{`{"ContactId":{"x":1}}`, "", ""},
		{`{"ContactId":"1","Email":{"Text":"a@b.c"}}`, "1", ""},
		{`{"ContactId":"1","Name":"No Name 5551234"}`, "1", "field Name: unexpected JSON string"},
		{`"a@b.c"`, "", "not a JSON object"},
		{`[` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `]`, "", "nested deeper than 512"},
	} {
		body := `{"HasMoreResults":true,"Results":[` + good + `,` + tc.record + `,` + good + `]}`
		leads, rejected, more, err := decodePage([]byte(body), decodeContact)
		if err != nil {
			t.Errorf("%.60s: the page failed: %v", tc.record, err)
			continue
		}
		if len(leads) != 2 || !more || len(rejected) != 1 {
			t.Errorf("%.60s: %d leads, %d rejected, more %v; want 2, 1, true", tc.record, len(leads), len(rejected), more)
			continue
		}
		r := rejected[0]
		if r.ID != tc.id || (tc.reason != "" && r.Reason != tc.reason) || r.Reason == "" || string(r.Raw) != tc.record {
			t.Errorf("%.60s: rejected id %q reason %q, want %q %q, raw verbatim", tc.record, r.ID, r.Reason, tc.id, tc.reason)
		}
		for _, pii := range []string{"a@b.c", "No Id", "5551234", "yesterday"} {
			if strings.Contains(r.Reason, pii) || strings.Contains(r.String(), pii) {
				t.Errorf("reason %q leaks PII", r.Reason)
			}
		}
	}
}

func fuzzDecode(f *testing.F, decode recordDecoder, golden string) {
	if b, err := os.ReadFile(filepath.Join("testdata", golden)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"HasMoreResults":false,"Results":[]}`))
	f.Add([]byte(`{"Results":[null,{},[],{"ContactId":null},{"PipelineItemId":1}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		leads, rejected, _, err := decodePage(body, decode)
		if err != nil {
			return
		}
		for _, l := range leads {
			if l.ID == "" || !json.Valid(l.Raw) || l.Source != sources.LACRM {
				t.Fatalf("decoded a lead without id, source or valid Raw: %+v", l)
			}
			if !l.UpdatedAt.IsZero() && l.UpdatedAt.Location().String() != "UTC" {
				t.Fatalf("UpdatedAt not UTC: %v", l.UpdatedAt)
			}
		}
		for _, r := range rejected {
			if r.Reason == "" || len(r.Raw) == 0 || !bytes.Contains(body, r.Raw) {
				t.Fatalf("rejected record without reason or verbatim bytes: %v", r)
			}
		}
	})
}

func FuzzDecodeContacts(f *testing.F) { fuzzDecode(f, decodeContact, "contacts.json") }

func FuzzDecodePipelineItems(f *testing.F) {
	fuzzDecode(f, decodePipelineItem, "pipeline_items.json")
}
