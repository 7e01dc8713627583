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

var testAcct = sources.Account{Source: sources.LACRM, ID: "acct-1"}

func decodePage(body []byte, decode recordDecoder) ([]row, []sources.Rejected, bool, error) {
	l, err := decodeList(body)
	if err != nil {
		return nil, nil, false, err
	}
	rows, rejected, _ := decodeRecords(l.recs, decode)
	return rows, rejected, l.more, nil
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares v, as indented JSON, with testdata/name.golden.json (-update rewrites it).
func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("differs from %s (run with -update to accept):\n%s", path, got)
	}
}

// testPipelines are the pipelines of testdata/pipelines.json, the first with the custom
// fields of testdata/custom_fields.json.
func testPipelines(t testing.TB) map[string]pipelineInfo {
	t.Helper()
	list, err := decodePipelines(readTestdata(t, "pipelines.json"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := decodeList(readTestdata(t, "custom_fields.json"))
	if err != nil {
		t.Fatal(err)
	}
	fields, _, _ := decodeFields(page.recs)
	out := map[string]pipelineInfo{}
	for i, p := range list.pipelines {
		info := pipelineInfo{pipeline: p}
		if i == 0 {
			info.fields = fields
		}
		out[p.ID] = info
	}
	return out
}

// testItemDecoder decodes each item with the pipeline it names, as the listing of that
// pipeline would.
func testItemDecoder(t testing.TB) recordDecoder {
	pipelines := testPipelines(t)
	return func(raw []byte) (row, bool, error) {
		var it struct {
			PipelineID flexString `json:"PipelineId"`
		}
		_ = json.Unmarshal(raw, &it)
		return itemDecoder(testAcct, pipelines[string(it.PipelineID)])(raw)
	}
}

func TestDecodeGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		decode recordDecoder
		more   bool
	}{
		{"contacts", contactDecoder(testAcct.ID), true},
		{"pipeline_items", testItemDecoder(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rows, rejected, more, err := decodePage(readTestdata(t, tc.name+".json"), tc.decode)
			if err != nil || len(rejected) != 0 {
				t.Fatal(err, rejected)
			}
			if more != tc.more {
				t.Errorf("HasMoreResults = %v, want %v", more, tc.more)
			}
			var out []any
			for _, r := range rows {
				if r.lead != nil {
					out = append(out, r.lead)
				} else {
					out = append(out, r.deal)
				}
			}
			golden(t, tc.name, out)
		})
	}
}

// TestDecodeDictionaryGolden: GetPipelines and GetCustomFields answers as dictionary
// entries; what is no pipeline or field is rejected, the rest kept.
func TestDecodeDictionaryGolden(t *testing.T) {
	t.Parallel()
	t.Run("pipelines", func(t *testing.T) {
		t.Parallel()
		list, err := decodePipelines(readTestdata(t, "pipelines.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(list.rejected) != 1 || list.rejected[0].Reason != "no PipelineId" || list.skippedStatuses != 1 {
			t.Errorf("rejected %v, skipped %d statuses; want the pipeline and the status without an id", list.rejected, list.skippedStatuses)
		}
		golden(t, "pipelines", pipelineEntries(list.pipelines))
	})
	t.Run("custom_fields", func(t *testing.T) {
		t.Parallel()
		page, err := decodeList(readTestdata(t, "custom_fields.json"))
		if err != nil {
			t.Fatal(err)
		}
		fields, rejected, keys := decodeFields(page.recs)
		if len(rejected) != 1 || rejected[0].Reason != "no FieldId" || len(keys) != len(page.recs) {
			t.Errorf("rejected %v, %d keys for %d records", rejected, len(keys), len(page.recs))
		}
		var entries []sources.DictEntry
		for i, f := range fields {
			entries = append(entries, fieldEntry(f, fieldPipeline, "5512093847561029384756102900001", i))
		}
		golden(t, "custom_fields", entries)
	})
	// Either answer as a bare list or under Results; neither is an error, never "none".
	for _, body := range []string{`{"Results":[]}`, `[]`} {
		if list, err := decodePipelines([]byte(body)); err != nil || len(list.pipelines) != 0 {
			t.Errorf("GetPipelines %s: %v %v", body, list, err)
		}
	}
	for _, body := range []string{`{}`, `{"Pipelines":[]}`, `{"Results":{}}`, `"no"`, `[{"PipelineId":"1"`} {
		if _, err := decodePipelines([]byte(body)); err == nil {
			t.Errorf("GetPipelines %s: no error; it would delete every pipeline", body)
		}
	}
}

func TestStatusCategory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		active bool
		want   string
	}{
		{"Won", true, sources.StatusOpen}, // an active status is open, whatever its name
		{"New", true, sources.StatusOpen},
		{"Won", false, sources.StatusWon},
		{"Closed Won", false, sources.StatusWon},
		{"closed-won", false, sources.StatusWon},
		{"WON!", false, sources.StatusWon},
		{"Sold", false, sources.StatusWon},
		{"Contract signed", false, sources.StatusWon},
		{"Converted to client", false, sources.StatusWon},
		{"Booked", false, sources.StatusWon},
		{"Win", false, sources.StatusWon},
		{"Lost", false, sources.StatusLost},
		{"Closed Lost", false, sources.StatusLost},
		{"Closed", false, sources.StatusLost},
		{"Not sold", false, sources.StatusLost},
		{"Won't buy", false, sources.StatusLost},
		{"Won’t buy", false, sources.StatusLost},
		{"Didn't sign", false, sources.StatusLost},
		{"No win", false, sources.StatusLost},
		{"Lost (won by a competitor)", false, sources.StatusLost},
		{"Unsigned", false, sources.StatusLost},
		{"Wonderful", false, sources.StatusLost}, // words, not substrings
		{"", false, sources.StatusLost},
	} {
		if got := statusCategory(tc.name, tc.active); got != tc.want {
			t.Errorf("statusCategory(%q, active %v) = %s, want %s", tc.name, tc.active, got, tc.want)
		}
	}
}

func TestItemValueAndCustomValues(t *testing.T) {
	t.Parallel()
	fields := []fieldDef{{ID: "f1", Name: "Notes", Type: "TextArea"}, {ID: "f2", Name: "Deal Size", Type: "Currency"},
		{ID: "f3", Name: "Estimated Value", Type: "Number"}, {ID: "f4", Name: "Signed", Type: "Checkbox"}}
	for _, tc := range []struct {
		item   string
		fields []fieldDef
		value  float64
		custom string
	}{
		// The Currency field wins over Estimated Value.
		{`{"Deal Size":1200,"Estimated Value":900,"Notes":"call back","Signed":false}`, fields, 1200,
			`{"f1":"call back","f2":1200,"f3":900,"f4":false}`},
		// A Currency field that holds no number gives way to Estimated Value.
		{`{"Deal Size":"ask","Estimated Value":"900.5"}`, fields, 900.5, `{"f2":"ask","f3":"900.5"}`},
		// Without field definitions: Estimated Value still, and no custom values.
		{`{"Estimated Value":300,"Deal Size":1200}`, nil, 300, `null`},
		{`{"Estimated Value":"NaN"}`, nil, 0, `null`},
		{`{"Estimated Value":true}`, nil, 0, `null`},
		{`{"Estimated Value":"1e999"}`, nil, 0, `null`},
		// Null and "" are no value; keys that name no field are not custom values.
		{`{"Notes":"","Deal Size":null,"Other":"x"}`, fields, 0, `null`},
	} {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.item), &keys); err != nil {
			t.Fatal(err)
		}
		custom, _ := json.Marshal(customValues(keys, tc.fields))
		if v := itemValue(keys, tc.fields); v != tc.value || string(custom) != tc.custom {
			t.Errorf("%s: value %v, custom %s; want %v, %s", tc.item, v, custom, tc.value, tc.custom)
		}
	}
}

func TestLeadSourceIsTheChannel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ field, want string }{
		{`"Lead Source":"Google Ads"`, "Google Ads"},
		{`"lead source":" Referral "`, "Referral"},
		{`"Lead Source":["", "Facebook Ads", "Direct"]`, "Facebook Ads"},
		{`"Lead Source":{"OptionId":"4","Name":"Yelp"}`, "Yelp"},
		{`"Lead Source":7`, "7"},
		{`"Lead Source":null`, ""},
		{`"Lead Source":true`, ""},
		{`"Lead Source":{"Name":{"x":1}}`, ""},
		{`"Source":"Google Ads"`, ""},
	} {
		raw := `{"ContactId":"7","Name":{"FirstName":"Ann"},` + tc.field + `}`
		l, keep, err := decodeContact("acct-1", []byte(raw))
		if err != nil || !keep || l.Channel != tc.want {
			t.Errorf("%s: channel %q (%v), want %q", tc.field, l.Channel, err, tc.want)
		}
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
		leads, rejected, more, err := decodePage([]byte(body), contactDecoder("acct-1"))
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

func fuzzDecode(f *testing.F, decode func(testing.TB) recordDecoder, golden string) {
	if b, err := os.ReadFile(filepath.Join("testdata", golden)); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"HasMoreResults":false,"Results":[]}`))
	f.Add([]byte(`{"Results":[null,{},[],{"ContactId":null},{"PipelineItemId":1}]}`))
	one := decode(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rows, rejected, _, err := decodePage(body, one)
		if err != nil {
			return
		}
		for _, r := range rows {
			switch {
			case r.lead != nil:
				l := r.lead
				if l.ID == "" || !json.Valid(l.Raw) || l.Source != sources.LACRM {
					t.Fatalf("decoded a lead without id, source or valid Raw: %+v", l)
				}
			case r.deal != nil:
				d := r.deal
				if d.ID == "" || !json.Valid(d.Raw) || !validCategory(d.StatusCategory) {
					t.Fatalf("decoded a deal without id, valid Raw or status category: %+v", d)
				}
				for k, v := range d.CustomValues {
					if !json.Valid(v) {
						t.Fatalf("custom value %s is not JSON", k)
					}
				}
			default:
				t.Fatal("a row with neither lead nor deal")
			}
			if !r.updated.IsZero() && r.updated.Location().String() != "UTC" {
				t.Fatalf("updated time not UTC: %v", r.updated)
			}
		}
		for _, r := range rejected {
			if r.Reason == "" || len(r.Raw) == 0 || !bytes.Contains(body, r.Raw) {
				t.Fatalf("rejected record without reason or verbatim bytes: %v", r)
			}
		}
	})
}

func validCategory(c string) bool {
	return c == sources.StatusOpen || c == sources.StatusWon || c == sources.StatusLost
}

func FuzzDecodeContacts(f *testing.F) {
	fuzzDecode(f, func(testing.TB) recordDecoder { return contactDecoder("acct-1") }, "contacts.json")
}

func FuzzDecodePipelineItems(f *testing.F) {
	fuzzDecode(f, testItemDecoder, "pipeline_items.json")
}
