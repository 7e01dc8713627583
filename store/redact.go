package store

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// Redacted is what every token value prints as.
const Redacted = "[REDACTED]"

// Secret is a token value that never prints: String, every fmt verb, GoString, slog and
// JSON all show [REDACTED]. Reveal returns the value.
type Secret string

// Reveal returns the secret itself, for the HTTP header that needs it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string                { return s.mask() }
func (s Secret) GoString() string              { return `"` + s.mask() + `"` }
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.mask()) }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(s.mask()) }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(s.mask()), nil }
func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// sanitize makes a vendor error message safe for logs and error strings: the given secrets
// and anything shaped like a bearer token or a token-ish JSON/form field are masked, and the
// message is cut to a readable length.
func sanitize(msg string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, Redacted)
		}
	}
	msg = tokenField.ReplaceAllString(msg, "${1}"+Redacted)
	msg = bearer.ReplaceAllString(msg, "${1}"+Redacted)
	msg = strings.Join(strings.Fields(msg), " ")
	const maxLen = 300
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	return msg
}

var (
	// "access_token":"...", refreshToken=..., id_token: '...'
	tokenField = regexp.MustCompile(`(?i)((?:access|refresh|id)_?token"?\s*[:=]\s*"?)[^"&,\s}]+`)
	bearer     = regexp.MustCompile(`(?i)(bearer\s+)[^\s"]+`)
)
