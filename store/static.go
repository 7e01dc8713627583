package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

// StaticToken describes one static token of a connection: a HighLevel Private Integration
// Token (one per location) or an LACRM API key. The token itself stays in the
// configuration's secret and is read again on every use, so a rotated secret is picked up
// without a restart; the store keeps only the fact that the vendor refused a token.
type StaticToken struct {
	Conn string
	// Credential names the token within the connection ("" for its only one; a location id).
	Credential string
	// Secret reads the token from its configured secret.
	Secret func() (string, error)
	// Where says where the secret is configured ("file /etc/leadsync/pit-abc"), for the fix.
	Where string
	// Fix says what the operator does ("rotate the Private Integration token in HighLevel").
	Fix string
}

// RotationError is a static token the vendor refused and that its secret still holds.
type RotationError struct {
	Conn, Credential, Where, Fix, Reason string
}

func (e *RotationError) Error() string {
	what := "the static token"
	if e.Credential != "" {
		what = "the static token of " + e.Credential
	}
	return fmt.Sprintf("connection %s: %s was refused by the vendor (%s): %s, then update the secret at %s",
		e.Conn, what, e.Reason, e.Fix, e.Where)
}

// Unwrap makes a RotationError a sources.ErrNeedsRotation.
func (e *RotationError) Unwrap() error { return sources.ErrNeedsRotation }

// fingerprint tells tokens apart without keeping them: a prefix of the SHA-256 of a random
// token reveals nothing of it.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// Static hands out a static token as sources.Credentials. Token reads the secret; when the
// vendor has refused the very token it holds (Invalidate, after a 401 or LACRM's "Invalid
// credentials"), it answers a *RotationError instead, until the secret holds another token.
// The refusal is recorded in the store, so `leadsync status`, `auth status` and /readyz of
// every process see it.
func (s *Store) Static(t StaticToken) sources.Credentials { return &staticCreds{s: s, t: t} }

type staticCreds struct {
	s *Store
	t StaticToken
}

func (c *staticCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	tok, err := c.t.Secret()
	if err != nil {
		return nil, fmt.Errorf("connection %s: read the static token: %w", c.t.Conn, err)
	}
	fp := fingerprint(tok)
	var stored, reason string
	err = c.s.db.sql.QueryRowContext(ctx, c.s.db.q(`SELECT fingerprint, reason FROM {static}
WHERE connection = ? AND credential = ?`), c.t.Conn, c.t.Credential).Scan(&stored, &reason)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("store: read static token state of %s: %w", c.t.Conn, c.s.db.lockErr(err))
	case stored == fp:
		return nil, &RotationError{Conn: c.t.Conn, Credential: c.t.Credential, Where: c.t.Where, Fix: c.t.Fix, Reason: reason}
	default:
		// The secret holds another token: the operator rotated it. Try it.
		if _, err := c.s.db.sql.ExecContext(ctx, c.s.db.q(`DELETE FROM {static}
WHERE connection = ? AND credential = ? AND fingerprint = ?`), c.t.Conn, c.t.Credential, stored); err != nil {
			return nil, fmt.Errorf("store: clear static token state of %s: %w", c.t.Conn, c.s.db.lockErr(err))
		}
		c.s.log.Info("store: the static token's secret changed; trying the new token",
			slog.String("connection", c.t.Conn), slog.String("credential", c.t.Credential))
	}
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer"}, nil
}

func (c *staticCreds) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.s.db.sql.ExecContext(ctx, c.s.db.q(`INSERT INTO {static}
    (connection, credential, fingerprint, secret, reason, fix, rejected_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (connection, credential) DO UPDATE SET
    fingerprint = excluded.fingerprint, secret = excluded.secret, reason = excluded.reason,
    fix = excluded.fix, rejected_at_ms = excluded.rejected_at_ms`),
		c.t.Conn, c.t.Credential, fingerprint(tok.AccessToken), c.t.Where, "revoked, expired or invalid",
		c.t.Fix, c.s.now().UnixMilli())
	if err != nil {
		// The in-flight call still ends in a RotationError through the vendor's next refusal.
		c.s.log.Warn("store: could not record a refused static token", slog.String("connection", c.t.Conn),
			slog.String("error", c.s.db.lockErr(err).Error()))
		return
	}
	c.s.log.Warn("store: the vendor refused a static token; the connection needs a rotation",
		slog.String("connection", c.t.Conn), slog.String("credential", c.t.Credential), slog.String("fix", c.t.Fix))
}

// StaticRejection is a refused static token, for status and /readyz.
type StaticRejection struct {
	Connection string    `json:"connection"`
	Credential string    `json:"credential,omitempty"`
	Secret     string    `json:"secret"` // where the secret is configured
	Reason     string    `json:"reason"`
	Fix        string    `json:"fix"`
	RejectedAt time.Time `json:"rejected_at"`
}

// StaticRejections lists the static tokens the vendors refused and that no new token has
// replaced yet (as far as the store knows: a rotated secret clears its row at its next use).
func (s *Store) StaticRejections(ctx context.Context) ([]StaticRejection, error) {
	rows, err := s.db.sql.QueryContext(ctx, s.db.q(`SELECT connection, credential, secret, reason, fix, rejected_at_ms
FROM {static} ORDER BY connection, credential`))
	if err != nil {
		return nil, fmt.Errorf("store: static token state: %w", s.db.lockErr(err))
	}
	defer rows.Close()
	var out []StaticRejection
	for rows.Next() {
		var r StaticRejection
		var at int64
		if err := rows.Scan(&r.Connection, &r.Credential, &r.Secret, &r.Reason, &r.Fix, &at); err != nil {
			return nil, fmt.Errorf("store: static token state: %w", err)
		}
		r.RejectedAt = time.UnixMilli(at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}
