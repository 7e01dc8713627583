package leadconnector

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

// FuzzDecodeSearchPage: whatever the vendor sends, decoding never panics, and a page that
// decodes gives leads with ids, verbatim JSON and a usable searchAfter, and quarantines the
// rest verbatim.
func FuzzDecodeSearchPage(f *testing.F) {
	f.Add([]byte(`{"contacts":[{"id":"a","dateUpdated":"2026-01-01T00:00:00.000Z","searchAfter":[1767225600000,"a"]}],"total":1}`))
	f.Add([]byte(`{"contacts":[{"id":null},{"id":"b","tags":{}},[[[]]],{"id":"c","dateUpdated":"x"}]}`))
	acct := sources.Account{Source: sources.LeadConnector, ID: "LOC"}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeSearchPage(body, acct)
		if err != nil {
			return
		}
		leads, after := page.leads, page.last
		if len(leads)+len(page.rejected) != page.n || len(page.keys) != page.n {
			t.Fatalf("%d leads + %d rejected of %d contacts, %d keys", len(leads), len(page.rejected), page.n, len(page.keys))
		}
		for _, r := range page.rejected {
			if r.Reason == "" || !bytes.Contains(body, r.Raw) {
				t.Fatalf("rejected %v", r)
			}
		}
		for _, l := range leads {
			if l.ID == "" || !json.Valid(l.Raw) || l.AccountID != "LOC" || l.Tags == nil {
				t.Fatalf("bad lead %+v", l)
			}
		}
		if len(leads) > 0 {
			if len(after) != 2 {
				t.Fatalf("searchAfter %v", after)
			}
			if _, _, err := parseCursor(encodeCursor(leads[0].UpdatedAt, after)); err != nil && leads[0].UpdatedAt.Year() >= 0 && leads[0].UpdatedAt.Year() < 10000 {
				t.Fatalf("cursor from a decoded page does not parse back: %v", err)
			}
		}
	})
}

// FuzzDecodeInstalled: installed-locations pages of either version never panic the decoder.
func FuzzDecodeInstalled(f *testing.F) {
	f.Add([]byte(`{"items":[{"_id":"L","name":"n"}],"pagination":{"hasNextPage":false}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeInstalled(body, "C")
		if err != nil {
			return
		}
		for _, a := range res.accts {
			if a.ID == "" || a.Source != sources.LeadConnector {
				t.Fatalf("bad account %+v", a)
			}
		}
		if res.n < len(res.accts) {
			t.Fatalf("n %d < %d accounts", res.n, len(res.accts))
		}
	})
}
