// Package store is leadsync's token store: OAuth grants and minted per-account tokens,
// encrypted at rest with AES-256-GCM, in a SQLite file or a PostgreSQL schema of their own
// (never next to the warehouse that analysts read).
//
// Its heart is the refresh protocol (DESIGN.md §4.2 and §4.7): vendors hand out single-use
// refresh tokens, and LACRM revokes the whole grant when one is presented twice. So, per
// grant, one refresher at a time across goroutines (singleflight) and processes:
//
//  1. Claim. Under the grant's lock (SQLite BEGIN IMMEDIATE, PostgreSQL SELECT ... FOR
//     UPDATE) the row is re-read; if a refresh is still due, this Store's rotation intent
//     (rotating_by, rotating_since_ms) is committed on it. No intent, no token request: a
//     store that cannot be written (disk full, server down) costs a transient failure and
//     nothing else. Another process that finds a foreign intent never refreshes with the
//     stored refresh token: it waits while the owner may still be in its token call
//     (TokenCallTimeout + 10 s), then fails transiently, until the intent is cleared.
//  2. Exactly one bounded token request, no transport retry.
//  3. Write the new pair and clear the intent, with a compare-and-swap on the claimed
//     version, refresh token and intent. If that write fails, the pair is kept in memory and
//     used at once (the spent refresh token is never sent again), and a goroutine of the
//     Store retries the write with backoff until it lands. Shutdown waits for it within its
//     deadline, then seals what is left into a recovery file that the next Open applies
//     (with the same compare-and-swap) before anything else.
//
// An intent whose owner died is taken over at once when that is provable: a process of this
// host (same boot) that has exited. Recovery files in RecoveryDir are applied first. If it
// died after the vendor rotated and before anything was saved, the refresh reports
// invalid_grant, the one unavoidable loss. An intent of a process on another host is taken
// over once this Store has read it, unchanged, for TokenCallTimeout + intentSlack +
// foreignWriteGrace: a live owner that reaches the database would have landed its write by
// then. `leadsync auth login` also replaces the grant and clears the intent.
//
// invalid_grant is terminal: the grant is marked needs_reauth and the vendor is not asked
// again until `leadsync auth login` saves a new one.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/leadsync/leadsync/sources"
)

// Defaults for Options.
const (
	DefaultRefreshMargin    = 5 * time.Minute
	DefaultTokenCallTimeout = 30 * time.Second
	MaxTokenCallTimeout     = 2 * time.Minute
	DefaultPostgresSchema   = "leadsync_tokens"
	// DefaultCloseTimeout is how long Close waits for rotated pairs not yet durable.
	DefaultCloseTimeout = 5 * time.Second
	// failureCooldown is how long a still-valid token is used as is after a failed
	// ahead-of-expiry refresh, so a vendor outage is not hammered by every API call.
	failureCooldown = 10 * time.Second
	// intentSlack is how much longer than TokenCallTimeout a foreign rotation intent may be
	// in flight: past it, its owner has its answer (or died), and waiting is pointless.
	intentSlack = 10 * time.Second
	// foreignWriteGrace is how long, past TokenCallTimeout + intentSlack, a foreign intent
	// this process cannot check the owner of (another host) may stay unchanged while this
	// process reads the database before it is taken over: an owner that is alive and reaches
	// the database retries its pending write every few seconds and would have landed it.
	foreignWriteGrace = 30 * time.Second
	// minRefreshInterval: a token a refresh or mint returned already expired is not renewed
	// again sooner than this, unless an API rejected it.
	minRefreshInterval = 10 * time.Second
)

// Options configure a Store. Zero values mean the defaults.
type Options struct {
	// Key is the 32-byte AES-256 key (see LoadKey). Required.
	Key []byte
	// Logger receives refresh events (never token values). Default: discard.
	Logger *slog.Logger
	// Clock tells the time for expiry decisions. Default: time.Now.
	Clock func() time.Time
	// RefreshMargin: tokens are refreshed this long before they expire, but never earlier
	// than half-way through their lifetime. Default 5 min.
	RefreshMargin time.Duration
	// TokenCallTimeout bounds one call to the vendor's token endpoint, during which the
	// grant's lock is held. Default 30 s, at most 2 min.
	TokenCallTimeout time.Duration
	// LockTimeout bounds the wait for another process's refresh of the same grant. It is
	// raised to at least TokenCallTimeout + 10 s, so a waiter outlasts a holder's token call.
	LockTimeout time.Duration
	// PostgresSchema is the PostgreSQL schema holding the tables. Default leadsync_tokens.
	PostgresSchema string
	// OnRefresh, if set, is called after every refresh attempt at the vendor (one token
	// request) with its outcome: nil; an error wrapping sources.ErrNeedsReauth when the
	// vendor rejected the grant (it is now marked needs_reauth); or a transient error
	// wrapping ErrRefreshFailed. For metrics: it must be quick and must not call the Store.
	OnRefresh func(conn string, err error)
	// RecoveryDir is where Shutdown seals the rotated pairs it could not write to the
	// database, and where Open looks for them. Set it to the state directory. Default: the
	// SQLite file's directory; none for PostgreSQL (a pair not written by then is lost).
	RecoveryDir string
}

// Store keeps the tokens. Safe for concurrent use by many goroutines and processes.
type Store struct {
	db          *db
	log         *slog.Logger
	now         func() time.Time
	margin      time.Duration
	callTimeout time.Duration
	onRefresh   func(conn string, err error)

	// rotate is held for writing by RotateKey, for reading by everything using the key.
	rotate sync.RWMutex
	seal   atomic.Pointer[sealer]

	inflight      sync.WaitGroup // refreshes in progress, awaited by Shutdown
	grantFlight   singleflight.Group
	accountFlight singleflight.Group

	me          owner
	intents     atomic.Uint64
	recoveryDir string
	recoveryMu  sync.Mutex      // serializes writes of this Store's recovery file
	closing     chan struct{}   // closed when Shutdown starts
	writers     sync.WaitGroup  // goroutines retrying pending writes
	stopWriters context.Context // cancelled at the Shutdown deadline
	stop        context.CancelFunc
	closeOnce   sync.Once
	closeErr    error

	mu sync.Mutex
	// invalid holds, per grant or account token, a digest of the access token an API
	// rejected (Invalidate); cooldown, per grant, when a failed refresh may be retried.
	invalid  map[string][32]byte
	cooldown map[string]time.Time
	// pending holds, per grant, what this Store still has to write after a refresh.
	pending map[string]*pendingWrite
	// seen holds, per grant, another process's intent and when this Store first read it
	// (for foreignWriteGrace).
	seen map[string]seenIntent
}

type seenIntent struct {
	intent string
	since  time.Time
}

// Open opens (creating and migrating as needed) the token store at url, in the grammar of
// internal/dburl: sqlite:///abs/path.db, sqlite://path/relative/to/the/working/directory.db,
// a bare absolute path, or postgres://... . A new SQLite file gets mode 0600. A store
// migrated by a newer leadsync is refused (ErrSchemaTooNew).
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	seal, err := newSealer(opts.Key)
	if err != nil {
		return nil, err
	}
	callTimeout := min(cmp.Or(opts.TokenCallTimeout, DefaultTokenCallTimeout), MaxTokenCallTimeout)
	lockTimeout := max(opts.LockTimeout, callTimeout+10*time.Second)
	log := cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))
	d, err := openDB(ctx, url, cmp.Or(opts.PostgresSchema, DefaultPostgresSchema), lockTimeout, log)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:          d,
		log:         log,
		now:         opts.Clock,
		margin:      cmp.Or(opts.RefreshMargin, DefaultRefreshMargin),
		callTimeout: callTimeout,
		onRefresh:   opts.OnRefresh,
		me:          self(),
		recoveryDir: opts.RecoveryDir,
		closing:     make(chan struct{}),
		invalid:     map[string][32]byte{},
		cooldown:    map[string]time.Time{},
		pending:     map[string]*pendingWrite{},
		seen:        map[string]seenIntent{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.recoveryDir == "" && d.dialect == dialectSQLite {
		s.recoveryDir = filepath.Dir(d.path)
	}
	s.stopWriters, s.stop = context.WithCancel(context.Background())
	s.seal.Store(seal)
	if err := s.checkKey(ctx); err != nil {
		d.sql.Close()
		return nil, err
	}
	// Before any refresh: a pair a previous run could only save to a file is the grant's
	// current one, and its predecessor is spent.
	if err := s.applyRecovery(ctx); err != nil {
		d.sql.Close()
		return nil, err
	}
	return s, nil
}

// Close is Shutdown with DefaultCloseTimeout.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCloseTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown waits for refreshes in flight (each bounded by TokenCallTimeout), then, until
// ctx ends, for the rotated pairs not yet durable (PendingRotations). What is still
// unwritten then is sealed into a recovery file in RecoveryDir, applied by the next Open.
// Then it closes the database. Later calls return the first call's result.
func (s *Store) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.inflight.Wait()
		done := make(chan struct{})
		go func() {
			s.writers.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
		}
		s.stop()
		<-done
		s.closeErr = errors.Join(s.saveRecovery(), s.db.sql.Close())
	})
	return s.closeErr
}

// checkKey verifies the key against the store's key check, creating it in a new store.
func (s *Store) checkKey(ctx context.Context) error {
	var ct []byte
	err := s.db.sql.QueryRowContext(ctx, s.db.q(`SELECT value FROM {meta} WHERE key = 'key_check'`)).Scan(&ct)
	if errors.Is(err, sql.ErrNoRows) {
		ct, err = s.seal.Load().seal(keyCheckPlain, keyCheckAD)
		if err != nil {
			return err
		}
		if _, err := s.db.sql.ExecContext(ctx, s.db.q(`INSERT INTO {meta} (key, value) VALUES ('key_check', ?) ON CONFLICT (key) DO NOTHING`), ct); err != nil {
			return fmt.Errorf("store: write key check: %w", s.db.lockErr(err))
		}
		// Another process may have won with its own key: check against what is stored.
		err = s.db.sql.QueryRowContext(ctx, s.db.q(`SELECT value FROM {meta} WHERE key = 'key_check'`)).Scan(&ct)
	}
	if err != nil {
		return fmt.Errorf("store: read key check: %w", err)
	}
	if pt, err := s.seal.Load().open(ct, keyCheckAD); err != nil || pt != keyCheckPlain {
		return fmt.Errorf("store: %w (check token_store.key_file or the token-key credential in $CREDENTIALS_DIRECTORY; a lost key means running `leadsync auth login` for every connection against a new store)", ErrKeyMismatch)
	}
	return nil
}

// ErrNoGrant means the connection has no saved grant.
var ErrNoGrant = errors.New("no saved grant")

func noGrantErr(conn string) error {
	return fmt.Errorf("store: connection %q has no saved token: run `leadsync auth login %s`: %w",
		conn, conn, errors.Join(ErrNoGrant, sources.ErrNeedsReauth))
}

// reauthError is the terminal state of a grant whose refresh token the vendor rejected.
type reauthError struct{ conn, reason string }

func (e *reauthError) Error() string {
	return fmt.Sprintf("store: connection %q needs re-authorization (%s): run `leadsync auth login %s`", e.conn, e.reason, e.conn)
}
func (e *reauthError) Unwrap() error { return sources.ErrNeedsReauth }

// ErrRefreshFailed marks a transient refresh failure: the refresh token was kept and a
// later call will try again.
var ErrRefreshFailed = errors.New("token refresh failed")

// refreshError is a transient refresh failure. Its message is sanitized; it unwraps to
// ErrRefreshFailed and the context error, never to the vendor's error (which may carry
// response bodies).
type refreshError struct {
	conn, msg string
	ctxErr    error
}

func (e *refreshError) Error() string {
	return fmt.Sprintf("store: refresh token of connection %q (kept, will retry): %s", e.conn, e.msg)
}
func (e *refreshError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{ErrRefreshFailed, e.ctxErr}
	}
	return []error{ErrRefreshFailed}
}

// grantRecord is a grants row with its token fields decrypted.
type grantRecord struct {
	Conn          string
	Subject       string
	Scopes        []string
	Meta          map[string]string
	TokenType     string
	Access        Secret
	Refresh       Secret
	PrevRefresh   Secret
	Expiry        time.Time
	Version       int64
	NeedsReauth   bool
	Reason        string
	LastRefreshAt time.Time
	RotatedAt     time.Time
	SavedAt       time.Time
	RotatingBy    string // the rotation intent on the row, "" when none
	RotatingSince time.Time
	refreshCT     []byte // stored ciphertext of Refresh, for the compare-and-swap
}

// Format keeps token values out of every fmt verb.
func (r *grantRecord) Format(f fmt.State, _ rune) { fmt.Fprint(f, r.String()) }
func (r *grantRecord) String() string {
	return fmt.Sprintf("grant{conn=%s version=%d expiry=%s needs_reauth=%t access=%s refresh=%s}",
		r.Conn, r.Version, r.Expiry.Format(time.RFC3339), r.NeedsReauth, r.Access, r.Refresh)
}
func (r *grantRecord) GoString() string     { return r.String() }
func (r *grantRecord) LogValue() slog.Value { return slog.StringValue(r.String()) }

// usable: the access token may be used now (not expired). fresh: no refresh is due yet.
func (r *grantRecord) usable(now time.Time) bool { return r.Expiry.IsZero() || now.Before(r.Expiry) }
func (r *grantRecord) fresh(now time.Time, margin time.Duration) bool {
	at := r.refreshAt(margin)
	return at.IsZero() || now.Before(at)
}

func (r *grantRecord) refreshAt(margin time.Duration) time.Time {
	obtained := r.LastRefreshAt
	if obtained.IsZero() {
		obtained = r.SavedAt
	}
	return refreshAt(r.Expiry, obtained, !r.LastRefreshAt.IsZero(), margin)
}

// refreshAt is when a token obtained at obtained (renewed: by a refresh or a mint) and
// expiring at expiry is to be renewed: margin before it expires, the margin being at most
// half its lifetime so a token living less than the margin is not renewed on every use.
// Zero means never (no expiry).
func refreshAt(expiry, obtained time.Time, renewed bool, margin time.Duration) time.Time {
	switch {
	case expiry.IsZero():
		return time.Time{}
	case obtained.IsZero():
		return expiry.Add(-margin)
	}
	lifetime := expiry.Sub(obtained)
	if lifetime <= 0 {
		// Expired on arrival, or skewed clocks: renewing again at once would get the same.
		if renewed {
			return obtained.Add(minRefreshInterval)
		}
		return expiry
	}
	return expiry.Add(-min(margin, lifetime/2))
}

// token is what callers get: access token, type, expiry and the vendor metadata as extras.
// The refresh token is never handed out, so no one else can spend it.
func (r *grantRecord) token() *oauth2.Token {
	return tokenWith(r.Access, r.TokenType, r.Expiry, r.Meta)
}

func tokenWith(access Secret, typ string, expiry time.Time, meta map[string]string) *oauth2.Token {
	t := &oauth2.Token{AccessToken: access.Reveal(), TokenType: typ, Expiry: expiry}
	extra := make(map[string]any, len(meta))
	for k, v := range meta {
		extra[k] = v
	}
	return t.WithExtra(extra)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const grantColumns = `connection, subject, scopes, meta, token_type, access_token, refresh_token, prev_refresh_token,
	expiry_ms, version, needs_reauth, reauth_reason, last_refresh_at_ms, rotated_at_ms, saved_at_ms, rotating_by,
	rotating_since_ms`

// loadGrant reads and decrypts a grant; forUpdate locks its row (PostgreSQL; SQLite's
// transaction already holds the database write lock).
func (s *Store) loadGrant(ctx context.Context, q querier, conn string, forUpdate bool) (*grantRecord, error) {
	query := `SELECT ` + grantColumns + ` FROM {grants} WHERE connection = ?`
	if forUpdate && s.db.dialect == dialectPostgres {
		query += ` FOR UPDATE`
	}
	var (
		r                                 = &grantRecord{}
		scopes, meta                      string
		access, prev                      []byte
		expiry, last, rotAt, saved, since sql.NullInt64
	)
	err := q.QueryRowContext(ctx, s.db.q(query), conn).Scan(&r.Conn, &r.Subject, &scopes, &meta, &r.TokenType,
		&access, &r.refreshCT, &prev, &expiry, &r.Version, &r.NeedsReauth, &r.Reason, &last, &rotAt, &saved,
		&r.RotatingBy, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, noGrantErr(conn)
	}
	if err != nil {
		return nil, fmt.Errorf("store: read grant %q: %w", conn, s.db.lockErr(err))
	}
	r.Scopes = strings.Fields(scopes)
	if err := json.Unmarshal([]byte(meta), &r.Meta); err != nil {
		return nil, fmt.Errorf("store: grant %q metadata: %w", conn, err)
	}
	r.Expiry, r.LastRefreshAt, r.RotatedAt = msTime(expiry), msTime(last), msTime(rotAt)
	r.SavedAt, r.RotatingSince = msTime(saved), msTime(since)
	seal := s.seal.Load()
	var a, rt, p string
	if a, err = seal.open(access, grantAD(conn, "access")); err == nil {
		if rt, err = seal.open(r.refreshCT, grantAD(conn, "refresh")); err == nil {
			p, err = seal.open(prev, grantAD(conn, "prev_refresh"))
		}
	}
	if err != nil {
		return nil, err
	}
	r.Access, r.Refresh, r.PrevRefresh = Secret(a), Secret(rt), Secret(p)
	return r, nil
}

func msTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

func msOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// Save stores the grant a login produced for conn, replacing any previous one: it clears
// needs_reauth and drops the tokens minted from the old grant.
func (s *Store) Save(ctx context.Context, conn string, tok *oauth2.Token) error {
	if conn == "" {
		return errors.New("store: save: empty connection name")
	}
	if tok == nil || tok.AccessToken == "" {
		return fmt.Errorf("store: save %q: token has no access token", conn)
	}
	s.rotate.RLock()
	defer s.rotate.RUnlock()
	seal := s.seal.Load()
	meta := stringExtras(tok)
	metaJSON, _ := json.Marshal(meta)
	access, err := seal.seal(tok.AccessToken, grantAD(conn, "access"))
	if err != nil {
		return err
	}
	refresh, err := seal.seal(tok.RefreshToken, grantAD(conn, "refresh"))
	if err != nil {
		return err
	}
	now := s.now()

	tx, release, err := s.db.begin(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("store: save %q: %w", conn, err)
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	var prev []byte
	old, err := s.loadGrant(ctx, tx, conn, true)
	switch {
	case errors.Is(err, ErrNoGrant):
	case err != nil && errors.Is(err, ErrKeyMismatch):
		return err
	case err != nil:
		return fmt.Errorf("store: save %q: %w", conn, err)
	default:
		if prev, err = seal.seal(old.Refresh.Reveal(), grantAD(conn, "prev_refresh")); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, s.db.q(`INSERT INTO {grants} AS g (connection, subject, scopes, meta, token_type,
		access_token, refresh_token, expiry_ms, version, needs_reauth, reauth_reason, last_refresh_at_ms,
		prev_refresh_token, rotated_at_ms, saved_at_ms, updated_at_ms, rotating_by, rotating_since_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, FALSE, '', NULL, ?, NULL, ?, ?, '', NULL)
		ON CONFLICT (connection) DO UPDATE SET subject = excluded.subject, scopes = excluded.scopes,
			meta = excluded.meta, token_type = excluded.token_type, access_token = excluded.access_token,
			refresh_token = excluded.refresh_token, expiry_ms = excluded.expiry_ms,
			version = g.version + 1, needs_reauth = FALSE, reauth_reason = '',
			last_refresh_at_ms = NULL, prev_refresh_token = excluded.prev_refresh_token,
			rotated_at_ms = NULL, saved_at_ms = excluded.saved_at_ms, updated_at_ms = excluded.updated_at_ms,
			rotating_by = '', rotating_since_ms = NULL`),
		conn, subjectOf(meta), strings.Join(scopesOf(meta), " "), string(metaJSON), tok.TokenType,
		access, refresh, msOrNull(tok.Expiry), prev, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: save %q: %w", conn, s.db.lockErr(err))
	}
	if _, err := tx.ExecContext(ctx, s.db.q(`DELETE FROM {accounts} WHERE connection = ?`), conn); err != nil {
		return fmt.Errorf("store: save %q: %w", conn, err)
	}
	if err := s.db.commit(tx); err != nil {
		return fmt.Errorf("store: save %q: commit: %w", conn, err)
	}
	s.clearMarks(conn, true)
	s.dropPending(conn) // the new login supersedes whatever this Store still had to write
	s.log.Info("saved grant", slog.String("connection", conn), slog.String("subject", logSubject(subjectOf(meta))),
		slog.Time("expiry", tok.Expiry))
	return nil
}

// Forget deletes conn's grant and minted tokens. It returns an error wrapping ErrNoGrant
// when there was nothing to delete.
func (s *Store) Forget(ctx context.Context, conn string) error {
	tx, release, err := s.db.begin(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("store: forget %q: %w", conn, err)
	}
	defer release()
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, s.db.q(`DELETE FROM {grants} WHERE connection = ?`), conn)
	if err != nil {
		return fmt.Errorf("store: forget %q: %w", conn, s.db.lockErr(err))
	}
	if _, err := tx.ExecContext(ctx, s.db.q(`DELETE FROM {accounts} WHERE connection = ?`), conn); err != nil {
		return fmt.Errorf("store: forget %q: %w", conn, err)
	}
	if err := s.db.commit(tx); err != nil {
		return fmt.Errorf("store: forget %q: %w", conn, err)
	}
	s.clearMarks(conn, true)
	s.dropPending(conn)
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: forget %q: %w", conn, ErrNoGrant)
	}
	return nil
}

// GrantStatus is one grant as `leadsync auth status` shows it. It holds no token values.
type GrantStatus struct {
	Connection    string            `json:"connection"`
	Subject       string            `json:"subject"`
	Scopes        []string          `json:"scopes"`
	Meta          map[string]string `json:"meta,omitempty"` // vendor metadata (companyId, userType, ...)
	Expiry        time.Time         `json:"expiry"`         // of the current access token
	RefreshAt     time.Time         `json:"refresh_at"`     // when the store refreshes it, zero for never
	LastRefreshAt time.Time         `json:"last_refresh_at"`
	SavedAt       time.Time         `json:"saved_at"` // last `auth login`
	NeedsReauth   bool              `json:"needs_reauth"`
	Reason        string            `json:"reason,omitempty"`
	AccountTokens int               `json:"account_tokens"` // minted per-account tokens cached
	// RefreshingBy names the process (host/boot/pid/start/id) with a refresh of this grant
	// in progress or not yet durable; no other process refreshes it meanwhile.
	RefreshingBy    string    `json:"refreshing_by,omitempty"`
	RefreshingSince time.Time `json:"refreshing_since,omitzero"`
}

// Status lists every grant, without decrypting anything.
func (s *Store) Status(ctx context.Context) ([]GrantStatus, error) {
	rows, err := s.db.sql.QueryContext(ctx, s.db.q(`SELECT g.connection, g.subject, g.scopes, g.meta, g.expiry_ms,
		g.last_refresh_at_ms, g.saved_at_ms, g.needs_reauth, g.reauth_reason, g.rotating_by, g.rotating_since_ms,
		(SELECT COUNT(*) FROM {accounts} a WHERE a.connection = g.connection)
		FROM {grants} g ORDER BY g.connection`))
	if err != nil {
		return nil, fmt.Errorf("store: status: %w", err)
	}
	defer rows.Close()
	var out []GrantStatus
	for rows.Next() {
		var (
			g                          GrantStatus
			scopes, meta               string
			expiry, last, saved, since sql.NullInt64
		)
		if err := rows.Scan(&g.Connection, &g.Subject, &scopes, &meta, &expiry, &last, &saved, &g.NeedsReauth,
			&g.Reason, &g.RefreshingBy, &since, &g.AccountTokens); err != nil {
			return nil, fmt.Errorf("store: status: %w", err)
		}
		g.Scopes = strings.Fields(scopes)
		_ = json.Unmarshal([]byte(meta), &g.Meta)
		g.Expiry, g.LastRefreshAt, g.SavedAt = msTime(expiry), msTime(last), msTime(saved)
		g.RefreshingSince = msTime(since)
		rec := grantRecord{Expiry: g.Expiry, LastRefreshAt: g.LastRefreshAt, SavedAt: g.SavedAt}
		g.RefreshAt = rec.refreshAt(s.margin)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: status: %w", err)
	}
	return out, nil
}

// RotateKey re-encrypts every record with newKey in one transaction. Other processes using
// the store must be restarted with the new key (they fail with ErrKeyMismatch until then).
func (s *Store) RotateKey(ctx context.Context, newKey []byte) error {
	next, err := newSealer(newKey)
	if err != nil {
		return err
	}
	s.rotate.Lock()
	defer s.rotate.Unlock()
	cur := s.seal.Load()
	tx, release, err := s.db.begin(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("store: rotate key: %w", err)
	}
	defer release()
	defer func() { _ = tx.Rollback() }()

	type field struct {
		table, keyCols, col string
		keys                []any
		ad                  string
		ct                  []byte
	}
	var fields []field
	lock := ""
	if s.db.dialect == dialectPostgres {
		lock = " FOR UPDATE"
	}
	rows, err := tx.QueryContext(ctx, s.db.q(`SELECT connection, access_token, refresh_token, prev_refresh_token FROM {grants}`+lock))
	if err != nil {
		return fmt.Errorf("store: rotate key: %w", s.db.lockErr(err))
	}
	for rows.Next() {
		var conn string
		var a, r, p []byte
		if err := rows.Scan(&conn, &a, &r, &p); err != nil {
			rows.Close()
			return fmt.Errorf("store: rotate key: %w", err)
		}
		for col, ct := range map[string][]byte{"access": a, "refresh": r, "prev_refresh": p} {
			fields = append(fields, field{"{grants}", "connection = ?", col + "_token", []any{conn}, grantAD(conn, col), ct})
		}
	}
	rows.Close()
	rows, err = tx.QueryContext(ctx, s.db.q(`SELECT connection, account_id, access_token FROM {accounts}`+lock))
	if err != nil {
		return fmt.Errorf("store: rotate key: %w", err)
	}
	for rows.Next() {
		var conn, acct string
		var a []byte
		if err := rows.Scan(&conn, &acct, &a); err != nil {
			rows.Close()
			return fmt.Errorf("store: rotate key: %w", err)
		}
		fields = append(fields, field{"{accounts}", "connection = ? AND account_id = ?", "access_token", []any{conn, acct}, accountAD(conn, acct), a})
	}
	rows.Close()
	var kc []byte
	if err := tx.QueryRowContext(ctx, s.db.q(`SELECT value FROM {meta} WHERE key = 'key_check'`)).Scan(&kc); err != nil {
		return fmt.Errorf("store: rotate key: %w", err)
	}
	fields = append(fields, field{"{meta}", "key = ?", "value", []any{"key_check"}, keyCheckAD, kc})

	for _, f := range fields {
		pt, err := cur.open(f.ct, f.ad)
		if err != nil {
			return fmt.Errorf("store: rotate key: %w", err)
		}
		ct, err := next.seal(pt, f.ad)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.db.q(`UPDATE `+f.table+` SET `+f.col+` = ? WHERE `+f.keyCols), append([]any{ct}, f.keys...)...); err != nil {
			return fmt.Errorf("store: rotate key: %w", err)
		}
	}
	if err := s.db.commit(tx); err != nil {
		return fmt.Errorf("store: rotate key: commit: %w", err)
	}
	s.seal.Store(next)
	s.log.Info("token store key rotated", slog.Int("records", len(fields)))
	return nil
}

// logSubject is a grant's subject for the log: a person's email address keeps its domain only
// (logs carry no personal data; `leadsync auth status` shows the whole subject).
func logSubject(s string) string {
	if _, domain, ok := strings.Cut(s, "@"); ok {
		return "…@" + domain
	}
	return s
}
