package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/store"
)

// TestStaticTokenRotation: connections of HighLevel Private Integration Tokens and an LACRM
// API key sync with no OAuth app; a revoked token puts its connection in needs_rotation
// (status, auth status, /readyz, the metric) while the rest syncs; the secret file changes,
// and the next run succeeds with no restart. No static token appears in any output, log or
// database file.
func TestStaticTokenRotation(t *testing.T) {
	t.Parallel()
	opts := testenv.Small(31)
	opts.StaticAuth = true
	env := testenv.New(t, opts, testenv.SQLite)
	db := env.OpenDB(t)
	var outputs []string
	cli := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append(args, "--config", env.ConfigPath)...)
		outputs = append(outputs, out+errOut)
		if code != want {
			t.Fatalf("leadsync %s exited %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	serve := func() (readyz, metrics string) {
		t.Helper()
		a := env.App(t)
		srv := httptest.NewServer(ops.NewHandler(a.Metrics, a.Ready))
		defer srv.Close()
		get := func(path string) string {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.Status + " " + string(b)
		}
		r, m := get("/readyz"), get("/metrics")
		outputs = append(outputs, r, m)
		return r, m
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(path, v string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// LocaliQ has no static tokens: its OAuth connection logs in as usual. The others have
	// nothing to log in.
	cli(exitOK, "auth", "password", "sandbox-localiq")
	if out := cli(exitUsage, "auth", "login", "sandbox-lacrm"); !strings.Contains(out, "nothing to log in") {
		t.Errorf("auth login of a static connection: %s", out)
	}
	cli(exitOK, "run", "--once", "--progress", "off")
	env.RequireTruth(t)
	if out := cli(exitOK, "auth", "status"); strings.Contains(out, "NEEDS") {
		t.Fatalf("auth status before any refusal:\n%s", out)
	}

	// Revoke one readable location's PIT and the LACRM key.
	var loc string
	for _, at := range env.Sandbox.LC.GroundTruth() {
		if !at.Restricted {
			loc = at.AccountID
			break
		}
	}
	pitFile := filepath.Join(env.Dir, "secrets", "leadconnector-location-"+loc+".token")
	keyFile := filepath.Join(env.Dir, "secrets", "lacrm-api-key")
	tokens := []string{read(pitFile), read(keyFile)}
	for _, p := range env.Sandbox.LC.PITs() {
		tokens = append(tokens, p.Token)
	}
	if err := env.Sandbox.LC.RevokePIT(read(pitFile)); err != nil {
		t.Fatal(err)
	}
	if err := env.Sandbox.LACRM.RevokeAPIKey(read(keyFile)); err != nil {
		t.Fatal(err)
	}
	out := cli(exitFailed, "run", "--once", "--progress", "off")
	for _, want := range []string{
		"rotate the Private Integration token of location " + loc + " in HighLevel (Settings → Private Integrations), then update the secret at file:" + pitFile,
		"make a new API key in Less Annoying CRM (Settings → API), then update the secret at file:" + keyFile,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the run's output does not name the fix %q:\n%s", want, out)
		}
	}
	// The other locations synced: their accounts are ok in this run.
	if n := e2eCount(t, db, `SELECT COUNT(*) FROM sync_run_streams s JOIN sync_runs r ON r.id = s.run_id
WHERE r.id = (SELECT MAX(id) FROM sync_runs) AND s.source = 'leadconnector' AND s.outcome = 'ok'`); n == 0 {
		t.Error("no other LeadConnector location synced while one token was refused")
	}
	auth := cli(exitOK, "auth", "status")
	for _, conn := range []string{"sandbox-leadconnector", "sandbox-lacrm"} {
		if !regexp.MustCompile(`(?m)^` + conn + `\s.*NEEDS ROTATION`).MatchString(auth) {
			t.Errorf("auth status does not show %s needing rotation:\n%s", conn, auth)
		}
	}
	status := cli(exitOK, "status", "--json")
	if strings.Count(status, `"needs_rotation": true`) != 2 {
		t.Errorf("status --json does not flag both connections:\n%s", status)
	}
	readyz, metrics := serve()
	if !strings.HasPrefix(readyz, "503") || !strings.Contains(readyz, "connection sandbox-leadconnector needs rotation") ||
		!strings.Contains(readyz, "connection sandbox-lacrm needs rotation") {
		t.Errorf("/readyz: %s", readyz)
	}
	for _, conn := range []string{"sandbox-leadconnector", "sandbox-lacrm"} {
		if !strings.Contains(metrics, `leadsync_credential_needs_rotation{connection="`+conn+`"`) ||
			!regexp.MustCompile(`leadsync_credential_needs_rotation\{connection="`+conn+`",source="\w+"\} 1`).MatchString(metrics) {
			t.Errorf("metrics do not flag %s", conn)
		}
	}

	// The operator rotates: new tokens in the same secret files, no restart.
	pit, err := env.Sandbox.LC.IssuePIT(loc)
	if err != nil {
		t.Fatal(err)
	}
	key, err := env.Sandbox.LACRM.IssueAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, pit, key)
	write(pitFile, pit)
	write(keyFile, key)
	cli(exitOK, "run", "--once", "--progress", "off")
	env.RequireTruth(t)
	if out := cli(exitOK, "auth", "status"); strings.Contains(out, "NEEDS") {
		t.Errorf("auth status after the rotation:\n%s", out)
	}
	if readyz, _ := serve(); !strings.HasPrefix(readyz, "200") {
		t.Errorf("/readyz after the rotation: %s", readyz)
	}

	// No static token anywhere: outputs, logs (the CLI's stderr), the warehouse and the
	// token store's files.
	files, _ := filepath.Glob(filepath.Join(env.Dir, "state", "*"))
	wh := strings.TrimPrefix(env.WarehouseURL, "sqlite://")
	files = append(files, wh, wh+"-wal")
	places := map[string]string{}
	for i, o := range outputs {
		places["output "+string(rune('a'+i))] = o
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			places["file "+filepath.Base(f)] = string(b)
		}
	}
	for where, text := range places {
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				t.Errorf("a static token appears in %s", where)
			}
		}
	}
	for _, o := range outputs {
		e2eRequireNoSecrets(t, db, "an output", o)
	}
	// The store remembers refusals only by fingerprint, and holds none now.
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(env.Dir, "state", "tokens.db"), store.Options{Key: mustKey(t, env)})
	if err == nil {
		defer st.Close()
		if rej, err := st.StaticRejections(context.Background()); err != nil || len(rej) != 0 {
			t.Errorf("refusals left after the rotation: %+v %v", rej, err)
		}
	}
}

func mustKey(t *testing.T, env *testenv.Env) []byte {
	t.Helper()
	cfg := env.Config(t)
	k, err := store.LoadKey(cfg.TokenStore.KeyFile, cfg.StateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
