package webhook

import (
	"errors"
	"fmt"
)

// Reason says why a delivery was rejected, as a metric label (bounded, snake_case).
type Reason string

// Rejection reasons.
const (
	ReasonMissingSignature Reason = "missing_signature" // no signature or authorization header
	ReasonBadSignature     Reason = "bad_signature"     // a signature that does not verify
	ReasonStale            Reason = "stale"             // a timestamp too far from now
	ReasonReplay           Reason = "replay"            // a webhookId already accepted
	ReasonMalformed        Reason = "malformed"         // not a JSON object, too big or deep, no id
	ReasonUnconfigured     Reason = "unconfigured"      // no key or secret to check it with
)

// ReasonUnknownType labels an event that was verified and ignored (Op "ignore"): it is not a
// rejection and no *Error carries it, but the endpoint counts it next to them.
const ReasonUnknownType Reason = "unknown_type"

// Error is a rejected delivery. Its message names what failed, never a value of the body.
type Error struct {
	Vendor string
	Reason Reason
	msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("webhook: %s: %s: %s", e.Vendor, e.Reason, e.msg)
}

func reject(vendor string, r Reason, format string, args ...any) *Error {
	return &Error{Vendor: vendor, Reason: r, msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a rejection; ok is false for any other error (which is not
// the sender's fault, and should be answered 429 so that the vendor retries).
func ReasonOf(err error) (r Reason, ok bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}
