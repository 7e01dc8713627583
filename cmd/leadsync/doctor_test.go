package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/store"
)

// doctorTestDoc is `doctor --json` as a script reads it: the documented keys, spelled out
// here so that renaming one fails a test.
type doctorTestDoc struct {
	Checks []struct {
		Name          string `json:"name"`
		Connection    string `json:"connection"`
		Status        string `json:"status"`
		Detail        string `json:"detail"`
		NeedsReauth   bool   `json:"needs_reauth"`
		NeedsRotation bool   `json:"needs_rotation"`
	} `json:"checks"`
	OK bool `json:"ok"`
}

type doctorBundle struct {
	env *testenv.Env
}

// doctorSetup is a sandbox (SQLite warehouse) whose connections are authorized, with the
// warehouse migrated, and http.listen on a free port.
func doctorSetup(t *testing.T, opts testenv.Options) *doctorBundle {
	t.Helper()
	b := &doctorBundle{env: testenv.New(t, opts, testenv.SQLite)}
	b.env.Authorized(t)
	b.editConfig(t, `listen: "off"`, `listen: "127.0.0.1:0"`)
	return b
}

// editConfig replaces old, which must be there, in the configuration file.
func (b *doctorBundle) editConfig(t *testing.T, old, new string) {
	t.Helper()
	cfg, err := os.ReadFile(b.env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("the configuration has no %q:\n%s", old, cfg)
	}
	if err := os.WriteFile(b.env.ConfigPath, []byte(strings.Replace(string(cfg), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// doctor runs `leadsync doctor` and `leadsync doctor --json`, which must agree on the exit
// code, and returns the code, the text and the document.
func (b *doctorBundle) doctor(t *testing.T) (int, string, doctorTestDoc) {
	t.Helper()
	code, text, stderr := runCLI(t, "doctor", "--config", b.env.ConfigPath)
	jcode, out, jstderr := runCLI(t, "doctor", "--json", "--config", b.env.ConfigPath)
	var doc doctorTestDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("doctor --json: %v\n%s\nstderr: %s", err, out, proofTail(jstderr))
	}
	if jcode != code {
		t.Fatalf("doctor exited %d, doctor --json %d\n%s\nstderr: %s", code, jcode, text, proofTail(stderr))
	}
	if doc.OK != (code == exitOK) {
		t.Errorf("doctor --json says ok: %t, and exits %d", doc.OK, code)
	}
	t.Logf("leadsync doctor (exit %d):\n%s", code, text)
	return code, text, doc
}

// requireLine checks that the text output has the line of check (with its connection, if
// any) with that status and a detail matching detail.
func requireLine(t *testing.T, text, check, status, detail string) {
	t.Helper()
	re := `(?m)^` + regexp.QuoteMeta(check) + `\s+` + regexp.QuoteMeta(status) + `\s+.*` + detail
	if !regexp.MustCompile(re).MatchString(text) {
		t.Errorf("no line %q %s matching %q in:\n%s", check, status, detail, text)
	}
}

// statuses maps "name connection" to the status of every check.
func statuses(doc doctorTestDoc) map[string]string {
	m := map[string]string{}
	for _, c := range doc.Checks {
		m[strings.TrimSpace(c.Name+" "+c.Connection)] = c.Status
	}
	return m
}

func TestDoctorHealthySandbox(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(41))
	code, text, doc := b.doctor(t)
	if code != exitOK {
		t.Fatalf("doctor on a healthy sandbox exited %d", code)
	}
	want := map[string]string{
		"config": "ok", "warehouse": "ok", "token_store": "ok", "listen": "ok",
		"grant sandbox-leadconnector": "ok", "grant sandbox-localiq": "ok", "grant sandbox-lacrm": "ok",
		// Only LeadConnector's grants carry scopes that its streams need.
		"scopes sandbox-leadconnector": "ok", "scopes sandbox-localiq": "skip", "scopes sandbox-lacrm": "skip",
	}
	if got := statuses(doc); len(got) != len(want) {
		t.Errorf("checks %v, want %v", got, want)
	} else {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("check %s: %s, want %s", k, got[k], v)
			}
		}
	}
	requireLine(t, text, "warehouse", "ok", `reachable; schema up to date`)
	requireLine(t, text, "scopes sandbox-leadconnector", "ok", `contacts.readonly.* cover stream contacts`)
	requireLine(t, text, "listen", "ok", `127\.0\.0\.1:0 \(http\.listen\) can be bound`)
	if !strings.HasSuffix(text, "every check passed (2 skipped)\n") {
		t.Errorf("no summary line:\n%s", text)
	}
	for _, p := range testenv.TokenPrefixes {
		if strings.Contains(text, p) {
			t.Errorf("a token (%s…) appears in the output", p)
		}
	}
}

// A grant whose access token is valid is tried with a read, not a refresh: the vendors see
// requests but no token call. One whose token expired is refreshed, and says so.
func TestDoctorRefreshesOnlyExpiredTokens(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(42))
	sb := b.env.Sandbox
	refreshes, grants := sb.Count(simkit.CountRefreshes), sb.Count(simkit.CountTokenGrants)
	requests := map[string]int64{}
	for v, f := range map[string]*simkit.Counters{"leadconnector": sb.LC.Counters(), "localiq": sb.LIQ.Counters(), "lacrm": sb.LACRM.Counters()} {
		requests[v] = f.TotalRequests()
	}
	code, text, _ := b.doctor(t)
	if code != exitOK {
		t.Fatalf("doctor exited %d", code)
	}
	if n := sb.Count(simkit.CountRefreshes) - refreshes; n != 0 {
		t.Errorf("doctor refreshed %d grants whose access tokens were valid", n)
	}
	if n := sb.Count(simkit.CountTokenGrants) - grants; n != 0 {
		t.Errorf("doctor obtained %d new grants", n)
	}
	for v, f := range map[string]*simkit.Counters{"leadconnector": sb.LC.Counters(), "localiq": sb.LIQ.Counters(), "lacrm": sb.LACRM.Counters()} {
		if f.TotalRequests() == requests[v] {
			t.Errorf("doctor made no request to %s: it did not try the grant", v)
		}
	}
	for _, conn := range []string{"sandbox-leadconnector", "sandbox-localiq", "sandbox-lacrm"} {
		requireLine(t, text, "grant "+conn, "ok", `the stored access token \(valid until .*\) .*; no refresh`)
	}

	// Tokens that live two seconds: once they have expired, doctor refreshes each grant once.
	opts := testenv.Small(43)
	opts.TokenTTL = 2 * time.Second
	b = doctorSetup(t, opts)
	sb = b.env.Sandbox
	awaitExpired(t, b.env)
	refreshes = sb.Count(simkit.CountRefreshes)
	code, text, _ = b.doctor(t) // twice: the text and the JSON
	if code != exitOK {
		t.Fatalf("doctor with expired access tokens exited %d", code)
	}
	if n := sb.Count(simkit.CountRefreshes) - refreshes; n < 3 {
		t.Errorf("doctor refreshed %d expired grants, want each of the 3", n)
	}
	if sb.Count(simkit.CountRefreshReuse) != 0 {
		t.Error("a refresh token was presented twice")
	}
	for _, conn := range []string{"sandbox-leadconnector", "sandbox-localiq", "sandbox-lacrm"} {
		requireLine(t, text, "grant "+conn, "ok", `the access token had expired: refreshed it \(the new pair is stored`)
	}
}

// awaitExpired waits (polling, with a deadline) until every stored access token expired.
func awaitExpired(t *testing.T, env *testenv.Env) {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(env.Dir, "state", "tokens.db"), store.Options{Key: mustKey(t, env)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		gs, err := st.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		expired := len(gs) == 3
		for _, g := range gs {
			expired = expired && time.Now().After(g.Expiry)
		}
		if expired {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the access tokens never expired")
		}
		<-tick.C
	}
}

func TestDoctorRevokedGrant(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(44))
	for _, g := range b.env.Sandbox.LACRM.Tokens().Grants() {
		b.env.Sandbox.LACRM.RevokeGrant(g.ID)
	}
	code, text, doc := b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor with a revoked grant exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "grant sandbox-lacrm", "FAIL", "needs re-authorization.*run `leadsync auth login sandbox-lacrm`")
	requireLine(t, text, "grant sandbox-leadconnector", "ok", "")
	requireLine(t, text, "grant sandbox-localiq", "ok", "")
	for _, c := range doc.Checks {
		if c.Name == "grant" && c.NeedsReauth != (c.Connection == "sandbox-lacrm") {
			t.Errorf("grant %s: needs_reauth %t", c.Connection, c.NeedsReauth)
		}
	}
	if !strings.HasSuffix(text, "1 of 10 checks failed\n") {
		t.Errorf("no summary line:\n%s", text)
	}
}

func TestDoctorStoppedPostgres(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(45))
	// A port nothing listens on: PostgreSQL stopped.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b.editConfig(t, `url: "`+b.env.WarehouseURL+`"`, `url: "postgres://leadsync@`+addr+`/leads?sslmode=disable"`+"\n  schema: wh")
	code, text, doc := b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor with PostgreSQL stopped exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "warehouse", "FAIL", `PostgreSQL `+regexp.QuoteMeta(addr)+`/leads \(schema wh\): unreachable: .*connect.*check warehouse\.url`)
	// The other checks still ran.
	for k, v := range statuses(doc) {
		if k != "warehouse" && v == "fail" {
			t.Errorf("check %s failed too", k)
		}
	}
}

func TestDoctorWrongTokenStoreKey(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(46))
	key := make([]byte, store.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.env.Dir, "state", "token.key"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, text, doc := b.doctor(t)
	// exitCodesHelp: a token store key that does not match is a configuration error.
	if code != exitUsage {
		t.Fatalf("doctor with the wrong key exited %d, want %d", code, exitUsage)
	}
	requireLine(t, text, "token_store", "FAIL", `token store key does not match`)
	requireLine(t, text, "warehouse", "ok", "")
	got := statuses(doc)
	if got["grant"] != "skip" || got["scopes"] != "skip" {
		t.Errorf("grants not skipped when the token store did not open: %v", got)
	}
}

// A grant without a scope the stream needs, and a listen address in use.
func TestDoctorMissingScopeAndBusyAddress(t *testing.T) {
	t.Parallel()
	b := &doctorBundle{env: testenv.New(t, testenv.Small(47), testenv.SQLite)}
	b.editConfig(t, "    source: leadconnector\n", "    source: leadconnector\n    scopes: [contacts.readonly, oauth.readonly]\n")
	b.env.Authorized(t)
	other := httptest.NewServer(http.NotFoundHandler()) // another program holds the address
	defer other.Close()
	addr := other.Listener.Addr().String()
	b.editConfig(t, `listen: "off"`, `listen: "`+addr+`"`)
	code, text, _ := b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "grant sandbox-leadconnector", "ok", "listed the accounts")
	requireLine(t, text, "scopes sandbox-leadconnector", "FAIL",
		"stream contacts needs oauth.write;.*which the grant lacks.*then run `leadsync auth login sandbox-leadconnector`")
	requireLine(t, text, "listen", "FAIL", regexp.QuoteMeta(addr)+` \(http\.listen\): address already in use by another process`)

	// A running leadsync holds it: doctor next to the daemon, as it should be.
	daemon := httptest.NewServer(ops.NewHandler(nil, nil))
	defer daemon.Close()
	b.editConfig(t, addr, daemon.Listener.Addr().String())
	if code, text, _ = b.doctor(t); code != exitFailed {
		t.Fatalf("doctor exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "listen", "ok", `held by a running leadsync`)
}

// A refused static token names the connection's rotation; the others are read with theirs.
func TestDoctorRefusedStaticToken(t *testing.T) {
	t.Parallel()
	opts := testenv.Small(48)
	opts.StaticAuth = true
	b := doctorSetup(t, opts)
	key, err := os.ReadFile(filepath.Join(b.env.Dir, "secrets", "lacrm-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.env.Sandbox.LACRM.RevokeAPIKey(strings.TrimSpace(string(key))); err != nil {
		t.Fatal(err)
	}
	code, text, doc := b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "grant sandbox-lacrm", "FAIL", `needs rotation: .*make a new API key`)
	requireLine(t, text, "grant sandbox-leadconnector", "ok", `static tokens: read the first page of contacts of each configured account \(3\)`)
	requireLine(t, text, "scopes sandbox-leadconnector", "skip", "static tokens")
	for _, c := range doc.Checks {
		if c.Name == "grant" && c.NeedsRotation != (c.Connection == "sandbox-lacrm") {
			t.Errorf("grant %s: needs_rotation %t", c.Connection, c.NeedsRotation)
		}
	}
}

func TestDoctorInvalidConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("connections:\n  - name: a\n    source: leadconnector\n    api_verison: v3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &doctorBundle{env: &testenv.Env{ConfigPath: path}}
	code, text, doc := b.doctor(t)
	if code != exitUsage {
		t.Fatalf("doctor with an invalid configuration exited %d, want %d", code, exitUsage)
	}
	requireLine(t, text, "config", "FAIL", regexp.QuoteMeta("connections[0].api_verison (line 4)"))
	for _, c := range doc.Checks[1:] {
		if c.Status != "skip" {
			t.Errorf("check %s ran on an invalid configuration: %s", c.Name, c.Status)
		}
	}
}

// doctor reports pending migrations without applying them, and refuses a warehouse that a
// newer leadsync migrated.
func TestDoctorWarehouseSchema(t *testing.T) {
	t.Parallel()
	b := doctorSetup(t, testenv.Small(49))
	db := b.env.OpenDB(t)
	latest := e2eCount(t, db, `SELECT MAX(version_id) FROM sink_migrations`)
	if _, err := db.Exec(`DELETE FROM sink_migrations WHERE version_id = ?`, latest); err != nil {
		t.Fatal(err)
	}
	code, text, _ := b.doctor(t)
	if code != exitOK {
		t.Fatalf("doctor with a migration pending exited %d, want %d", code, exitOK)
	}
	requireLine(t, text, "warehouse", "ok", fmt.Sprintf(`reachable; migrations pending: %05d_\w+\.sql; the next .leadsync run. applies them`, latest))
	if n := e2eCount(t, db, `SELECT MAX(version_id) FROM sink_migrations`); n != latest-1 {
		t.Fatalf("after doctor the warehouse is at version %d, want %d: doctor migrated it", n, latest-1)
	}

	if _, err := db.Exec(`INSERT INTO sink_migrations (version_id, is_applied) VALUES (?, 1), (?, 1)`, latest, latest+100); err != nil {
		t.Fatal(err)
	}
	code, text, _ = b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor with a newer schema exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "warehouse", "FAIL", fmt.Sprintf(`schema version %d, this leadsync knows up to %d: .*upgrade leadsync`, latest+100, latest))
}

// Before the first login and run: the warehouse is not created by doctor, and every OAuth
// connection says how to authorize it.
func TestDoctorFreshInstall(t *testing.T) {
	t.Parallel()
	b := &doctorBundle{env: testenv.New(t, testenv.Small(50), testenv.SQLite)}
	code, text, doc := b.doctor(t)
	if code != exitFailed {
		t.Fatalf("doctor before any login exited %d, want %d", code, exitFailed)
	}
	requireLine(t, text, "warehouse", "ok", "not created yet: the first `leadsync run`")
	if _, err := os.Stat(strings.TrimPrefix(b.env.WarehouseURL, "sqlite://")); !os.IsNotExist(err) {
		t.Errorf("doctor created the warehouse (stat: %v)", err)
	}
	requireLine(t, text, "grant sandbox-leadconnector", "FAIL", "not authorized: run `leadsync auth login sandbox-leadconnector`")
	requireLine(t, text, "grant sandbox-localiq", "FAIL", "not authorized: run `leadsync auth password sandbox-localiq`")
	requireLine(t, text, "scopes sandbox-leadconnector", "skip", "no grant")
	requireLine(t, text, "listen", "skip", `http\.listen is off`)
	for _, c := range doc.Checks {
		if c.Name == "grant" && !c.NeedsReauth {
			t.Errorf("grant %s: needs_reauth false before any login", c.Connection)
		}
	}
}
