package sink

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

// Vendors send invalid UTF-8 and NULs now and then; PostgreSQL refuses both in text and
// jsonb. One such lead must not block its account: it is stored with U+FFFD in their place.
func TestInvalidUTF8AndNULAreStored(t *testing.T) {
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		run := b.run(t)
		l := testLead("acct", "bad-1")
		l.FirstName = "Ad\xffa\x00"
		l.Email = "bad\xfe@example.com"
		l.Tags = []string{"ok", "t\xc3"}
		l.Raw = json.RawMessage("{\"name\":\"Ad\xffa\",\"note\":\"a\\u0000b\"}")
		res := b.write(t, PageWrite{Run: run, Account: "acct", Leads: []sources.Lead{l}, Next: "c1"})
		if res.Inserted != 1 {
			t.Fatalf("inserted %d", res.Inserted)
		}
		got := b.leads(t, "acct")["bad-1"]
		if !strings.Contains(got.Email.String, "\uFFFD") || !strings.Contains(got.Raw.String, "\uFFFD") {
			t.Fatalf("stored %q / %q", got.Email.String, got.Raw.String)
		}
		if b.cursor(t, "acct") != "c1" {
			t.Fatal("cursor did not advance with the page")
		}
	})
}
