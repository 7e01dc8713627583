package httpx

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Error is every failure of Do and JSON: vendor, endpoint, status (0 when no HTTP answer:
// network, context, token), the vendor's message, attempts, and the cause. Its text never
// holds a token, a query string or a body beyond the extracted, truncated message, e.g.
//
//	localiq: GET crm/contact_interactions: 403 not_authorized: You are not permitted to perform this action. (1 attempt)
type Error struct {
	Vendor, Endpoint, Method string
	Status                   int
	Message                  string
	Attempts                 int
	Err                      error // cause (network, context, token or decode error), for errors.Is/As

	network bool // the last attempt failed on the network (Status is 0)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(cmp.Or(e.Vendor, "http"))
	b.WriteString(": ")
	b.WriteString(cmp.Or(e.Method, http.MethodGet))
	b.WriteString(" ")
	b.WriteString(e.Endpoint)
	b.WriteString(": ")
	if e.Status != 0 {
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteString(" ")
		b.WriteString(cmp.Or(e.Message, http.StatusText(e.Status)))
	} else {
		b.WriteString(e.Message)
		if e.Err != nil {
			if e.Message != "" {
				b.WriteString(": ")
			}
			b.WriteString(e.Err.Error())
		}
	}
	switch e.Attempts {
	case 0:
	case 1:
		b.WriteString(" (1 attempt)")
	default:
		b.WriteString(" (" + strconv.Itoa(e.Attempts) + " attempts)")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports a failure that a later run may not see: 429, 5xx, 408, or a network error.
func (e *Error) Temporary() bool {
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout, e.Status >= 500:
		return true
	case e.Status == 0:
		return e.network
	}
	return false
}

// StatusOf returns the status of the *Error in err's chain, 0 if none.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

const (
	maxMessage = 300 // runes of a vendor message kept in an Error
	maxText    = 200 // bytes of a non-JSON body taken as its message
)

// DefaultMessage extracts a vendor's error message from an error body: "code: message" from
// the keys the three vendors use (message, error.message, error_description,
// ErrorDescription; name, error, ErrorCode, error.code), else the first 200 bytes of a
// non-JSON body with any HTML tags removed. JSON without those keys gives "": the rest of
// a body may hold PII.
func DefaultMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	if body[0] == '{' || body[0] == '[' {
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			if json.Valid(body) {
				return "" // an array or the like: nothing we know how to read
			}
			return text(body)
		}
		inner, _ := m["error"].(map[string]any)
		msg := firstString(m["message"], inner["message"], m["error_description"], m["ErrorDescription"])
		code := firstString(m["name"], m["error"], m["ErrorCode"], inner["code"])
		switch {
		case code == "" || code == msg:
			return msg
		case msg == "":
			return code
		}
		return code + ": " + msg
	}
	return text(body)
}

// firstString returns the first non-empty string among vs; a list of strings (LeadConnector's
// 422 message) is joined.
func firstString(vs ...any) string {
	for _, v := range vs {
		switch v := v.(type) {
		case string:
			if s := strings.TrimSpace(v); s != "" {
				return s
			}
		case []any:
			var parts []string
			for _, p := range v {
				if s, ok := p.(string); ok && strings.TrimSpace(s) != "" {
					parts = append(parts, strings.TrimSpace(s))
				}
			}
			if len(parts) > 0 {
				return strings.Join(parts, "; ")
			}
		}
	}
	return ""
}

// text is the readable start of a non-JSON body (an HTML error page from a proxy).
func text(body []byte) string {
	var b strings.Builder
	inTag := false
	for _, r := range string(body) {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>' && inTag:
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
		if b.Len() >= 4*maxText {
			break
		}
	}
	s := strings.Join(strings.Fields(b.String()), " ")
	if len(s) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

var emailRE = regexp.MustCompile(`[^\s@<>"'(),;:\[\]]+@[^\s@<>"'(),;:\[\]]+\.[A-Za-z]{2,}`)

// clean makes a vendor message safe for an error string: the request's secrets and any email
// address redacted, control characters and invalid UTF-8 removed, length capped.
func clean(m string, secrets []string) string {
	if m == "" {
		return ""
	}
	for _, s := range secrets {
		m = strings.ReplaceAll(m, s, "[redacted]")
	}
	m = emailRE.ReplaceAllString(m, "[email]")
	m = strings.ToValidUTF8(m, "")
	m = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, m)
	m = strings.Join(strings.Fields(m), " ")
	if utf8.RuneCountInString(m) > maxMessage {
		m = string([]rune(m)[:maxMessage-1]) + "…"
	}
	return m
}

// minSecret is the shortest request value scrubbed from messages: shorter ones ("1",
// "true") are not secrets and would mangle every message.
const minSecret = 5

// secretish matches the names of headers and body fields whose values must never be echoed.
var secretish = regexp.MustCompile(`(?i)auth|token|secret|passw|api.?key|^key$|^code$|cookie|username|email|assertion`)

// secretsOf lists the request's values that a vendor message might echo: every query value
// (they can hold emails), the access tokens sent, credential headers, and credential fields
// of form or JSON bodies.
// Longest first, so a secret containing another is redacted whole.
func secretsOf(req *Request, u *url.URL, tokens []string) []string {
	var out []string
	add := func(v string) {
		if len(v) >= minSecret {
			out = append(out, v)
		}
	}
	for _, t := range tokens {
		add(t)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	for k, vs := range req.Header {
		if !secretish.MatchString(k) {
			continue
		}
		for _, v := range vs {
			add(v)
			if _, cred, ok := strings.Cut(v, " "); ok {
				add(strings.TrimSpace(cred))
			}
		}
	}
	if len(req.Body) > 0 {
		ct := strings.ToLower(req.ContentType)
		switch {
		case strings.Contains(ct, "x-www-form-urlencoded"):
			if f, err := url.ParseQuery(string(req.Body)); err == nil {
				for k, vs := range f {
					if secretish.MatchString(k) {
						for _, v := range vs {
							add(v)
						}
					}
				}
			}
		case strings.Contains(ct, "json"):
			var m map[string]any
			if json.Unmarshal(req.Body, &m) == nil {
				jsonSecrets(m, add)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

func jsonSecrets(m map[string]any, add func(string)) {
	for k, v := range m {
		switch v := v.(type) {
		case string:
			if secretish.MatchString(k) {
				add(v)
			}
		case map[string]any:
			jsonSecrets(v, add)
		}
	}
}
