package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
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
	if rec, err, ok := s.pendingGrant(conn); ok {
		if err != nil {
			return nil, err
		}
		return rec.token(), nil
	}
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
	if rec, err, ok := s.pendingGrant(conn); ok {
		return rec, err // a refresh that just finished left its pair in memory
	}
	s.rotate.RLock()
	defer s.rotate.RUnlock()

	rec, intent, err := s.claim(ctx, conn)
	if err != nil || intent == "" {
		return rec, err
	}
	release := &pendingWrite{prev: rec, intent: intent}

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
			release.reauth = reason
			s.log.Error("grant needs re-authorization; not refreshing it again until `leadsync auth login`",
				slog.String("connection", conn), slog.String("reason", reason))
			s.write(ctx, conn, release)
			return nil, &reauthError{conn: conn, reason: reason}
		}
		s.setCooldown(conn)
		msg := sanitize(err.Error(), rec.Refresh.Reveal(), rec.Access.Reveal())
		s.log.Warn("token refresh failed; refresh token kept", slog.String("connection", conn), slog.String("error", msg))
		s.write(ctx, conn, release)
		return nil, &refreshError{conn: conn, msg: msg, ctxErr: ctxErr(err)}
	}

	next := s.rotated(rec, tok, s.now())
	if !s.write(ctx, conn, &pendingWrite{prev: rec, intent: intent, next: next}) {
		return nil, &refreshError{conn: conn, msg: "the grant was replaced (a new login?) during the refresh; its result was discarded"}
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

// claim takes conn for a refresh (step 1 of the package doc). It returns the grant and, when
// a refresh is due, the intent it committed on the row; with no intent the grant is fresh.
func (s *Store) claim(ctx context.Context, conn string) (*grantRecord, string, error) {
	deadline := time.Now().Add(s.db.lockTimeout)
	poll := 20 * time.Millisecond
	takeOver, waited := "", false
	for {
		rec, intent, foreign, err := s.tryClaim(ctx, conn, takeOver)
		if err != nil || foreign == "" {
			s.forgetSeen(conn)
			return rec, intent, err
		}
		o, _ := ownerOf(foreign)
		if o.gone(s.me) || s.seenFor(conn, foreign) >= s.callTimeout+intentSlack+foreignWriteGrace {
			// Its owner died during a refresh (or, on another host, has not written for far
			// longer than a live one takes). Had it the new pair, a recovery file of this
			// state directory must win over the stored (then spent) refresh token.
			if err := s.applyRecovery(ctx); err != nil {
				return nil, "", &refreshError{conn: conn, msg: err.Error()}
			}
			takeOver = foreign
			continue
		}
		age := s.now().Sub(rec.RotatingSince)
		if age >= s.callTimeout+intentSlack || !time.Now().Before(deadline) {
			return nil, "", &refreshError{conn: conn, msg: fmt.Sprintf("the token pair rotated by process %s at %s is "+
				"not yet durable, so the stored refresh token may be spent: not refreshing with it. This clears when that "+
				"process's write lands or it restarts; if it stays for another %v, this process takes the refresh over",
				foreign, rec.RotatingSince.UTC().Format(time.RFC3339), foreignWriteGrace)}
		}
		if !waited {
			waited = true
			s.log.Debug("waiting for another process's refresh of the grant", slog.String("connection", conn),
				slog.String("process", foreign))
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
			return nil, "", &refreshError{conn: conn, msg: "the token store is shutting down"}
		}
		poll = min(2*poll, 500*time.Millisecond)
	}
}

// seenFor is how long this Store has been reading intent on conn's row, unchanged.
func (s *Store) seenFor(conn, intent string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[conn].intent != intent {
		s.seen[conn] = seenIntent{intent: intent, since: s.now()}
	}
	return s.now().Sub(s.seen[conn].since)
}

func (s *Store) forgetSeen(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.seen, conn)
}

// tryClaim is one attempt of claim. foreign names another process's intent that stopped
// it; takeOver is the intent of a process that is gone, which it may replace.
func (s *Store) tryClaim(ctx context.Context, conn string, takeOver string) (rec *grantRecord, intent, foreign string, err error) {
	tx, release, err := s.db.begin(ctx)
	if err != nil {
		return nil, "", "", &refreshError{conn: conn, msg: err.Error(), ctxErr: ctxErr(err)}
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	rec, err = s.loadGrant(ctx, tx, conn, true)
	if err != nil {
		if errors.Is(err, ErrLockTimeout) {
			return nil, "", "", &refreshError{conn: conn, msg: err.Error()}
		}
		return nil, "", "", err
	}
	if rec.NeedsReauth {
		return nil, "", "", &reauthError{conn: conn, reason: rec.Reason}
	}
	now := s.now()
	if !s.isInvalid(conn, rec.Access.Reveal()) && rec.fresh(now, s.margin) {
		return rec, "", "", nil // another goroutine or process refreshed while we waited
	}
	if rec.RotatingBy != "" {
		o, ok := ownerOf(rec.RotatingBy)
		switch {
		case ok && o == s.me: // a release of ours not written yet: this claim replaces it
		case takeOver != "" && rec.RotatingBy == takeOver:
			s.log.Warn("taking over the refresh of a grant from a process that exited during one, or that has not "+
				"written it for far longer than a live process takes; if the vendor had rotated the pair by then, this "+
				"refresh gets invalid_grant", slog.String("connection", conn), slog.String("process", rec.RotatingBy))
		default:
			return rec, "", rec.RotatingBy, nil
		}
	}
	if rec.Refresh == "" {
		return nil, "", "", s.markReauth(ctx, tx, rec, "the grant has no refresh token")
	}
	intent = s.me.String() + "#" + strconv.FormatUint(s.intents.Add(1), 10)
	_, err = tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET rotating_by = ?, rotating_since_ms = ? WHERE connection = ? AND version = ?`),
		intent, now.UnixMilli(), conn, rec.Version)
	if err == nil {
		err = s.db.commit(tx)
	}
	if err != nil {
		// Nothing was sent: the refresh token is as good as before.
		return nil, "", "", &refreshError{conn: conn, msg: "could not record the refresh in the token store, so the " +
			"vendor was not called: " + s.db.lockErr(err).Error(), ctxErr: ctxErr(err)}
	}
	rec.RotatingBy, rec.RotatingSince = intent, now
	return rec, intent, "", nil
}

// rotated is rec after a refresh returned tok.
func (s *Store) rotated(rec *grantRecord, tok *oauth2.Token, now time.Time) *grantRecord {
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
	next.RotatingBy, next.RotatingSince = "", time.Time{}
	if tok.TokenType != "" {
		next.TokenType = tok.TokenType
	}
	if tok.RefreshToken != "" && tok.RefreshToken != rec.Refresh.Reveal() {
		next.Refresh, next.PrevRefresh, next.RotatedAt = Secret(tok.RefreshToken), rec.Refresh, now
	}
	return &next
}

// markReauth records the terminal state and commits it.
func (s *Store) markReauth(ctx context.Context, tx *sql.Tx, rec *grantRecord, reason string) error {
	_, err := tx.ExecContext(ctx, s.db.q(`UPDATE {grants} SET needs_reauth = TRUE, reauth_reason = ?, updated_at_ms = ?
		WHERE connection = ? AND version = ?`), reason, s.now().UnixMilli(), rec.Conn, rec.Version)
	if err == nil {
		err = s.db.commit(tx)
	}
	s.log.Error("grant needs re-authorization; not refreshing it again until `leadsync auth login`",
		slog.String("connection", rec.Conn), slog.String("reason", reason))
	if err != nil {
		s.log.Error("could not record needs_reauth", slog.String("connection", rec.Conn), slog.String("error", err.Error()))
	}
	return &reauthError{conn: rec.Conn, reason: reason}
}
