package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/sources"
)

// Refresher spends a refresh token at the vendor: exactly one HTTP request, no retries.
// A rejected token is an *oauth2.RetrieveError with ErrorCode "invalid_grant" (terminal);
// any other error is transient and the refresh token is kept.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// RefresherFunc adapts a function to Refresher.
type RefresherFunc func(ctx context.Context, refreshToken string) (*oauth2.Token, error)

// Refresh calls f.
func (f RefresherFunc) Refresh(ctx context.Context, rt string) (*oauth2.Token, error) {
	return f(ctx, rt)
}

// Tokens gives a source the credentials of connection conn, refreshed with r.
func (s *Store) Tokens(conn string, r Refresher) sources.Tokens {
	return &connTokens{s: s, conn: conn, r: r}
}

type connTokens struct {
	s    *Store
	conn string
	r    Refresher
}

func (t *connTokens) Grant() sources.Credentials { return &grantCreds{t} }

func (t *connTokens) Account(accountID string, mint sources.Minter) sources.Credentials {
	return &accountCreds{t: t, acct: accountID, mint: mint}
}

func (t *connTokens) String() string { return "store.Tokens(" + t.conn + ")" }

// TokenSource adapts credentials to an oauth2.TokenSource (for oauth2.NewClient and the
// like); ctx bounds each Token call.
func TokenSource(ctx context.Context, c sources.Credentials) oauth2.TokenSource {
	return tokenSource{ctx: ctx, c: c}
}

type tokenSource struct {
	ctx context.Context
	c   sources.Credentials
}

func (ts tokenSource) Token() (*oauth2.Token, error) { return ts.c.Token(ts.ctx) }

// --- invalidation marks and cooldowns (in memory, this process only) ---

func digest(access string) [32]byte { return sha256.Sum256([]byte(access)) }

func (s *Store) markInvalid(key, access string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid[key] = digest(access)
}

func (s *Store) isInvalid(key, access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.invalid[key]
	return ok && d == digest(access)
}

// clearMarks forgets a grant's invalidation and cooldown; all also forgets its accounts'.
func (s *Store) clearMarks(conn string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.invalid, conn)
	delete(s.cooldown, conn)
	if all {
		for k := range s.invalid {
			if strings.HasPrefix(k, conn+"\x00") {
				delete(s.invalid, k)
			}
		}
	}
}

func (s *Store) coolingDown(conn string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.cooldown[conn])
}

func (s *Store) setCooldown(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cooldown[conn] = s.now().Add(failureCooldown)
}

// --- grant credentials ---

type grantCreds struct{ t *connTokens }

func (g *grantCreds) String() string { return "store.Grant(" + g.t.conn + ")" }

// Invalidate records that an API rejected tok: the next Token refreshes, unless the stored
// token already differs from tok (someone refreshed meanwhile).
func (g *grantCreds) Invalidate(tok *oauth2.Token) {
	if tok != nil && tok.AccessToken != "" {
		g.t.s.markInvalid(g.t.conn, tok.AccessToken)
	}
}

// Token returns the grant's access token, refreshing it first when it is within the
// refresh margin of expiry or was invalidated.
func (g *grantCreds) Token(ctx context.Context) (*oauth2.Token, error) {
	s, conn := g.t.s, g.t.conn
	rec, err := s.readGrant(ctx, conn)
	if err != nil {
		return nil, err
	}
	if rec.NeedsReauth {
		return nil, &reauthError{conn: conn, reason: rec.Reason}
	}
	now := s.now()
	invalid := s.isInvalid(conn, rec.Access.Reveal())
	if !invalid && (rec.fresh(now, s.margin) || (rec.usable(now) && s.coolingDown(conn, now))) {
		return rec.token(), nil
	}
	// The refresh runs detached from ctx: abandoning it halfway could lose a rotated
	// token. It is bounded by LockTimeout and TokenCallTimeout instead; ctx only bounds
	// how long this caller waits for it.
	ch := s.grantFlight.DoChan(conn, func() (any, error) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		return s.refreshGrant(context.WithoutCancel(ctx), conn, g.t.r)
	})
	select {
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(*grantRecord).token(), nil
		}
		var re *refreshError
		if errors.As(res.Err, &re) && !invalid && rec.usable(s.now()) {
			// Refreshing ahead of expiry failed, but the current token still works.
			s.log.Warn("refresh ahead of expiry failed; using the current token until it expires",
				slog.String("connection", conn), slog.Time("expiry", rec.Expiry), slog.String("error", res.Err.Error()))
			return rec.token(), nil
		}
		return nil, res.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("store: waiting for the refresh of %q: %w", conn, ctx.Err())
	}
}

// readGrant reads the grant without locking.
func (s *Store) readGrant(ctx context.Context, conn string) (*grantRecord, error) {
	s.rotate.RLock()
	defer s.rotate.RUnlock()
	return s.loadGrant(ctx, s.db.sql, conn, false)
}

// refreshGrant is the refresh protocol for one grant; see the package doc.
func (s *Store) refreshGrant(ctx context.Context, conn string, r Refresher) (_ *grantRecord, err error) {
	attempted := false // the vendor was asked: report the outcome, whatever happens after
	defer func() {
		if attempted && s.onRefresh != nil {
			s.onRefresh(conn, err)
		}
	}()
	s.rotate.RLock()
	defer s.rotate.RUnlock()

	tx, releaseLock, err := s.db.begin(ctx)
	if err != nil {
		return nil, &refreshError{conn: conn, msg: err.Error(), ctxErr: ctxErr(err)}
	}
	var once sync.Once
	release := func() { once.Do(releaseLock) }
	defer release()
	defer func() { _ = tx.Rollback() }()

	rec, err := s.loadGrant(ctx, tx, conn, true)
	if err != nil {
		if errors.Is(err, ErrLockTimeout) {
			return nil, &refreshError{conn: conn, msg: err.Error()}
		}
		return nil, err
	}
	if rec.NeedsReauth {
		return nil, &reauthError{conn: conn, reason: rec.Reason}
	}
	now := s.now()
	if !s.isInvalid(conn, rec.Access.Reveal()) && rec.fresh(now, s.margin) {
		return rec, nil // another goroutine or process refreshed while we waited for the lock
	}
	if rec.Refresh == "" {
		return nil, s.markReauth(ctx, tx, rec, "the grant has no refresh token")
	}

	callCtx, cancel := context.WithTimeout(ctx, s.callTimeout)
	attempted = true
	tok, err := r.Refresh(callCtx, rec.Refresh.Reveal())
	cancel()
	if err == nil && (tok == nil || tok.AccessToken == "") {
		err = errors.New("the token endpoint returned no access token")
	}
	if err != nil {
		var rerr *oauth2.RetrieveError
		if errors.As(err, &rerr) && rerr.ErrorCode == "invalid_grant" {
			desc := sanitize(rerr.ErrorDescription, rec.Refresh.Reveal(), rec.Access.Reveal())
			reason := "the vendor rejected the refresh token (invalid_grant"
			if desc != "" {
				reason += ": " + desc
			}
			reason += "); the grant was revoked or expired, or its refresh token was already spent (e.g. by a process killed after a refresh)"
			return nil, s.markReauth(ctx, tx, rec, reason)
		}
		_ = tx.Rollback()
		s.setCooldown(conn)
		msg := sanitize(err.Error(), rec.Refresh.Reveal(), rec.Access.Reveal())
		s.log.Warn("token refresh failed; refresh token kept", slog.String("connection", conn), slog.String("error", msg))
		return nil, &refreshError{conn: conn, msg: msg, ctxErr: ctxErr(err)}
	}

	next, err := s.rotated(rec, tok, now)
	if err == nil {
		err = s.casGrant(ctx, tx, rec, next, now)
		if err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		// The vendor has already rotated: the old refresh token is spent. Try to keep the
		// new pair with a fresh transaction before giving up on it.
		s.log.Error("writing the rotated token failed; retrying", slog.String("connection", conn), slog.String("error", err.Error()))
		_ = tx.Rollback()
		release() // persistRotated takes the lock again
		if err = s.persistRotated(ctx, rec, next, now); err != nil {
			s.log.Error("LOST a rotated refresh token: the next refresh will fail with invalid_grant and the "+
				"connection will need `leadsync auth login`", slog.String("connection", conn), slog.String("error", err.Error()))
			return nil, &refreshError{conn: conn, msg: "could not store the rotated token: " + err.Error()}
		}
	}
	s.clearMarks(conn, false)
	s.log.Info("refreshed grant", slog.String("connection", conn), slog.Int64("version", next.Version),
		slog.Time("expiry", next.Expiry))
	return next, nil
}

func ctxErr(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return context.Canceled
	}
	return nil
}

// rotated is rec after a refresh returned tok.
func (s *Store) rotated(rec *grantRecord, tok *oauth2.Token, now time.Time) (*grantRecord, error) {
	next := *rec
	next.Meta = maps.Clone(rec.Meta)
	if next.Meta == nil {
		next.Meta = map[string]string{}
	}
	maps.Copy(next.Meta, stringExtras(tok))
	if next.Meta["scope"] != "" {
		next.Scopes = scopesOf(next.Meta)
	}
	next.Access, next.Expiry, next.Version, next.LastRefreshAt = Secret(tok.AccessToken), tok.Expiry, rec.Version+1, now
	if tok.TokenType != "" {
		next.TokenType = tok.TokenType
	}
	if tok.RefreshToken != "" && tok.RefreshToken != rec.Refresh.Reveal() {
		next.Refresh, next.PrevRefresh, next.RotatedAt = Secret(tok.RefreshToken), rec.Refresh, now
	}
	return &next, nil
}

// casGrant writes next over rec, only if the row still holds rec's version and refresh
// token. Under the lock that always holds; the check turns a broken lock into an error
// instead of a silent overwrite.
func (s *Store) casGrant(ctx context.Context, tx execer, rec, next *grantRecord, now time.Time) error {
	seal := s.seal.Load()
	access, err := seal.seal(next.Access.Reveal(), grantAD(next.Conn, "access"))
	if err != nil {
		return err
	}
	refresh, err := seal.seal(next.Refresh.Reveal(), grantAD(next.Conn, "refresh"))
	if err != nil {
		return err
	}
	prev, err := seal.seal(next.PrevRefresh.Reveal(), grantAD(next.Conn, "prev_refresh"))
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(next.Meta)
	res, err := tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET access_token = ?, refresh_token = ?, prev_refresh_token = ?,
		expiry_ms = ?, token_type = ?, meta = ?, scopes = ?, version = ?, last_refresh_at_ms = ?, rotated_at_ms = ?,
		updated_at_ms = ? WHERE connection = ? AND version = ? AND refresh_token = ?`),
		access, refresh, prev, msOrNull(next.Expiry), next.TokenType, string(meta), strings.Join(next.Scopes, " "),
		next.Version, msOrNull(next.LastRefreshAt), msOrNull(next.RotatedAt), now.UnixMilli(),
		rec.Conn, rec.Version, rec.refreshCT)
	if err != nil {
		return fmt.Errorf("store: write refreshed grant %q: %w", rec.Conn, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("store: write refreshed grant %q: compare-and-swap failed (row changed under the lock)", rec.Conn)
	}
	next.refreshCT = refresh
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// persistRotated retries the compare-and-swap in its own transactions.
func (s *Store) persistRotated(ctx context.Context, rec, next *grantRecord, now time.Time) error {
	var err error
	for range 3 {
		var (
			tx      *sql.Tx
			release func()
		)
		tx, release, err = s.db.begin(ctx)
		if err != nil {
			continue
		}
		if err = s.casGrant(ctx, tx, rec, next, now); err == nil {
			err = tx.Commit()
		}
		_ = tx.Rollback()
		release()
		if err == nil {
			return nil
		}
	}
	return err
}

// markReauth records the terminal state and commits it.
func (s *Store) markReauth(ctx context.Context, tx *sql.Tx, rec *grantRecord, reason string) error {
	_, err := tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET needs_reauth = TRUE, reauth_reason = ?, updated_at_ms = ?
		WHERE connection = ? AND version = ?`), reason, s.now().UnixMilli(), rec.Conn, rec.Version)
	if err == nil {
		err = tx.Commit()
	}
	s.log.Error("grant needs re-authorization; not refreshing it again until `leadsync auth login`",
		slog.String("connection", rec.Conn), slog.String("reason", reason))
	if err != nil {
		s.log.Error("could not record needs_reauth", slog.String("connection", rec.Conn), slog.String("error", err.Error()))
	}
	return &reauthError{conn: rec.Conn, reason: reason}
}
