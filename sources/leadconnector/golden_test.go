package leadconnector

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

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGoldenContacts maps real-shaped search pages (testdata/contacts) to leads and compares
// them with testdata/golden. Run with -update to rewrite the golden files after a deliberate
// mapping change, and review the diff.
func TestGoldenContacts(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "contacts", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			acct := sources.Account{Source: sources.LeadConnector, ID: "C2QujeCh8ZnC7al2InWR", HIPAAProtected: name == "legacy"}
			page, err := decodeSearchPage(body, acct)
			if err != nil || len(page.rejected) != 0 {
				t.Fatal(err, page.rejected)
			}
			leads, after := page.leads, page.last
			// Raw is each contact's JSON exactly as the vendor sent it.
			var vendor struct{ Contacts []json.RawMessage }
			_ = json.Unmarshal(body, &vendor)
			for i, l := range leads {
				if !bytes.Equal(l.Raw, vendor.Contacts[i]) {
					t.Fatalf("lead %d: Raw is not the vendor JSON verbatim", i)
				}
			}
			got, err := json.MarshalIndent(struct {
				Leads []sources.Lead    `json:"leads"`
				After []json.RawMessage `json:"after"`
			}{leads, after}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", name+".golden.json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from %s (run with -update after checking the change):\n%s", name, golden, got)
			}
		})
	}
}
