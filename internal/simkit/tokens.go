package simkit

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Clock tells the fakes the time; tests set a ManualClock to expire tokens without sleeping.
type Clock interface{ Now() time.Time }

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// ManualClock only moves when told to.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock starts at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Pair is an access token with its refresh token, as a token endpoint returns them.
type Pair struct {
	Grant   string
	Access  string
	Refresh string // "" for tokens without one (LeadConnector location tokens)
	Expiry  time.Time
	TTL     time.Duration
}

// RefreshOutcome classifies a refresh attempt.
type RefreshOutcome int

const (
	RefreshOK      RefreshOutcome = iota
	RefreshUnknown                // never issued
	RefreshReused                 // issued, already used once (see RefreshResult.UsedAt)
	RefreshRevoked                // its grant was revoked
)

// RefreshResult is what Registry.Refresh found. For RefreshReused, Pair is the pair that the
// first use returned, so a vendor with a grace window can hand it out again.
type RefreshResult struct {
	Outcome RefreshOutcome
	Pair    Pair
	UsedAt  time.Time
	Grant   string
}

// AccessState classifies an access token.
type AccessState int

const (
	AccessValid AccessState = iota
	AccessUnknown
	AccessExpired
	AccessRevoked
)

// GrantInfo is one authorization: who granted what.
type GrantInfo struct {
	ID      string            `json:"id"`
	Subject string            `json:"subject"`
	Meta    map[string]string `json:"meta,omitempty"`
	Revoked bool              `json:"revoked"`
}

type accessInfo struct {
	grant   string
	expiry  time.Time
	revoked bool
	minted  bool
	meta    map[string]string
}

type refreshInfo struct {
	grant  string
	used   bool
	usedAt time.Time
	next   Pair
}

// Registry issues and checks tokens with single-use refresh tokens. Vendors layer their own
// policy on its outcomes: LeadConnector's 30 s grace, LACRM's revoke-on-reuse, LocaliQ's
// revoke-previous-access. Safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	clock   Clock
	prefix  string
	ttl     time.Duration
	grants  map[string]*GrantInfo
	access  map[string]*accessInfo
	refresh map[string]*refreshInfo
}

// NewRegistry issues tokens named prefix_at_... and prefix_rt_..., valid for ttl.
func NewRegistry(clock Clock, prefix string, ttl time.Duration) *Registry {
	return &Registry{clock: clock, prefix: prefix, ttl: ttl, grants: map[string]*GrantInfo{},
		access: map[string]*accessInfo{}, refresh: map[string]*refreshInfo{}}
}

// SetTTL changes the lifetime of tokens issued from now on.
func (r *Registry) SetTTL(ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ttl = ttl
}

// TTL is the lifetime of newly issued tokens.
func (r *Registry) TTL() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ttl
}

// NewGrant records an authorization and issues its first pair.
func (r *Registry) NewGrant(subject string, meta map[string]string) (GrantInfo, Pair) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := &GrantInfo{ID: r.prefix + "_grant_" + randHex(6), Subject: subject, Meta: meta}
	r.grants[g.ID] = g
	return *g, r.issueLocked(g.ID, true, nil)
}

// IssueAccess issues an access token without refresh token under grant (minted tokens).
func (r *Registry) IssueAccess(grant string, meta map[string]string) Pair {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.issueLocked(grant, false, meta)
}

func (r *Registry) issueLocked(grant string, withRefresh bool, meta map[string]string) Pair {
	now := r.clock.Now()
	p := Pair{Grant: grant, Access: r.prefix + "_at_" + randHex(16), Expiry: now.Add(r.ttl), TTL: r.ttl}
	r.access[p.Access] = &accessInfo{grant: grant, expiry: p.Expiry, minted: !withRefresh, meta: meta}
	if withRefresh {
		p.Refresh = r.prefix + "_rt_" + randHex(16)
		r.refresh[p.Refresh] = &refreshInfo{grant: grant}
	}
	return p
}

// Refresh spends refresh token rt. On RefreshOK it returns a new pair and rt is used up.
// revokeOldAccess also revokes the access tokens previously issued under the grant.
func (r *Registry) Refresh(rt string, revokeOldAccess bool) RefreshResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	ri, ok := r.refresh[rt]
	if !ok {
		return RefreshResult{Outcome: RefreshUnknown}
	}
	g := r.grants[ri.grant]
	if g == nil || g.Revoked {
		return RefreshResult{Outcome: RefreshRevoked, Grant: ri.grant}
	}
	if ri.used {
		return RefreshResult{Outcome: RefreshReused, Pair: ri.next, UsedAt: ri.usedAt, Grant: ri.grant}
	}
	if revokeOldAccess {
		for _, a := range r.access {
			if a.grant == ri.grant && !a.minted {
				a.revoked = true
			}
		}
	}
	p := r.issueLocked(ri.grant, true, nil)
	ri.used, ri.usedAt, ri.next = true, r.clock.Now(), p
	return RefreshResult{Outcome: RefreshOK, Pair: p, Grant: ri.grant}
}

// RevokeGrant revokes a grant and every token issued under it.
func (r *Registry) RevokeGrant(grant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.grants[grant]; g != nil {
		g.Revoked = true
	}
	for _, a := range r.access {
		if a.grant == grant {
			a.revoked = true
		}
	}
}

// Check classifies access token tok and returns its grant and meta (minted tokens).
func (r *Registry) Check(tok string) (AccessState, GrantInfo, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.access[tok]
	if !ok {
		return AccessUnknown, GrantInfo{}, nil
	}
	g := r.grants[a.grant]
	var gi GrantInfo
	if g != nil {
		gi = *g
	}
	switch {
	case a.revoked || (g != nil && g.Revoked):
		return AccessRevoked, gi, a.meta
	case !r.clock.Now().Before(a.expiry):
		return AccessExpired, gi, a.meta
	}
	return AccessValid, gi, a.meta
}

// Grants lists the grants.
func (r *Registry) Grants() []GrantInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]GrantInfo, 0, len(r.grants))
	for _, g := range r.grants {
		out = append(out, *g)
	}
	return out
}

// AuthCodes keeps authorization codes: single use, short-lived.
type AuthCodes struct {
	mu    sync.Mutex
	clock Clock
	codes map[string]codeInfo
}

type codeInfo struct {
	clientID, redirect, subject string
	challenge, method           string
	expiry                      time.Time
}

// NewAuthCodes returns an empty code table.
func NewAuthCodes(clock Clock) *AuthCodes {
	return &AuthCodes{clock: clock, codes: map[string]codeInfo{}}
}

// Issue creates a code for client, redirect URI and subject, valid for ttl. challenge and
// method carry a PKCE code challenge where the vendor accepts one ("" otherwise).
func (a *AuthCodes) Issue(clientID, redirect, subject, challenge, method string, ttl time.Duration) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	code := randHex(12)
	a.codes[code] = codeInfo{clientID: clientID, redirect: redirect, subject: subject,
		challenge: challenge, method: method, expiry: a.clock.Now().Add(ttl)}
	return code
}

// Redeem spends a code; ok is false if it is unknown, expired, or issued to another client
// or redirect URI. It returns the subject and the PKCE challenge recorded with it.
func (a *AuthCodes) Redeem(code, clientID, redirect string) (subject, challenge, method string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ci, found := a.codes[code]
	delete(a.codes, code)
	if !found || ci.clientID != clientID || ci.redirect != redirect || !a.clock.Now().Before(ci.expiry) {
		return "", "", "", false
	}
	return ci.subject, ci.challenge, ci.method, true
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
