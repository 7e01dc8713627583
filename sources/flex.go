package sources

import (
	"bytes"
	"encoding/json"
	"errors"
)

// FlexString is a JSON scalar read as text, for vendor fields whose type drifts (phones as
// numbers, ids as numbers in old records, booleans typed String): a string as sent, a
// number's digits exactly as written (never through a float64: LACRM ids are ~31-digit
// decimals), true or false, and null as "". An object or an array is an error that never
// quotes the value, which may be PII. A vendor that reads odd leaves leniently (LocaliQ)
// wraps it.
type FlexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
	case string(b) == "true" || string(b) == "false":
		*f = FlexString(b)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = FlexString(n)
	default:
		return errors.New("want a string, a number or a boolean")
	}
	return nil
}
