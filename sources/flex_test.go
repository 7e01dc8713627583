package sources

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFlexString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`"a b "`, "a b "},
		{`3310341901667027070362800922396`, "3310341901667027070362800922396"}, // a LACRM id, verbatim
		{`-1.50e3`, "-1.50e3"},
		{`true`, "true"},
		{`null`, ""},
		{`"\u00e9"`, "é"},
	} {
		var f FlexString
		if err := json.Unmarshal([]byte(tc.in), &f); err != nil || string(f) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.in, f, err, tc.want)
		}
	}
	for _, in := range []string{`{"email":"pii@example.com"}`, `["x"]`} {
		var f FlexString
		err := json.Unmarshal([]byte(in), &f)
		if err == nil || strings.Contains(err.Error(), "pii@") || strings.Contains(err.Error(), `"x"`) {
			t.Errorf("%s: got %v, want an error that quotes nothing", in, err)
		}
	}
}
