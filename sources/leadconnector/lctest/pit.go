package lctest

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
)

// Private Integration Tokens (API-CONTRACTS.md §7): static sub-account tokens made in
// Settings → Private Integrations. The vendor's OpenAPI security schemes say which calls take
// them: "Private Integration Token of Sub-Account" on the location-scoped ones
// (vendor-docs/leadconnector/contacts.json, securitySchemes.bearer), and never on the
// Agency-Access-Only ones, /oauth/locationToken and /oauth/installedLocations (oauth.json,
// oauth-v3.json; highlevel-api-docs#226).
const (
	// PITPrefix starts every PIT; the vendor matches it case-sensitively ("Pit-" is no PIT).
	PITPrefix = "pit-"
	// PITOverlap is how long the old token keeps working after "rotate and expire later".
	PITOverlap = 7 * 24 * time.Hour
	// CountPITRequests counts the API requests authenticated by a PIT.
	CountPITRequests = "pit_requests"
)

// ErrUnknownPIT is returned for a token the fake never issued, or one revoked or expired.
var ErrUnknownPIT = errors.New("lctest: unknown, revoked or expired private integration token")

// pit is one issued token: it works until revoked, or until expires when that is set.
type pit struct {
	location string
	issued   time.Time
	expires  time.Time
	revoked  bool
}

func (p *pit) usable(now time.Time) bool {
	return p != nil && !p.revoked && (p.expires.IsZero() || now.Before(p.expires))
}

// PIT is a Private Integration Token that works now, as PITs and GET /_admin/pits list it.
type PIT struct {
	Token      string     `json:"token"`
	LocationID string     `json:"location_id"`
	IssuedAt   time.Time  `json:"issued_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"` // set when rotated with "expire later"
}

// IssuePIT makes a new Private Integration Token for an installed location.
func (f *Fake) IssuePIT(locationID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byID[locationID] == nil {
		return "", fmt.Errorf("lctest: unknown location %q", locationID)
	}
	return f.issuePITLocked(locationID), nil
}

func (f *Fake) issuePITLocked(locationID string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	tok := fmt.Sprintf("%s%x-%x-%x-%x-%x", PITPrefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	f.pits[tok] = &pit{location: locationID, issued: f.clock.Now()}
	return tok
}

// RevokePIT deletes a token in the sub-account's settings: it stops working at once.
func (f *Fake) RevokePIT(token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pits[token]
	if p == nil {
		return ErrUnknownPIT
	}
	p.revoked = true
	return nil
}

// RotatePIT issues a new token for the same location as token. later=false is "rotate and
// expire now": the old token stops working at once; later=true is "rotate and expire
// later": it keeps working for PITOverlap on the fake's clock.
func (f *Fake) RotatePIT(token string, later bool) (string, error) {
	tok, _, err := f.rotatePIT(token, later)
	return tok, err
}

// rotatePIT also returns when the old token stops working.
func (f *Fake) rotatePIT(token string, later bool) (string, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	p := f.pits[token]
	if !p.usable(now) {
		return "", time.Time{}, ErrUnknownPIT
	}
	switch {
	case !later:
		p.revoked, p.expires = true, now
	case p.expires.IsZero() || p.expires.After(now.Add(PITOverlap)):
		p.expires = now.Add(PITOverlap)
	}
	return f.issuePITLocked(p.location), p.expires, nil
}

// PITs lists the tokens that work now, by location and issue time.
func (f *Fake) PITs() []PIT {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	out := []PIT{}
	for tok, p := range f.pits {
		if !p.usable(now) {
			continue
		}
		e := PIT{Token: tok, LocationID: p.location, IssuedAt: p.issued}
		if !p.expires.IsZero() {
			exp := p.expires
			e.ExpiresAt = &exp
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b PIT) int {
		return cmp.Or(strings.Compare(a.LocationID, b.LocationID), a.IssuedAt.Compare(b.IssuedAt), strings.Compare(a.Token, b.Token))
	})
	return out
}

// authenticatePIT resolves a PIT as a location token of its own location, with the app's
// scopes: the same rate-limit bucket, the same 403 for another location's contacts
// (API-CONTRACTS.md §1.3) and the same 401 on agency-only calls (the class check).
func (f *Fake) authenticatePIT(tok string) (*call, bool) {
	f.mu.Lock()
	p := f.pits[tok]
	ok := p.usable(f.clock.Now())
	f.mu.Unlock()
	if !ok {
		return nil, false
	}
	f.counters.Inc(CountPITRequests)
	return &call{userType: "Location", company: f.companyID, location: p.location, scope: f.opts.Scopes,
		userID: f.userID}, true
}

// adminPITs serves /_admin/pits (documented in the package comment).
func (f *Fake) adminPITs(mux *http.ServeMux) {
	mux.HandleFunc("GET /pits", func(w http.ResponseWriter, _ *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, f.PITs())
	})
	mux.HandleFunc("POST /pits", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			LocationID string `json:"location_id"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || b.LocationID == "" {
			adminError(w, `want {"location_id":"..."}`)
			return
		}
		tok, err := f.IssuePIT(b.LocationID)
		if err != nil {
			adminNotFound(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, map[string]string{"token": tok})
	})
	mux.HandleFunc("POST /pits/revoke", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Token string `json:"token"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || b.Token == "" {
			adminError(w, `want {"token":"pit-..."}`)
			return
		}
		if err := f.RevokePIT(b.Token); err != nil {
			adminNotFound(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /pits/rotate", func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Token  string `json:"token"`
			Expire string `json:"expire"`
		}
		if err := simkit.DecodeStrict(r, &b); err != nil || b.Token == "" || (b.Expire != "now" && b.Expire != "later") {
			adminError(w, `want {"token":"pit-...","expire":"now"|"later"}`)
			return
		}
		tok, expires, err := f.rotatePIT(b.Token, b.Expire == "later")
		if err != nil {
			adminNotFound(w, err)
			return
		}
		simkit.WriteJSON(w, http.StatusOK, map[string]string{"token": tok,
			"old_token_expires_at": expires.UTC().Format(time.RFC3339)})
	})
}
