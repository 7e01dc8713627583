package sink

import (
	"fmt"
	"unicode/utf8"
)

// PostgreSQL's jsonb refuses some JSON that is valid text and that SQLite, Go and the vendors
// accept: lone surrogate escapes, \u0000, invalid UTF-8, and numbers outside numeric's range.
// One such lead must not block its account, so raw JSON is repaired before it is stored, the
// same way on both dialects.
const (
	// numeric holds at most 131072 digits before the decimal point and 16383 after.
	maxNumericExp   = 131071
	maxNumericScale = 16383
	// maxJSONDepth is encoding/json's own limit: a lead a source decoded is never deeper.
	maxJSONDepth = 10000
)

// jsonError says where raw JSON is broken, never what it holds.
type jsonError struct {
	offset int
	msg    string
}

func (e *jsonError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.offset) }

// repairJSON returns in, unchanged and uncopied, when jsonb can store it; otherwise a repaired
// copy: invalid UTF-8 and escapes of a lone surrogate or NUL become U+FFFD, and a number
// numeric cannot hold becomes a string of its text. It fails on anything that is not JSON.
func repairJSON(in []byte) ([]byte, error) {
	f := &jsonFixer{in: in, badEnd: -1}
	if err := f.document(); err != nil {
		return nil, err
	}
	if f.out == nil {
		return in, nil
	}
	return append(f.out, in[f.copied:]...), nil
}

type jsonFixer struct {
	in     []byte
	pos    int
	out    []byte // nil until the first repair
	copied int    // in[:copied] is already in out
	badEnd int    // end of the last invalid UTF-8 replaced, so a run of them is one U+FFFD
}

func (f *jsonFixer) replace(start, end int, with string) {
	if f.out == nil {
		f.out = make([]byte, 0, len(f.in)+len(with))
	}
	f.out = append(f.out, f.in[f.copied:start]...)
	f.out = append(f.out, with...)
	f.copied = end
}

func (f *jsonFixer) fail(msg string) error { return &jsonError{offset: f.pos, msg: msg} }

func (f *jsonFixer) skipSpace() {
	for f.pos < len(f.in) {
		switch f.in[f.pos] {
		case ' ', '\t', '\n', '\r':
			f.pos++
		default:
			return
		}
	}
}

// document is a loop rather than a recursion so that depth costs a byte, not a stack frame.
func (f *jsonFixer) document() error {
	var open []byte // the enclosing containers, '{' or '['
	for {
		f.skipSpace()
		if f.pos == len(f.in) {
			return f.fail("unexpected end of JSON")
		}
		switch c := f.in[f.pos]; {
		case c == '{' || c == '[':
			if len(open) == maxJSONDepth {
				return f.fail(fmt.Sprintf("JSON nested deeper than %d", maxJSONDepth))
			}
			f.pos++
			f.skipSpace()
			if f.pos < len(f.in) && f.in[f.pos] == c+2 { // '}' and ']' follow '{' and '[' by 2
				f.pos++
				break
			}
			open = append(open, c)
			if c == '{' {
				if err := f.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if err := f.str(); err != nil {
				return err
			}
		case c == '-' || c >= '0' && c <= '9':
			if err := f.number(); err != nil {
				return err
			}
		default:
			if err := f.literal(); err != nil {
				return err
			}
		}
		// After a value: close containers, or go on to the next element.
		for {
			f.skipSpace()
			if len(open) == 0 {
				if f.pos != len(f.in) {
					return f.fail("data after the JSON value")
				}
				return nil
			}
			if f.pos == len(f.in) {
				return f.fail("unexpected end of JSON")
			}
			top, c := open[len(open)-1], f.in[f.pos]
			if c == top+2 {
				f.pos++
				open = open[:len(open)-1]
				continue
			}
			if c != ',' {
				return f.fail("invalid character after a JSON value")
			}
			f.pos++
			if top == '{' {
				if err := f.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// key reads an object key and its colon.
func (f *jsonFixer) key() error {
	f.skipSpace()
	if f.pos == len(f.in) {
		return f.fail("unexpected end of JSON")
	}
	if f.in[f.pos] != '"' {
		return f.fail("want an object key")
	}
	if err := f.str(); err != nil {
		return err
	}
	f.skipSpace()
	if f.pos == len(f.in) || f.in[f.pos] != ':' {
		return f.fail("want a colon after an object key")
	}
	f.pos++
	return nil
}

func (f *jsonFixer) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if len(f.in)-f.pos >= len(lit) && string(f.in[f.pos:f.pos+len(lit)]) == lit {
			f.pos += len(lit)
			return nil
		}
	}
	return f.fail("invalid character for a JSON value")
}

// plain marks the bytes a string may hold as they are: printable ASCII but the quote and
// the backslash. Most of a lead's JSON is made of them, so they get a tight loop.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string, f.pos at its opening quote.
func (f *jsonFixer) str() error {
	f.pos++
	for f.pos < len(f.in) {
		for f.pos < len(f.in) && plain[f.in[f.pos]] {
			f.pos++
		}
		if f.pos == len(f.in) {
			break
		}
		c := f.in[f.pos]
		switch {
		case c == '"':
			f.pos++
			return nil
		case c == '\\':
			if err := f.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return f.fail("control character in a JSON string")
		case c < utf8.RuneSelf:
			f.pos++
		default:
			r, size := utf8.DecodeRune(f.in[f.pos:])
			if r == utf8.RuneError && size == 1 {
				if f.badEnd == f.pos {
					f.replace(f.pos, f.pos+1, "")
				} else {
					f.replace(f.pos, f.pos+1, "\uFFFD")
				}
				f.badEnd = f.pos + 1
			}
			f.pos += size
		}
	}
	return f.fail("unterminated JSON string")
}

// escape reads one escape sequence, f.pos at its backslash.
func (f *jsonFixer) escape() error {
	if f.pos+1 == len(f.in) {
		return f.fail("unterminated JSON string")
	}
	switch f.in[f.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		f.pos += 2
		return nil
	case 'u':
	default:
		return f.fail("invalid escape in a JSON string")
	}
	r, ok := hex4(f.in, f.pos+2)
	if !ok {
		return f.fail("invalid \\u escape in a JSON string")
	}
	switch {
	case r >= 0xD800 && r < 0xDC00: // a high surrogate: valid only before a low one
		if low, ok := hex4(f.in, f.pos+8); ok && f.in[f.pos+6] == '\\' && f.in[f.pos+7] == 'u' && low >= 0xDC00 && low < 0xE000 {
			f.pos += 12
			return nil
		}
		f.replace(f.pos, f.pos+6, `\uFFFD`)
	case r >= 0xDC00 && r < 0xE000, r == 0:
		f.replace(f.pos, f.pos+6, `\uFFFD`)
	}
	f.pos += 6
	return nil
}

// hex4 decodes the four hex digits at b[i:], if there are four.
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a number and, when numeric cannot hold it, stores its text as a string.
func (f *jsonFixer) number() error {
	start := f.pos
	if f.in[f.pos] == '-' {
		f.pos++
	}
	digits := func() []byte {
		from := f.pos
		for f.pos < len(f.in) && f.in[f.pos] >= '0' && f.in[f.pos] <= '9' {
			f.pos++
		}
		return f.in[from:f.pos]
	}
	intPart := digits()
	if len(intPart) == 0 || len(intPart) > 1 && intPart[0] == '0' {
		return f.fail("invalid JSON number")
	}
	var frac, exp []byte
	if f.pos < len(f.in) && f.in[f.pos] == '.' {
		f.pos++
		if frac = digits(); len(frac) == 0 {
			return f.fail("invalid JSON number")
		}
	}
	negExp := false
	if f.pos < len(f.in) && (f.in[f.pos] == 'e' || f.in[f.pos] == 'E') {
		f.pos++
		if f.pos < len(f.in) && (f.in[f.pos] == '+' || f.in[f.pos] == '-') {
			negExp = f.in[f.pos] == '-'
			f.pos++
		}
		if exp = digits(); len(exp) == 0 {
			return f.fail("invalid JSON number")
		}
	}
	if !numericHolds(intPart, frac, exp, negExp) {
		f.replace(start, f.pos, `"`+string(f.in[start:f.pos])+`"`)
	}
	return nil
}

// numericHolds mirrors PostgreSQL's numeric input limits: the exponent of the leading digit
// at most maxNumericExp, and at most maxNumericScale digits after the decimal point.
func numericHolds(intPart, frac, exp []byte, negExp bool) bool {
	for len(exp) > 1 && exp[0] == '0' {
		exp = exp[1:]
	}
	if len(exp) > 10 { // PostgreSQL refuses an exponent of INT_MAX/2 or more, even on zero
		return false
	}
	e := 0
	for _, c := range exp {
		e = e*10 + int(c-'0')
	}
	if e >= 1<<30-1 {
		return false
	}
	if negExp {
		e = -e
	}
	if len(frac)-e > maxNumericScale {
		return false
	}
	lead := 0 // the exponent of the leading nonzero digit, found below
	switch i := firstNonZero(intPart); {
	case i >= 0:
		lead = len(intPart) - 1 - i + e
	case firstNonZero(frac) >= 0:
		lead = -1 - firstNonZero(frac) + e
	default:
		return true // zero
	}
	return lead <= maxNumericExp
}

func firstNonZero(digits []byte) int {
	for i, c := range digits {
		if c != '0' {
			return i
		}
	}
	return -1
}
