package sources

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxRecordDepth is the deepest nesting of objects and arrays a record may have. No CRM
// record needs more; deeper ones are quarantined undecoded, so neither our decoders nor the
// warehouse's JSON columns meet them.
const MaxRecordDepth = 512

// Record is one element of a page's records array, verbatim.
type Record struct {
	Raw json.RawMessage
	// Depth is the record's nesting of objects and arrays (0 for a scalar).
	Depth int
}

// TooDeep reports a record nested deeper than MaxRecordDepth.
func (r Record) TooDeep() bool { return r.Depth > MaxRecordDepth }

// Reject quarantines r. reason must hold no PII: say what is wrong, never the value.
func (r Record) Reject(id, reason string) Rejected {
	return Rejected{ID: id, Reason: reason, Raw: bytes.Clone(r.Raw)}
}

// TooDeepReason is the rejection reason of a record for which TooDeep is true.
var TooDeepReason = fmt.Sprintf("nested deeper than %d", MaxRecordDepth)

// SplitRecords reads a page: body is a JSON object whose member key (matched like
// encoding/json matches a field name: the last member that equals it ignoring case) is the
// array of records; with key "", body is that array itself. It returns the envelope (body
// with that member's value replaced by null, for the paging fields to be decoded normally),
// the records, and whether the member was there. With key "" the envelope is nil.
//
// The page is split by a scanner of its own rather than by encoding/json, which refuses a
// whole document nested deeper than 10,000 (as a *json.SyntaxError, which would make a
// valid page with one absurd record look truncated). A body that is not JSON, or is cut
// short, is an error that unwraps to a *json.SyntaxError (httpx retries those); a valid
// body of the wrong shape is another error. Neither error quotes the body.
func SplitRecords(body []byte, key string) (envelope []byte, recs []Record, found bool, err error) {
	s := &scanner{b: body}
	s.ws()
	if key == "" {
		if s.i < len(s.b) && s.b[s.i] != '[' {
			return nil, nil, false, s.shape("expected a JSON array")
		}
		if recs, err = s.array(); err != nil {
			return nil, nil, false, err
		}
		return nil, recs, true, s.end()
	}
	if s.i < len(s.b) && s.b[s.i] != '{' {
		return nil, nil, false, s.shape("expected a JSON object")
	}
	if err := s.open('{'); err != nil {
		return nil, nil, false, err
	}
	var cuts [][2]int // the matching members' values, replaced by null in the envelope
	notArray := false
	for first := true; ; first = false {
		s.ws()
		if first && s.peek('}') {
			s.i++
			break
		}
		name, err := s.key()
		if err != nil {
			return nil, nil, false, err
		}
		s.ws()
		start := s.i
		if !strings.EqualFold(name, key) {
			if _, err := s.value(); err != nil {
				return nil, nil, false, err
			}
		} else {
			found, notArray, recs = true, false, nil
			switch {
			case s.peek('['):
				if recs, err = s.array(); err != nil {
					return nil, nil, false, err
				}
			case bytes.HasPrefix(s.b[s.i:], []byte("null")):
				s.i += len("null")
			default:
				if _, err := s.value(); err != nil {
					return nil, nil, false, err
				}
				notArray = true
			}
			cuts = append(cuts, [2]int{start, s.i})
		}
		s.ws()
		if s.peek(',') {
			s.i++
			continue
		}
		if s.peek('}') {
			s.i++
			break
		}
		return nil, nil, false, s.syntax("expected , or } after an object member")
	}
	if err := s.end(); err != nil {
		return nil, nil, false, err
	}
	if notArray {
		return nil, nil, false, fmt.Errorf("%s is not an array", key)
	}
	envelope = make([]byte, 0, len(body))
	last := 0
	for _, c := range cuts {
		envelope = append(append(envelope, body[last:c[0]]...), "null"...)
		last = c[1]
	}
	return append(envelope, body[last:]...), recs, found, nil
}

// DecodeReason turns an error of json.Unmarshal on a record into a rejection reason
// without PII: encoding/json's own type errors quote numbers ("number 5551234"), so only
// the field and the JSON kind are kept. Other errors are our decoders', which name the
// field and never the value.
func DecodeReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		kind, _, _ := strings.Cut(te.Value, " ")
		if te.Field == "" {
			return "unexpected JSON " + kind
		}
		return fmt.Sprintf("field %s: unexpected JSON %s", te.Field, kind)
	}
	return err.Error()
}

// syntaxError is a page that is not JSON; it unwraps to a *json.SyntaxError so the HTTP
// layer retries it like a truncated body.
type syntaxError struct {
	msg    string
	offset int64
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("malformed JSON at offset %d: %s", e.offset, e.msg)
}
func (e *syntaxError) Unwrap() error { return &json.SyntaxError{Offset: e.offset} }

// scanner validates JSON without recursion (a record may nest millions deep) and measures
// nesting.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) syntax(msg string) error {
	if s.i >= len(s.b) {
		msg = "unexpected end of JSON input"
	}
	return &syntaxError{msg: msg, offset: int64(s.i)}
}

// shape is the error of a valid body of the wrong shape; the body is still checked first,
// so that a truncated one is a syntax error.
func (s *scanner) shape(msg string) error {
	if _, err := s.value(); err != nil {
		return err
	}
	if err := s.end(); err != nil {
		return err
	}
	return errors.New(msg)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

func (s *scanner) open(c byte) error {
	s.ws()
	if !s.peek(c) {
		return s.syntax("expected " + string(c))
	}
	s.i++
	return nil
}

// end checks that only white space follows the top-level value.
func (s *scanner) end() error {
	s.ws()
	if s.i < len(s.b) {
		return s.syntax("data after the top-level value")
	}
	return nil
}

// array scans an array and returns its elements.
func (s *scanner) array() ([]Record, error) {
	if err := s.open('['); err != nil {
		return nil, err
	}
	var out []Record
	s.ws()
	if s.peek(']') {
		s.i++
		return []Record{}, nil
	}
	for {
		s.ws()
		start := s.i
		d, err := s.value()
		if err != nil {
			return nil, err
		}
		out = append(out, Record{Raw: s.b[start:s.i], Depth: d})
		s.ws()
		switch {
		case s.peek(','):
			s.i++
		case s.peek(']'):
			s.i++
			return out, nil
		default:
			return nil, s.syntax("expected , or ] after an array element")
		}
	}
}

// key scans an object member's name and its colon, and returns the name.
func (s *scanner) key() (string, error) {
	s.ws()
	if !s.peek('"') {
		return "", s.syntax("expected a string for an object key")
	}
	start := s.i
	if err := s.str(); err != nil {
		return "", err
	}
	raw := s.b[start:s.i]
	name := string(raw[1 : len(raw)-1])
	if bytes.IndexByte(raw, '\\') >= 0 {
		if err := json.Unmarshal(raw, &name); err != nil {
			return "", &syntaxError{msg: "invalid string", offset: int64(start)}
		}
	}
	if err := s.open(':'); err != nil {
		return "", err
	}
	return name, nil
}

// value scans one value and returns its nesting depth.
func (s *scanner) value() (int, error) {
	var stack []byte // the open containers, '{' or '['
	depth := 0
	for {
		// A value is expected here.
		s.ws()
		if s.i >= len(s.b) {
			return 0, s.syntax("")
		}
		switch c := s.b[s.i]; {
		case c == '{' || c == '[':
			s.i++
			stack = append(stack, c)
			depth = max(depth, len(stack))
			s.ws()
			if !s.peek(closer(c)) {
				if c == '{' {
					if _, err := s.key(); err != nil {
						return 0, err
					}
				}
				continue
			}
			s.i++ // an empty container is a complete value
			stack = stack[:len(stack)-1]
		case c == '"':
			if err := s.str(); err != nil {
				return 0, err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if err := s.number(); err != nil {
				return 0, err
			}
		default:
			if err := s.literal(); err != nil {
				return 0, err
			}
		}
		// After a value: close containers, or move on to the next element or member.
		for {
			if len(stack) == 0 {
				return depth, nil
			}
			s.ws()
			top := stack[len(stack)-1]
			if s.peek(closer(top)) {
				s.i++
				stack = stack[:len(stack)-1]
				continue
			}
			if !s.peek(',') {
				return 0, s.syntax("expected , or a closing bracket")
			}
			s.i++
			if top == '{' {
				if _, err := s.key(); err != nil {
					return 0, err
				}
			}
			break
		}
	}
}

func closer(c byte) byte {
	if c == '{' {
		return '}'
	}
	return ']'
}

func (s *scanner) str() error {
	s.i++ // the opening quote
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return nil
		case c < 0x20:
			return s.syntax("control character in a string")
		case c == '\\':
			s.i++
			if s.i >= len(s.b) {
				return s.syntax("")
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if s.i >= len(s.b) {
						return s.syntax("")
					}
					if !isHex(s.b[s.i]) {
						return s.syntax("invalid \\u escape")
					}
					s.i++
				}
			default:
				return s.syntax("invalid escape")
			}
		default:
			s.i++
		}
	}
	return s.syntax("")
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) digits() error {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == start {
		return s.syntax("expected a digit")
	}
	return nil
}

func (s *scanner) number() error {
	if s.peek('-') {
		s.i++
	}
	if s.peek('0') {
		s.i++
	} else if err := s.digits(); err != nil {
		return err
	}
	if s.peek('.') {
		s.i++
		if err := s.digits(); err != nil {
			return err
		}
	}
	if s.peek('e') || s.peek('E') {
		s.i++
		if s.peek('+') || s.peek('-') {
			s.i++
		}
		if err := s.digits(); err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if s.b[s.i] != lit[0] {
			continue
		}
		rest := s.b[s.i:]
		if bytes.HasPrefix(rest, []byte(lit)) {
			s.i += len(lit)
			return nil
		}
		if len(rest) < len(lit) && bytes.HasPrefix([]byte(lit), rest) {
			s.i = len(s.b)
			return s.syntax("")
		}
		return s.syntax("invalid literal")
	}
	return s.syntax("invalid character")
}

// DefaultMaxPages is the page budget of one listing (one pass over an account's leads, or
// the accounts of a grant) when a source's config leaves it zero: far more than any real
// account needs, and still an end to a vendor that keeps saying "more".
const DefaultMaxPages = 100_000

// MaxPagesLimit is the largest page budget a configuration may set.
const MaxPagesLimit = 100_000_000

// ErrEndlessPaging is the error of a listing stopped by its PageGuard.
var ErrEndlessPaging = errors.New("paging does not end")

// PageGuard bounds one listing: at most Max pages, no page cursor seen twice (a cycle, not
// only a repeat), and no page whose records were all listed already. The zero Max means
// DefaultMaxPages.
type PageGuard struct {
	// What names the vendor and endpoint in the error ("lacrm: GetContacts").
	What string
	Max  int

	pages   int
	cursors map[string]bool
	seen    map[string]bool
}

// Check is called for each page received, with the cursor it hands out for the next page
// ("" for page-number paging) and the keys of its records (see Record.Key). It returns an
// error wrapping ErrEndlessPaging when the listing must stop.
func (g *PageGuard) Check(next string, keys []string) error {
	g.pages++
	if limit := cmp.Or(g.Max, DefaultMaxPages); g.pages > limit {
		return fmt.Errorf("%s: page %d: more than %d pages: %w", g.What, g.pages, limit, ErrEndlessPaging)
	}
	if g.seen == nil {
		g.cursors, g.seen = map[string]bool{}, map[string]bool{}
	}
	if next != "" {
		if g.cursors[next] {
			return fmt.Errorf("%s: page %d: its next-page cursor was handed out before: %w", g.What, g.pages, ErrEndlessPaging)
		}
		g.cursors[next] = true
	}
	fresh := len(keys) == 0
	for _, k := range keys {
		if !g.seen[k] {
			fresh = true
			g.seen[k] = true
		}
	}
	if !fresh {
		return fmt.Errorf("%s: page %d: every record on it was listed already: %w", g.What, g.pages, ErrEndlessPaging)
	}
	return nil
}

// Key identifies r for a PageGuard: its id, or for a record without one, a hash of its bytes.
func (r Record) Key(id string) string {
	if id != "" {
		return "id:" + id
	}
	h := sha256.Sum256(r.Raw)
	return "raw:" + string(h[:])
}
