package httpx

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sunday, 01-Mar-26 12:00:05 GMT", 5 * time.Second, true}, // RFC 850, still legal
		{"Sun Mar  1 12:00:02 2026", 2 * time.Second, true},       // asctime
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, true},                // in the past: go now
		{"99999999999999999999", maxRetryAfter, true},
		{"", 0, false},
		{"-5", 0, false},
		{"soon", 0, false},
		{"1e9", 0, false},
		{"NaN", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDefaultMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"leadconnector", `{"statusCode":401,"message":"Invalid JWT","error":"Unauthorized"}`, "Unauthorized: Invalid JWT"},
		{"leadconnector-422", `{"statusCode":422,"message":["locationId must be a string","pageLimit must not be greater than 500"],"error":"Unprocessable Entity"}`,
			"Unprocessable Entity: locationId must be a string; pageLimit must not be greater than 500"},
		{"aip", `{"error":{"code":"PERMISSION_DENIED","message":"no access to location","details":[]}}`, "PERMISSION_DENIED: no access to location"},
		{"aip-numeric-code", `{"error":{"code":403,"message":"no access"}}`, "no access"},
		{"localiq", `{"name":"not_authorized","message":"You are not permitted to perform this action."}`, "not_authorized: You are not permitted to perform this action."},
		{"oauth", `{"error":"invalid_grant","error_description":"refresh token is invalid"}`, "invalid_grant: refresh token is invalid"},
		{"lacrm", `{"ErrorCode":"Unauthorized","ErrorDescription":"Invalid credentials"}`, "Unauthorized: Invalid credentials"},
		{"only-code", `{"error":"invalid_grant"}`, "invalid_grant"},
		{"unknown-json", `{"contact":{"email":"a@b.co"}}`, ""},
		{"array", `[1,2]`, ""},
		{"html", "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>", "502 Bad Gateway nginx"},
		{"broken-json", `{"message":"trunc`, `{"message":"trunc`},
		{"empty", "  ", ""},
	} {
		if got := DefaultMessage([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: DefaultMessage = %q, want %q", tc.name, got, tc.want)
		}
	}
	long := DefaultMessage([]byte(strings.Repeat("é", 500)))
	if len(long) > maxText || !utf8.ValidString(long) {
		t.Errorf("text fallback: %d bytes, valid UTF-8 %v", len(long), utf8.ValidString(long))
	}
}

func TestCleanCapsAndScrubs(t *testing.T) {
	t.Parallel()
	m := clean("token abcdef-secret for bob@example.com\x07 "+strings.Repeat("x", 400), []string{"abcdef-secret"})
	if strings.Contains(m, "abcdef") || strings.Contains(m, "bob@") || strings.ContainsRune(m, '\x07') {
		t.Fatalf("not scrubbed: %q", m)
	}
	if n := utf8.RuneCountInString(m); n != maxMessage {
		t.Fatalf("message has %d runes, want %d", n, maxMessage)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "1.5", "Sun, 01 Mar 2026 12:00:30 GMT", "-1", "1e400", "9223372036854775807"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if d < 0 || d > maxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}

func FuzzMessage(f *testing.F) {
	for _, s := range []string{`{"message":"x","error":"y"}`, `{"error":{"code":"c","message":"m"}}`, "<b>hi</b>", `{"message":["a",1]}`, "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m := clean(DefaultMessage([]byte(body)), []string{"secret-token"})
		if !utf8.ValidString(m) || utf8.RuneCountInString(m) > maxMessage || strings.Contains(m, "secret-token") {
			t.Fatalf("message %q from body %q", m, body)
		}
	})
}
