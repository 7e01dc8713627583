package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// Signature headers of LeadConnector (HighLevel) deliveries.
const (
	// HeaderGHLSignature is the base64 Ed25519 signature of the raw body, which HighLevel
	// sends since 2026 (API-CONTRACTS.md §6.1 [3P, 2026]).
	HeaderGHLSignature = "X-GHL-Signature"
	// HeaderWHSignature is the base64 RSA-SHA256 (PKCS #1 v1.5) signature of the raw body
	// (vendor-docs/leadconnector/WebhookAuthentication.md §2), no longer sent after
	// 2026-07-01 (API-CONTRACTS.md §6.1).
	HeaderWHSignature = "X-WH-Signature"
)

// DefaultLeadConnectorRSAKey is the public key HighLevel publishes for X-WH-Signature,
// copied from vendor-docs/leadconnector/WebhookAuthentication.md §2. The vendor announces a
// rotation by email (§4 there): the configuration can name other keys.
const DefaultLeadConnectorRSAKey = `-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----`

// DefaultMaxSkew is how far a delivery's timestamp may be from now, either way: the window
// WebhookAuthentication.md §3 suggests.
const DefaultMaxSkew = 5 * time.Minute

// ReplayChecker reports whether a delivery id was already accepted. The inbox implements it
// over its unique key on (vendor, webhook id). Seen must only look, never record: an event is
// recorded when the inbox stores it, so that a delivery whose store failed (and was answered
// 429) is not refused as a replay when the vendor retries it. Two copies racing past Seen
// meet at that unique key, where one loses.
type ReplayChecker interface {
	Seen(ctx context.Context, vendor, webhookID string) (bool, error)
}

// LeadConnectorConfig configures a LeadConnectorVerifier. The zero values mean the defaults.
type LeadConnectorConfig struct {
	// Ed25519Keys verify X-GHL-Signature; any one may match, for rotations. Each is PEM
	// (PKIX "PUBLIC KEY"), or base64 of the 32-byte key or of its PKIX DER. HighLevel's key
	// is not in the vendor documents here: with none, X-GHL-Signature deliveries are refused
	// as unconfigured.
	Ed25519Keys []string
	// RSAKeys verify X-WH-Signature, as PEM (PKIX or PKCS #1); none means
	// DefaultLeadConnectorRSAKey.
	RSAKeys []string
	// DisableRSA refuses X-WH-Signature deliveries altogether.
	DisableRSA bool
	// MaxSkew is DefaultMaxSkew when zero.
	MaxSkew time.Duration
	// Now is time.Now when nil.
	Now func() time.Time
	// Replays is required.
	Replays ReplayChecker
}

// LeadConnectorVerifier checks LeadConnector deliveries. It is safe for concurrent use.
type LeadConnectorVerifier struct {
	ed      []ed25519.PublicKey
	rsa     []*rsa.PublicKey
	maxSkew time.Duration
	now     func() time.Time
	replays ReplayChecker
}

// NewLeadConnectorVerifier parses the configured keys.
func NewLeadConnectorVerifier(cfg LeadConnectorConfig) (*LeadConnectorVerifier, error) {
	if cfg.Replays == nil {
		return nil, errors.New("webhook: leadconnector: no replay checker")
	}
	v := &LeadConnectorVerifier{maxSkew: cmp.Or(cfg.MaxSkew, DefaultMaxSkew), now: cfg.Now, replays: cfg.Replays}
	if v.now == nil {
		v.now = time.Now
	}
	if v.maxSkew < 0 {
		return nil, errors.New("webhook: leadconnector: negative max skew")
	}
	for i, s := range cfg.Ed25519Keys {
		k, err := ParseEd25519PublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("webhook: leadconnector: Ed25519 key %d: %w", i+1, err)
		}
		v.ed = append(v.ed, k)
	}
	if !cfg.DisableRSA {
		keys := cfg.RSAKeys
		if len(keys) == 0 {
			keys = []string{DefaultLeadConnectorRSAKey}
		}
		for i, s := range keys {
			k, err := ParseRSAPublicKey(s)
			if err != nil {
				return nil, fmt.Errorf("webhook: leadconnector: RSA key %d: %w", i+1, err)
			}
			v.rsa = append(v.rsa, k)
		}
	}
	if len(v.ed) == 0 && len(v.rsa) == 0 {
		return nil, errors.New("webhook: leadconnector: no Ed25519 key, and RSA disabled")
	}
	return v, nil
}

// Verify checks a delivery and parses it: the signature over body exactly as received, then
// the timestamp, then the webhookId (API-CONTRACTS.md §6.1; WebhookAuthentication.md §3). A
// rejection is an *Error; an error of the replay store is returned wrapped, as is.
func (v *LeadConnectorVerifier) Verify(ctx context.Context, h http.Header, body []byte) (Event, error) {
	const vendor = sources.LeadConnector
	if err := v.checkSignature(h, body); err != nil {
		return Event{}, err
	}
	ev, err := ParseLeadConnector(body)
	if err != nil {
		return Event{}, err
	}
	// Both are in every payload (WebhookAuthentication.md §1); without them a captured
	// delivery could be replayed forever.
	if ev.OccurredAt.IsZero() {
		return Event{}, reject(vendor, ReasonMalformed, "no timestamp")
	}
	if ev.WebhookID == "" {
		return Event{}, reject(vendor, ReasonMalformed, "no webhookId")
	}
	if d := v.now().Sub(ev.OccurredAt); d > v.maxSkew || d < -v.maxSkew {
		return Event{}, reject(vendor, ReasonStale, "timestamp %s from now", d.Round(time.Second))
	}
	seen, err := v.replays.Seen(ctx, vendor, ev.WebhookID)
	if err != nil {
		return Event{}, fmt.Errorf("webhook: leadconnector: replay check: %w", err)
	}
	if seen {
		return Event{}, reject(vendor, ReasonReplay, "webhookId already accepted")
	}
	return ev, nil
}

// checkSignature verifies X-GHL-Signature when the header is there at all, and only then
// falls back to X-WH-Signature (API-CONTRACTS.md §6.1). A failed Ed25519 check is final: a
// valid RSA signature beside it would make the retired key the weakest link of every
// request, and an Ed25519 signature that fails is a forgery or a damaged body.
func (v *LeadConnectorVerifier) checkSignature(h http.Header, body []byte) error {
	const vendor = sources.LeadConnector
	if vals := h.Values(HeaderGHLSignature); len(vals) > 0 {
		sig, err := signature(vendor, vals, ed25519.SignatureSize)
		if err != nil {
			return err
		}
		if len(v.ed) == 0 {
			return reject(vendor, ReasonUnconfigured, "no Ed25519 key for %s", HeaderGHLSignature)
		}
		for _, k := range v.ed {
			if ed25519.Verify(k, body, sig) {
				return nil
			}
		}
		return reject(vendor, ReasonBadSignature, "%s does not verify", HeaderGHLSignature)
	}
	vals := h.Values(HeaderWHSignature)
	if len(vals) == 0 {
		return reject(vendor, ReasonMissingSignature, "neither %s nor %s", HeaderGHLSignature, HeaderWHSignature)
	}
	sig, err := signature(vendor, vals, 0)
	if err != nil {
		return err
	}
	if len(v.rsa) == 0 {
		return reject(vendor, ReasonUnconfigured, "%s is disabled", HeaderWHSignature)
	}
	digest := sha256.Sum256(body)
	for _, k := range v.rsa {
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil {
			return nil
		}
	}
	return reject(vendor, ReasonBadSignature, "%s does not verify", HeaderWHSignature)
}

// signature decodes the one base64 value of a signature header; size is its length in bytes,
// or 0 for any.
func signature(vendor string, vals []string, size int) ([]byte, error) {
	if len(vals) != 1 {
		return nil, reject(vendor, ReasonBadSignature, "%d signature headers", len(vals))
	}
	s := strings.TrimSpace(vals[0])
	if s == "" {
		return nil, reject(vendor, ReasonMissingSignature, "empty signature header")
	}
	sig, ok := decodeBase64(s)
	if !ok || len(sig) == 0 || size > 0 && len(sig) != size {
		return nil, reject(vendor, ReasonBadSignature, "signature is not base64 of the right length")
	}
	return sig, nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not: the documents say only
// "base64", and every variant decodes to the same bytes, which are what is verified.
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// ParseEd25519PublicKey reads a key as PEM ("PUBLIC KEY", PKIX), or as base64 of the raw
// 32 bytes or of the PKIX DER.
func ParseEd25519PublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		der = blk.Bytes
	} else {
		b, ok := decodeBase64(strings.Join(strings.Fields(s), ""))
		if !ok {
			return nil, errors.New("neither PEM nor base64")
		}
		if len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
		der = b
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return ek, nil
}

// ParseRSAPublicKey reads a PEM RSA key, PKIX ("PUBLIC KEY", as HighLevel publishes it) or
// PKCS #1 ("RSA PUBLIC KEY").
func ParseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	if blk.Type == "RSA PUBLIC KEY" {
		return x509.ParsePKCS1PublicKey(blk.Bytes)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA key", k)
	}
	return rk, nil
}

// lcType is what a LeadConnector event type means.
type lcType struct{ kind, op string }

// lcTypes are the types of vendor-docs/leadconnector/webhook-events/*.md (one file each).
// AppInstall.md and AppUninstall.md name the events AppInstall and AppUninstall, and their
// examples send "type": "INSTALL" and "UNINSTALL": both are read.
var lcTypes = map[string]lcType{
	"ContactCreate":    {KindContact, OpUpsert},
	"ContactUpdate":    {KindContact, OpUpsert},
	"ContactTagUpdate": {KindContact, OpUpsert},
	"ContactDelete":    {KindContact, OpDelete},

	"OpportunityCreate":              {KindOpportunity, OpUpsert},
	"OpportunityUpdate":              {KindOpportunity, OpUpsert},
	"OpportunityMonetaryValueUpdate": {KindOpportunity, OpUpsert},
	"OpportunityAssignedToUpdate":    {KindOpportunity, OpUpsert},
	"OpportunityStageUpdate":         {KindOpportunity, OpStage},
	"OpportunityStatusUpdate":        {KindOpportunity, OpStatus},
	"OpportunityDelete":              {KindOpportunity, OpDelete},

	"AppInstall":   {KindInstall, OpInstall},
	"INSTALL":      {KindInstall, OpInstall},
	"AppUninstall": {KindInstall, OpUninstall},
	"UNINSTALL":    {KindInstall, OpUninstall},

	"LocationCreate": {KindLocation, OpUpsert},
	"LocationUpdate": {KindLocation, OpUpsert},
}

// lcBody is what of a LeadConnector body the parser reads; Raw keeps all of it.
type lcBody struct {
	Type        sources.FlexString `json:"type"`
	LocationID  sources.FlexString `json:"locationId"`
	CompanyID   sources.FlexString `json:"companyId"`
	ID          sources.FlexString `json:"id"`
	Timestamp   sources.FlexString `json:"timestamp"`
	WebhookID   sources.FlexString `json:"webhookId"`
	DateUpdated json.RawMessage    `json:"dateUpdated"`
	UpdatedAt   json.RawMessage    `json:"updatedAt"`
}

// ParseLeadConnector reads a LeadConnector body: the record's fields at the top level, with
// type, locationId, timestamp and webhookId (webhook-events/*.md; WebhookAuthentication.md
// §1). It checks no signature (Verify does), and accepts a body without timestamp or
// webhookId (the documented examples have neither); Verify refuses those.
func ParseLeadConnector(body []byte) (Event, error) {
	const vendor = sources.LeadConnector
	if err := checkBody(vendor, body); err != nil {
		return Event{}, err
	}
	var b lcBody
	if err := decode(vendor, body, &b); err != nil {
		return Event{}, err
	}
	ev := Event{Vendor: vendor, Type: string(b.Type), Account: string(b.LocationID), Company: string(b.CompanyID),
		RecordID: string(b.ID), WebhookID: string(b.WebhookID), Raw: clone(bytes.TrimSpace(body))}
	if err := checkIDs(vendor, ev.Type, ev.Account, ev.Company, ev.RecordID, ev.WebhookID); err != nil {
		return Event{}, err
	}
	if b.Timestamp != "" {
		t, ok := parseTime(strings.TrimSpace(string(b.Timestamp)))
		if !ok {
			return Event{}, reject(vendor, ReasonMalformed, "timestamp is not a time")
		}
		ev.OccurredAt = t
	}
	ev.VendorUpdatedAt = latest(text(b.DateUpdated), text(b.UpdatedAt))
	t, known := lcTypes[ev.Type]
	if !known {
		ev.Op = OpIgnore
		return ev, nil
	}
	ev.Kind, ev.Op = t.kind, t.op
	switch t.kind {
	case KindContact, KindOpportunity:
		if ev.Account == "" || ev.RecordID == "" {
			return Event{}, reject(vendor, ReasonMalformed, "%s without locationId or id", ev.Type)
		}
		if t.kind == KindContact {
			ev.Raw = nullMembers(bytes.TrimSpace(body), "type")
		}
	case KindInstall:
		// An agency-level install names the company only (AppInstall.md, AppUninstall.md).
		ev.RecordID = cmp.Or(ev.Account, ev.Company)
		if ev.RecordID == "" {
			return Event{}, reject(vendor, ReasonMalformed, "%s without locationId or companyId", ev.Type)
		}
	case KindLocation:
		// The location is the record: its id is "id" (LocationCreate.md, LocationUpdate.md).
		ev.Account = ev.RecordID
		if ev.RecordID == "" {
			return Event{}, reject(vendor, ReasonMalformed, "%s without id", ev.Type)
		}
	}
	return ev, nil
}

// GenerateSandboxKeyPair makes the Ed25519 pair a sandbox vendor signs its LeadConnector
// deliveries with; the public half goes into leadsync's Ed25519Keys.
func GenerateSandboxKeyPair() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// SignGHL is the X-GHL-Signature value of body: its Ed25519 signature, base64.
func SignGHL(priv ed25519.PrivateKey, body []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, body))
}

// SignWH is the X-WH-Signature value of body: its RSA-SHA256 PKCS #1 v1.5 signature, base64,
// for a sandbox that plays a sender from before 2026-07-01.
func SignWH(priv *rsa.PrivateKey, body []byte) (string, error) {
	digest := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("webhook: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// MarshalPublicKey is pub as PEM (PKIX "PUBLIC KEY"), the form the configuration takes.
func MarshalPublicKey(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("webhook: marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// MarshalEd25519PrivateKey is priv as PEM (PKCS #8 "PRIVATE KEY"), for a sandbox to keep.
func MarshalEd25519PrivateKey(priv ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("webhook: marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// ParseEd25519PrivateKey reads what MarshalEd25519PrivateKey wrote.
func ParseEd25519PrivateKey(s string) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if blk == nil {
		return nil, errors.New("webhook: private key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("webhook: private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("webhook: private key is a %T, not Ed25519", k)
	}
	return ek, nil
}
