package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

// accountCreds are a per-account token minted from the grant (LeadConnector location
// tokens). Minting is not a single-use exchange, so it needs no cross-process lock: a
// per-(connection, account) singleflight keeps this process from minting twice at once,
// and the result is cached in the store for every process until near expiry.
type accountCreds struct {
	t    *connTokens
	acct string
	mint sources.Minter
}

func (a *accountCreds) key() string { return a.t.conn + "\x00" + a.acct }

func (a *accountCreds) String() string { return "store.Account(" + a.t.conn + "/" + a.acct + ")" }

// Invalidate drops tok from the cache: the next Token mints a new one unless another caller
// already replaced it.
func (a *accountCreds) Invalidate(tok *oauth2.Token) {
	if tok != nil && tok.AccessToken != "" {
		a.t.s.markInvalid(a.key(), tok.AccessToken)
	}
}

// Token returns the cached account token, minting a new one when missing, near expiry, or
// invalidated.
func (a *accountCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	s := a.t.s
	rec, err := s.readAccount(ctx, a.t.conn, a.acct)
	if err != nil {
		return nil, err
	}
	if rec != nil && !s.isInvalid(a.key(), rec.access.Reveal()) && rec.fresh(s.now(), s.margin) {
		return rec.token(), nil
	}
	ch := s.accountFlight.DoChan(a.key(), func() (any, error) {
		// Detached like a grant refresh, so one impatient caller does not fail the others.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.db.lockTimeout+2*s.callTimeout)
		defer cancel()
		return s.mintAccount(mctx, a)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*accountRecord).token(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("store: waiting for the %s token of %q: %w", a.acct, a.t.conn, ctx.Err())
	}
}

func (s *Store) mintAccount(ctx context.Context, a *accountCreds) (*accountRecord, error) {
	conn := a.t.conn
	if rec, err := s.readAccount(ctx, conn, a.acct); err != nil {
		return nil, err
	} else if rec != nil && !s.isInvalid(a.key(), rec.access.Reveal()) && rec.fresh(s.now(), s.margin) {
		return rec, nil // minted meanwhile by another goroutine or process
	}
	tok, err := a.mint(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: mint token for account %s of %q: %w", a.acct, conn, err)
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, fmt.Errorf("store: mint token for account %s of %q: no access token", a.acct, conn)
	}
	rec := &accountRecord{conn: conn, acct: a.acct, access: Secret(tok.AccessToken), tokenType: tok.TokenType,
		expiry: tok.Expiry, mintedAt: s.now(), meta: stringExtras(tok)}
	if err := s.writeAccount(ctx, rec); err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.invalid, a.key())
	s.mu.Unlock()
	s.log.Debug("minted account token", slog.String("connection", conn), slog.String("account", a.acct),
		slog.Time("expiry", tok.Expiry))
	return rec, nil
}

// accountRecord is an account_tokens row, decrypted.
type accountRecord struct {
	conn, acct string
	access     Secret
	tokenType  string
	expiry     time.Time
	mintedAt   time.Time
	meta       map[string]string
}

func (r *accountRecord) Format(f fmt.State, _ rune) { fmt.Fprint(f, r.String()) }
func (r *accountRecord) String() string {
	return fmt.Sprintf("account_token{conn=%s account=%s expiry=%s access=%s}", r.conn, r.acct,
		r.expiry.Format(time.RFC3339), r.access)
}
func (r *accountRecord) GoString() string     { return r.String() }
func (r *accountRecord) LogValue() slog.Value { return slog.StringValue(r.String()) }

func (r *accountRecord) fresh(now time.Time, margin time.Duration) bool {
	at := refreshAt(r.expiry, r.mintedAt, true, margin)
	return at.IsZero() || now.Before(at)
}

func (r *accountRecord) token() *oauth2.Token {
	return tokenWith(r.access, r.tokenType, r.expiry, r.meta)
}

// readAccount returns the cached token, or nil when there is none.
func (s *Store) readAccount(ctx context.Context, conn, acct string) (*accountRecord, error) {
	s.rotate.RLock()
	defer s.rotate.RUnlock()
	var (
		ct             []byte
		meta           string
		expiry, minted sql.NullInt64
		rec            = &accountRecord{conn: conn, acct: acct}
	)
	err := s.db.sql.QueryRowContext(ctx, s.db.q(`SELECT access_token, token_type, meta, expiry_ms, minted_at_ms FROM {accounts}
		WHERE connection = ? AND account_id = ?`), conn, acct).Scan(&ct, &rec.tokenType, &meta, &expiry, &minted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read %s token of %q: %w", acct, conn, err)
	}
	access, err := s.seal.Load().open(ct, accountAD(conn, acct))
	if err != nil {
		return nil, err
	}
	rec.access, rec.expiry, rec.mintedAt = Secret(access), msTime(expiry), msTime(minted)
	_ = json.Unmarshal([]byte(meta), &rec.meta)
	return rec, nil
}

func (s *Store) writeAccount(ctx context.Context, rec *accountRecord) error {
	s.rotate.RLock()
	defer s.rotate.RUnlock()
	ct, err := s.seal.Load().seal(rec.access.Reveal(), accountAD(rec.conn, rec.acct))
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(rec.meta)
	tx, release, err := s.db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: save %s token of %q: %w", rec.acct, rec.conn, err)
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	// Only while the grant exists: a token minted from a grant that was just forgotten or
	// replaced must not outlive it.
	_, err = tx.ExecContext(ctx, s.db.q(`INSERT INTO {accounts} (connection, account_id, token_type, meta, access_token,
		expiry_ms, minted_at_ms) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM {grants} WHERE connection = ?)
		ON CONFLICT (connection, account_id) DO UPDATE SET token_type = excluded.token_type, meta = excluded.meta,
		access_token = excluded.access_token, expiry_ms = excluded.expiry_ms, minted_at_ms = excluded.minted_at_ms`),
		rec.conn, rec.acct, rec.tokenType, string(meta), ct, msOrNull(rec.expiry), rec.mintedAt.UnixMilli(), rec.conn)
	if err != nil {
		return fmt.Errorf("store: save %s token of %q: %w", rec.acct, rec.conn, s.db.lockErr(err))
	}
	if err := s.db.commit(tx); err != nil {
		return fmt.Errorf("store: save %s token of %q: %w", rec.acct, rec.conn, err)
	}
	return nil
}
