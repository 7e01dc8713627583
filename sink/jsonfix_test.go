package sink

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/leadsync/leadsync/internal/pgtest"
)

func TestRepairJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"a":[1,-2.5e3,true,false,null,"x\"\\\/\b\f\n\r\t"]}`, ""},
		{` [ {} , [] , {"k" : "v"} ] `, ""},
		{`"\ud83d\ude00 \u00e9 é"`, ""},
		{`"a\ud800b"`, `"a\uFFFDb"`},
		{`"\udc00"`, `"\uFFFD"`},
		{`"\ud800\u0041"`, `"\uFFFD\u0041"`},
		{`"\ud800\ud800\udc00"`, `"\uFFFD\ud800\udc00"`},
		{`"\ud800"`, `"\uFFFD"`},
		{`{"\ud800":1}`, `{"\uFFFD":1}`},
		{`"a\u0000b"`, `"a\uFFFDb"`},
		{`"a\\u0000b"`, ""}, // an escaped backslash, then text
		{"\"a\xffb\"", "\"a\uFFFDb\""},
		{"\"a\xff\xfe\xfdb\"", "\"a\uFFFDb\""},
		{"\"\xed\xa0\x80\"", "\"\uFFFD\""}, // a surrogate encoded in UTF-8
		{`[1e999999]`, `["1e999999"]`},
		{`[-1e131072, 1e131071, 9.9e131071]`, `["-1e131072", 1e131071, 9.9e131071]`},
		{`[1000e131068, 1000e131069]`, `[1000e131068, "1000e131069"]`},
		{`[1e-16383, 1e-16384, 1.5e-16383, 0.1e-16382]`, `[1e-16383, "1e-16384", "1.5e-16383", 0.1e-16382]`},
		{`[0e999999, 0e-16384, 0E+1073741823]`, `[0e999999, "0e-16384", "0E+1073741823"]`},
		{`[0.00001e131076, 0.00001e131077]`, `[0.00001e131076, "0.00001e131077"]`},
		{`{"n":1E+0000000000000005}`, ""},
	} {
		got, err := repairJSON([]byte(tc.in))
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if err != nil || string(got) != want {
			t.Errorf("repairJSON(%q) = %q, %v; want %q", tc.in, got, err, want)
		}
	}
	in := []byte(`{"valid":"json","n":[1,2,3]}`)
	if got, _ := repairJSON(in); &got[0] != &in[0] {
		t.Error("valid JSON was copied: the fast path must return its input")
	}
	for _, bad := range []string{``, ` `, `{`, `[1,]`, `{"a"}`, `{"a":1,}`, `{1:2}`, `"abc`, `"\x"`, `"\u12"`,
		`"\u12g4"`, "\"a\x01\"", `01`, `1.`, `.5`, `1e`, `-`, `+1`, `tru`, `nul`, `[1] 2`, `[1]]`, `{"a":1]`, "\xff",
		`NaN`, `[1e5`, strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)} {
		if got, err := repairJSON([]byte(bad)); err == nil {
			t.Errorf("repairJSON(%q) = %q, want an error", bad, got)
		} else if strings.Contains(err.Error(), bad) && len(bad) > 3 {
			t.Errorf("the error %q quotes its input", err)
		}
	}
	deep := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	if _, err := repairJSON([]byte(deep)); err != nil {
		t.Errorf("JSON nested %d deep: %v", maxJSONDepth, err)
	}
}

// FuzzRepairJSON: repairJSON accepts exactly what encoding/json calls valid, and returns
// valid UTF-8 JSON, unchanged when nothing needed repair.
func FuzzRepairJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x"]}`, `"\ud800"`, `1e999999`, "\"\xff\"", `"\u0000"`, `[{"k":null}]`, `{"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := repairJSON(in)
		if valid := json.Valid(in); (err == nil) != valid {
			t.Fatalf("repairJSON(%q): %v, but json.Valid = %v", in, err, valid)
		}
		if err != nil {
			return
		}
		if !json.Valid(got) || !utf8.Valid(got) {
			t.Fatalf("repairJSON(%q) = %q: not valid UTF-8 JSON", in, got)
		}
		if again, _ := repairJSON(got); !bytes.Equal(again, got) {
			t.Fatalf("repairJSON is not idempotent on %q: %q then %q", in, got, again)
		}
	})
}

// TestRepairJSONMatchesPostgres: what repairJSON leaves alone, jsonb takes; what it repairs,
// jsonb refused and now takes.
func TestRepairJSONMatchesPostgres(t *testing.T) {
	t.Parallel()
	dsn, _ := pgtest.Schema(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	accepts := func(s string) bool {
		var ok bool
		err := conn.QueryRow(t.Context(), `SELECT $1::text::jsonb IS NOT NULL`, s).Scan(&ok)
		return err == nil && ok
	}
	for _, in := range []string{
		`[1e131071]`, `[1e131072]`, `[1000e131068]`, `[1000e131069]`, `[1e-16383]`, `[1e-16384]`,
		`[1.5e-16383]`, `[0.1e-16382]`, `[0e999999]`, `[0e-16384]`, `[0E+1073741822]`, `[0E+1073741823]`,
		`[0.00001e131076]`, `[0.00001e131077]`, `[-0.0e-16383]`, `[1.000000e-16377]`, `[1.000000e-16378]`,
		`"\ud800"`, `"\udbff\udfff"`, `"\udc00\ud800"`, `"x\u0000"`, `"\u0001"`, `{"a":"\ud800\ud800"}`,
		strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	} {
		got, err := repairJSON([]byte(in))
		if err != nil {
			t.Errorf("repairJSON(%.40q): %v", in, err)
			continue
		}
		if untouched := string(got) == in; untouched != accepts(in) {
			t.Errorf("%.40q: left untouched = %v, but jsonb accepts it = %v", in, untouched, !untouched)
		}
		if !accepts(string(got)) {
			t.Errorf("jsonb refuses the repaired %.40q", got)
		}
	}
}

// BenchmarkRaw compares the raw JSON check of every stored lead with the UTF-8 scan it
// replaced (sub-benchmark "utf8-only").
func BenchmarkRaw(b *testing.B) {
	raw := benchLead("USA_1", "l1").Raw
	b.Run("repairJSON", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := repairJSON(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("utf8-only", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if s := string(raw); !utf8.ValidString(s) || strings.Contains(s, `\u0000`) {
				b.Fatal("invalid")
			}
		}
	})
}
