package lacrm

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func decodeList(body []byte, decode func(string, []json.RawMessage) ([]sources.Lead, error)) ([]sources.Lead, bool, error) {
	var l listJSON
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, false, err
	}
	leads, err := decode("acct-1", l.Results)
	return leads, l.HasMoreResults, err
}

func TestDecodeGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		decode func(string, []json.RawMessage) ([]sources.Lead, error)
		more   bool
	}{
		{"contacts", decodeContacts, true},
		{"pipeline_items", decodePipelineItems, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			leads, more, err := decodeList(in, tc.decode)
			if err != nil {
				t.Fatal(err)
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

func TestDecodeRejectsBadRecordsClearly(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"Results":[{"IsCompany":false,"Name":{"FirstName":"No Id"}}]}`,
		`{"Results":[{"ContactId":"1","LastUpdate":"yesterday"}]}`,
		`{"Results":[{"ContactId":{"x":1}}]}`,
		`{"Results":[{"ContactId":"1","Email":{"Text":"a@b.c"}}]}`,
	} {
		_, _, err := decodeList([]byte(body), decodeContacts)
		if err == nil {
			t.Errorf("%s: decoded without error", body)
			continue
		}
		if bytes.Contains([]byte(err.Error()), []byte("a@b.c")) || bytes.Contains([]byte(err.Error()), []byte("No Id")) {
			t.Errorf("error leaks PII: %v", err)
		}
	}
}

func fuzzDecode(f *testing.F, decode func(string, []json.RawMessage) ([]sources.Lead, error), golden string) {
	if b, err := os.ReadFile(filepath.Join("testdata", golden)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"HasMoreResults":false,"Results":[]}`))
	f.Add([]byte(`{"Results":[null,{},[]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		leads, _, err := decodeList(body, decode)
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
	})
}

func FuzzDecodeContacts(f *testing.F) { fuzzDecode(f, decodeContacts, "contacts.json") }

func FuzzDecodePipelineItems(f *testing.F) {
	fuzzDecode(f, decodePipelineItems, "pipeline_items.json")
}
