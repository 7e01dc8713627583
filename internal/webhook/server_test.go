package webhook

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
)

// syncBuffer is a log destination shared by the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type serverBundle struct {
	priv  ed25519.PrivateKey
	clock *fakeClock
	wh    sink.Sink
	db    *sql.DB // the warehouse file, read apart from the sink: what a reader would see
	h     *Handler
	logs  *syncBuffer
}

// setupServer is a handler on a real SQLite warehouse in t.TempDir().
func setupServer(t *testing.T, mod ...func(*ServerConfig)) *serverBundle {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leads.db")
	wh, err := sink.Open(t.Context(), "sqlite://"+path, sink.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wh.Close() })
	db, err := sql.Open("sqlite3", path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := &serverBundle{clock: &fakeClock{t: lcNow}, wh: wh, db: db, logs: &syncBuffer{}}
	b.h = newTestHandler(t, b, wh.(sink.Inbox), mod...)
	return b
}

func newTestHandler(t *testing.T, b *serverBundle, in sink.Inbox, mod ...func(*ServerConfig)) *Handler {
	t.Helper()
	if b.priv == nil {
		var err error
		if _, b.priv, err = GenerateSandboxKeyPair(); err != nil {
			t.Fatal(err)
		}
	}
	pemPub, err := MarshalPublicKey(b.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := MarshalPublicKey(&testRSAKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{
		Inbox:         in,
		LeadConnector: LeadConnectorConfig{Ed25519Keys: []string{pemPub}, RSAKeys: []string{rsaPub}, Now: b.clock.Now},
		Logger:        slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (b *serverBundle) rows(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.db.QueryRow(`SELECT count(*) FROM webhook_inbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func post(h http.Handler, path string, header http.Header, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// signed is a LeadConnector delivery of the documented ContactCreate, id and time spliced in.
func (b *serverBundle) signed(t *testing.T, id string, age time.Duration) ([]byte, http.Header) {
	t.Helper()
	body := lcDelivery(t, "ContactCreate.json", lcNow.Add(-age), id)
	return body, ghl(SignGHL(b.priv, body))
}

// TestServerRejectsUnverified: forged, tampered, stale and unsigned deliveries are refused
// 401 and write nothing; a valid one is stored once, and its replay is answered 200 without
// a second row. The logs name the vendor and reason, never a value of the body.
func TestServerRejectsUnverified(t *testing.T) {
	t.Parallel()
	b := setupServer(t)
	_, otherKey, err := GenerateSandboxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	body, header := b.signed(t, "wh-ok", 30*time.Second)
	tampered := bytes.Replace(body, []byte("John"), []byte("Joan"), 1)
	stale, staleHeader := b.signed(t, "wh-stale", 10*time.Minute)
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
	}{
		{"forged", ghl(SignGHL(otherKey, body)), body},
		{"tampered", header, tampered},
		{"stale", staleHeader, stale},
		{"unsigned", nil, body},
		{"RSA signature after a failed Ed25519", http.Header{"X-Ghl-Signature": {SignGHL(otherKey, body)}, "X-Wh-Signature": {wh(t, body)}}, body},
		{"not base64", ghl("!!!"), body},
	} {
		if w := post(b.h, PathLeadConnector, tc.header, tc.body); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", tc.name, w.Code, w.Body)
		}
		if n := b.rows(t); n != 0 {
			t.Fatalf("%s: %d inbox rows, want none", tc.name, n)
		}
	}
	if w := post(b.h, PathLeadConnector, header, body); w.Code != http.StatusOK {
		t.Fatalf("valid delivery: %d %s", w.Code, w.Body)
	}
	if w := post(b.h, PathLeadConnector, header, body); w.Code != http.StatusOK {
		t.Errorf("replay: %d %s, want 200 (it is stored: the sender must not retry)", w.Code, w.Body)
	}
	if n := b.rows(t); n != 1 {
		t.Errorf("%d inbox rows after a delivery and its replay, want 1", n)
	}
	var stored []byte
	var op, typ, record string
	if err := b.db.QueryRow(`SELECT body, op, event_type, record_id FROM webhook_inbox`).Scan(&stored, &op, &typ, &record); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, body) || op != OpUpsert || typ != "ContactCreate" || record != "nmFmQEsNgz6AVpgLVUJ0" {
		t.Errorf("stored %s %s %s, body equal to the signed bytes: %v", op, typ, record, bytes.Equal(stored, body))
	}
	logs := b.logs.String()
	for _, pii := range []string{"JohnDeo@gmail.comm", "John", "+919509597501", "3535 1st St N"} {
		if strings.Contains(logs, pii) {
			t.Errorf("the logs hold %q:\n%s", pii, logs)
		}
	}
	for _, want := range []string{"reason=bad_signature", "reason=stale", "reason=missing_signature", "vendor=leadconnector"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %q:\n%s", want, logs)
		}
	}
}

// TestServerBodyLimit: a body over the limit is answered 413 and writes nothing, even when
// it is validly signed.
func TestServerBodyLimit(t *testing.T) {
	t.Parallel()
	b := setupServer(t, func(c *ServerConfig) { c.MaxBodyBytes = 2048 })
	head := lcDelivery(t, "ContactCreate.json", lcNow, "wh-big")
	body := append([]byte(`{"padding":"`+strings.Repeat("x", 4096)+`",`), head[1:]...)
	if w := post(b.h, PathLeadConnector, ghl(SignGHL(b.priv, body)), body); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("big body: %d, want 413", w.Code)
	}
	if n := b.rows(t); n != 0 {
		t.Errorf("%d inbox rows, want none", n)
	}
}

// TestServerFlood: with max_backlog N, N distinct events are stored and the next one is
// answered 429 with Retry-After; the inbox holds exactly the acknowledged events, and takes
// events again once the backlog drains.
func TestServerFlood(t *testing.T) {
	t.Parallel()
	const n = 5
	b := setupServer(t, func(c *ServerConfig) { c.MaxBacklog = n })
	acked := 0
	for i := range n + 3 {
		body, header := b.signed(t, fmt.Sprint("wh-", i), time.Second)
		switch w := post(b.h, PathLeadConnector, header, body); {
		case w.Code == http.StatusOK:
			acked++
		case w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "":
			t.Fatalf("event %d: %d %v", i, w.Code, w.Header())
		case i < n:
			t.Fatalf("event %d of a backlog of %d answered 429", i, n)
		}
	}
	if acked != n || b.rows(t) != n {
		t.Fatalf("%d acknowledged, %d rows; want %d and %d", acked, b.rows(t), n, n)
	}
	// The applier drains (not built yet: its mark, by hand).
	rw, err := sql.Open("sqlite3", b.dbPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec(`UPDATE webhook_inbox SET applied_at = '2026-07-14T10:01:00.000000Z'`); err != nil {
		t.Fatal(err)
	}
	body, header := b.signed(t, "wh-after", time.Second)
	if w := post(b.h, PathLeadConnector, header, body); w.Code != http.StatusOK {
		t.Errorf("after the drain: %d, want 200", w.Code)
	}
}

func (b *serverBundle) dbPath(t *testing.T) string {
	t.Helper()
	var seq int
	var name, file string
	if err := b.db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestServerUnknownType: a verified event of a type leadsync does not know is stored with
// op ignore and answered 200, never 4xx or 5xx.
func TestServerUnknownType(t *testing.T) {
	t.Parallel()
	b := setupServer(t)
	body := []byte(`{"type":"InvoicePaid","locationId":"loc-1","id":"inv-1","timestamp":"` +
		lcNow.Format(time.RFC3339) + `","webhookId":"wh-new"}`)
	if w := post(b.h, PathLeadConnector, ghl(SignGHL(b.priv, body)), body); w.Code != http.StatusOK {
		t.Fatalf("unknown type: %d %s", w.Code, w.Body)
	}
	var op, typ string
	if err := b.db.QueryRow(`SELECT op, event_type FROM webhook_inbox`).Scan(&op, &typ); err != nil || op != OpIgnore || typ != "InvoicePaid" {
		t.Errorf("stored op %q type %q (%v), want ignore InvoicePaid", op, typ, err)
	}
}

// slowInbox is an inbox whose database hangs until the request's deadline, or fails.
type slowInbox struct {
	sink.Inbox
	fail error
}

func (s slowInbox) InboxInsertAll(ctx context.Context, _ []sink.InboxEvent) (int, error) {
	if s.fail != nil {
		return 0, s.fail
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestServerStoreFailure: a database that fails or is too slow gets 429 (which HighLevel
// retries), never 5xx, and the event is not acknowledged.
func TestServerStoreFailure(t *testing.T) {
	t.Parallel()
	for _, fail := range []error{nil, errors.New("disk I/O error")} {
		b := setupServer(t)
		h := newTestHandler(t, b, slowInbox{Inbox: b.wh.(sink.Inbox), fail: fail}, func(c *ServerConfig) { c.StoreTimeout = 50 * time.Millisecond })
		body, header := b.signed(t, "wh-slow", time.Second)
		if w := post(h, PathLeadConnector, header, body); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
			t.Errorf("store error %v: %d %v, want 429 with Retry-After", fail, w.Code, w.Header())
		}
		if b.rows(t) != 0 {
			t.Error("a row was written")
		}
	}
}

// TestServerLACRMAndLocaliQ: without hooks the endpoints answer 404 and write nothing; with
// them, a delivery signed with a hook's secret (carrying a hook's authorization value) is
// stored and any other refused; an LACRM handshake is refused until registration exists.
func TestServerLACRMAndLocaliQ(t *testing.T) {
	t.Parallel()
	lacrmBody := readTestdata(t, "lacrm/contact_create.json")
	liqBody := readTestdata(t, "localiq/call_lead.json")
	b := setupServer(t)
	if w := post(b.h, PathLACRM, http.Header{HeaderHookSignature: {SignLACRM("s3cret", lacrmBody)}}, lacrmBody); w.Code != http.StatusNotFound {
		t.Errorf("LACRM without hooks: %d, want 404", w.Code)
	}
	if w := post(b.h, PathLocaliQ, http.Header{"Authorization": {"x"}}, liqBody); w.Code != http.StatusNotFound {
		t.Errorf("LocaliQ without hooks: %d, want 404", w.Code)
	}
	if b.rows(t) != 0 {
		t.Fatal("rows written without hooks")
	}

	auth, err := NewLocaliQAuthorization()
	if err != nil {
		t.Fatal(err)
	}
	b.h = newTestHandler(t, b, b.wh.(sink.Inbox), func(c *ServerConfig) {
		c.LACRMSecrets = func(context.Context) ([]string, error) { return []string{"old", "s3cret"}, nil }
		c.LocaliQHooks = func(context.Context) ([]LocaliQHook, error) {
			return []LocaliQHook{{ID: "84+TEST_1", Advertiser: "USA_1", EventType: LocaliQNewLead, Authorization: auth}}, nil
		}
	})
	for _, tc := range []struct {
		name, path string
		header     http.Header
		body       []byte
		want       int
	}{
		{"LACRM handshake", PathLACRM, http.Header{HeaderHookSecret: {"new-secret"}}, nil, http.StatusForbidden},
		{"LACRM bad signature", PathLACRM, http.Header{HeaderHookSignature: {SignLACRM("guess", lacrmBody)}}, lacrmBody, http.StatusUnauthorized},
		{"LACRM unsigned", PathLACRM, nil, lacrmBody, http.StatusUnauthorized},
		{"LocaliQ wrong authorization", PathLocaliQ, http.Header{"Authorization": {auth + "x"}}, liqBody, http.StatusUnauthorized},
		{"LocaliQ no authorization", PathLocaliQ, nil, liqBody, http.StatusUnauthorized},
	} {
		if w := post(b.h, tc.path, tc.header, tc.body); w.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.want)
		}
	}
	if b.rows(t) != 0 {
		t.Fatal("a refused delivery wrote a row")
	}
	if w := post(b.h, PathLACRM, http.Header{HeaderHookSignature: {SignLACRM("s3cret", lacrmBody)}}, lacrmBody); w.Code != http.StatusOK {
		t.Errorf("LACRM signed: %d %s", w.Code, w.Body)
	}
	if w := post(b.h, PathLocaliQ, http.Header{"Authorization": {auth}}, liqBody); w.Code != http.StatusOK {
		t.Errorf("LocaliQ authorized: %d %s", w.Code, w.Body)
	}
	want := b.rows(t)
	// Both again: the same events, stored already.
	post(b.h, PathLACRM, http.Header{HeaderHookSignature: {SignLACRM("s3cret", lacrmBody)}}, lacrmBody)
	post(b.h, PathLocaliQ, http.Header{"Authorization": {auth}}, liqBody)
	var vendors int
	if err := b.db.QueryRow(`SELECT count(DISTINCT vendor) FROM webhook_inbox`).Scan(&vendors); err != nil || vendors != 2 || b.rows(t) != want {
		t.Errorf("%d vendors, %d rows after resending (%d before), %v", vendors, b.rows(t), want, err)
	}
	var account string
	if err := b.db.QueryRow(`SELECT account_id FROM webhook_inbox WHERE vendor = ?`, sources.LocaliQ).Scan(&account); err != nil || account != "USA_1" {
		t.Errorf("LocaliQ event's account %q (%v), want the hook's advertiser", account, err)
	}
}

// TestServerListener: Start serves the handler on a real socket, with its timeouts.
func TestServerListener(t *testing.T) {
	t.Parallel()
	b := setupServer(t)
	srv, err := Start("127.0.0.1:0", b.h, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	body, header := b.signed(t, "wh-net", time.Second)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL()+PathLeadConnector, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || b.rows(t) != 1 {
		t.Errorf("over the socket: %d, %d rows", resp.StatusCode, b.rows(t))
	}
	if resp, err := http.Get(srv.URL() + PathLeadConnector); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d, want 405", resp.StatusCode)
		}
	}
}

// TestPostgresServerWorkers: two workers' handlers on one PostgreSQL warehouse receive the
// same event at once: both answer 200, and it is stored once.
func TestPostgresServerWorkers(t *testing.T) {
	t.Parallel()
	dsn, _ := pgtest.Schema(t)
	b := &serverBundle{clock: &fakeClock{t: lcNow}, logs: &syncBuffer{}}
	var handlers []*Handler
	var first sink.Sink
	for i := range 2 {
		wh, err := sink.Open(t.Context(), dsn, sink.Options{Logger: slog.New(slog.DiscardHandler), Worker: fmt.Sprint("w", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wh.Close() })
		if first == nil {
			first = wh
		}
		handlers = append(handlers, newTestHandler(t, b, wh.(sink.Inbox)))
	}
	for i := range 10 {
		body, header := b.signed(t, fmt.Sprint("wh-", i), time.Second)
		var wg sync.WaitGroup
		codes := make([]int, len(handlers))
		for j, h := range handlers {
			wg.Go(func() { codes[j] = post(h, PathLeadConnector, header, body).Code })
		}
		wg.Wait()
		for j, c := range codes {
			if c != http.StatusOK {
				t.Errorf("event %d, worker %d: %d", i, j, c)
			}
		}
	}
	var n int
	if err := first.(*sink.Postgres).Pool().QueryRow(t.Context(), `SELECT count(*) FROM webhook_inbox`).Scan(&n); err != nil || n != 10 {
		t.Errorf("%d rows (%v), want 10: each event once", n, err)
	}
}
