package sources_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func TestSplitRecordsQuarantinesOnlyTheDeepRecord(t *testing.T) {
	t.Parallel()
	// Valid JSON that encoding/json refuses as a whole: one record nests 20,000 deep.
	body := []byte(`{"HasMoreResults":true,"Results":[{"id":"1"},` + deep(20000) + `,{"id":"3","n":` + deep(MaxOK) + `}]}`)
	var v any
	var se *json.SyntaxError
	if err := json.Unmarshal(body, &v); !errors.As(err, &se) {
		t.Fatalf("encoding/json took the page (%v): the test no longer shows the problem", err)
	}
	env, recs, found, err := sources.SplitRecords(body, "results")
	if err != nil || !found {
		t.Fatalf("SplitRecords: found %v, %v", found, err)
	}
	var e struct {
		HasMoreResults bool
		Results        []json.RawMessage
	}
	if err := json.Unmarshal(env, &e); err != nil || !e.HasMoreResults || e.Results != nil {
		t.Fatalf("envelope %s: %+v, %v", env, e, err)
	}
	if len(recs) != 3 || recs[0].TooDeep() || !recs[1].TooDeep() || recs[2].TooDeep() ||
		recs[1].Depth != 20000 || recs[2].Depth != MaxOK+1 || string(recs[0].Raw) != `{"id":"1"}` {
		t.Fatalf("records: %d, depths %d %d %d", len(recs), recs[0].Depth, recs[1].Depth, recs[2].Depth)
	}
	r := recs[1].Reject("", sources.TooDeepReason)
	if !bytes.Equal(r.Raw, []byte(deep(20000))) || r.Reason != "nested deeper than 512" {
		t.Fatalf("rejected %v", r)
	}
}

// MaxOK is the deepest a record's field may nest and the record still be decoded.
const MaxOK = sources.MaxRecordDepth - 1

func TestSplitRecordsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, key string
		syntax    bool // a *json.SyntaxError: retried as a truncated page
	}{
		{`{"Results":[{"id":1},{"id":2`, "Results", true},
		{`{"Results":[{"id":1}]`, "Results", true},
		{`{"Results":[{"id":1},,]}`, "Results", true},
		{`{"Results":[1]} x`, "Results", true},
		{`[` + deep(30000)[:30001], "", true},
		{`{"Results":[tru]}`, "Results", true},
		{`{"Results":[01]}`, "Results", true},
		{`{"Results":["\x01"]}`, "Results", true},
		{`{"Results":{"id":1}}`, "Results", false},
		{`[1,2]`, "Results", false},
		{`{"a":1}`, "", false},
	} {
		_, _, _, err := sources.SplitRecords([]byte(tc.body), tc.key)
		var se *json.SyntaxError
		if err == nil || errors.As(err, &se) != tc.syntax {
			t.Errorf("%.40s: %v, want syntax error %v", tc.body, err, tc.syntax)
		}
	}
	// Found tells a missing member from an empty one; the last duplicate wins.
	_, recs, found, err := sources.SplitRecords([]byte(`{"x":[1]}`), "items")
	if err != nil || found || recs != nil {
		t.Fatalf("missing member: %v %v %v", recs, found, err)
	}
	_, recs, _, err = sources.SplitRecords([]byte(`{"items":[1,2],"Items":[3]}`), "items")
	if err != nil || len(recs) != 1 || string(recs[0].Raw) != "3" {
		t.Fatalf("duplicate member: %v %v", recs, err)
	}
}

func TestDecodeReasonHasNoValues(t *testing.T) {
	t.Parallel()
	var v struct {
		Phone int `json:"phone"`
	}
	err := json.Unmarshal([]byte(`{"phone":5551234567.5}`), &v)
	if r := sources.DecodeReason(err); strings.Contains(r, "555") || !strings.Contains(r, "phone") {
		t.Fatalf("reason %q", r)
	}
}

// FuzzSplitRecords: the scanner agrees with encoding/json on every page encoding/json can
// read, and never panics on any other.
func FuzzSplitRecords(f *testing.F) {
	for _, s := range []string{`{"items":[{"a":[1,{"b":"\u00e9"}]},2,"x",null,true,-1.5e3]}`, `[]`, `{"items":null}`,
		`{"ITEMS":[1],"next":"t"}`, "{ \"items\" :\n [ 1 , { } ] , \"n\" : [ ] }", `{"items":[` + deep(600) + `]}`, `{"items":[1,2`, `[{"k":"\"]"}]`} {
		f.Add([]byte(s), s[0] == '[')
	}
	f.Fuzz(func(t *testing.T, body []byte, bare bool) {
		key := "items"
		if bare {
			key = ""
		}
		env, recs, found, err := sources.SplitRecords(body, key)
		var se *json.SyntaxError
		valid := json.Valid(body)
		if valid && errors.As(err, &se) {
			t.Fatalf("valid JSON called malformed: %v", err)
		}
		if err != nil {
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if b := bytes.TrimSpace(body); !bare && len(b) > 0 && b[0] == '{' && json.Unmarshal(body, &page) == nil {
				t.Fatalf("encoding/json reads the page, SplitRecords fails: %v", err)
			}
			return
		}
		var want []json.RawMessage
		if bare {
			if json.Unmarshal(body, &want) != nil {
				return // deeper than encoding/json reads
			}
		} else {
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if json.Unmarshal(body, &page) != nil {
				return
			}
			want = page.Items
			var e map[string]any
			if err := json.Unmarshal(env, &e); err != nil {
				t.Fatalf("envelope does not decode: %v", err)
			}
		}
		if !valid || len(recs) != len(want) || (found && !bare && want == nil && len(recs) != 0) {
			t.Fatalf("%d records, encoding/json %d (valid %v)", len(recs), len(want), valid)
		}
		for i, r := range recs {
			if !bytes.Equal(r.Raw, bytes.TrimSpace(want[i])) {
				t.Fatalf("record %d: %q, encoding/json %q", i, r.Raw, want[i])
			}
		}
	})
}
