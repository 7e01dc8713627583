package httpx

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds a parsed Retry-After so absurd values cannot overflow a Duration;
// Config.MaxWait caps the actual wait far below it.
const maxRetryAfter = 365 * 24 * time.Hour

// ParseRetryAfter parses a Retry-After value: delta-seconds or HTTP-date (relative to now).
// A date in the past means no wait. Fractional seconds, which some servers send, are accepted.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		return maxRetryAfter, true
	}
	if err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	if v[0] >= '0' && v[0] <= '9' && strings.Count(v, ".") == 1 && !strings.ContainsAny(v, "eExXpP_") {
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && f >= 0 {
			if f > maxRetryAfter.Seconds() {
				return maxRetryAfter, true
			}
			return time.Duration(f * float64(time.Second)), true
		}
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
