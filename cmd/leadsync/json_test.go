package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/testenv"
)

// requireNoJSONInStrings fails when a string inside a JSON document is itself a JSON object
// or array: --json output is one document, never JSON encoded as a string inside JSON.
func requireNoJSONInStrings(t *testing.T, what string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.ToLower(k) != k || strings.ContainsAny(k, " -") {
				t.Errorf("%s: key %q is not snake_case", what, k)
			}
			requireNoJSONInStrings(t, what+"."+k, e)
		}
	case []any:
		for _, e := range v {
			requireNoJSONInStrings(t, what+"[]", e)
		}
	case string:
		if s := strings.TrimSpace(v); (strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[")) && json.Valid([]byte(s)) {
			t.Errorf("%s holds JSON as a string: %s", what, v)
		}
	}
}

// The --json documents of status, auth status and migrate --status: snake_case keys, no
// JSON inside strings, and what they promise in them.
func TestJSONOutputs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(31), testenv.SQLite)
	env.Authorized(t)
	cli := func(args ...string) []byte {
		t.Helper()
		code, stdout, stderr := runCLI(t, append(args, "--config", env.ConfigPath)...)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		var v any
		if err := json.Unmarshal([]byte(stdout), &v); err != nil {
			t.Fatalf("%s: not one JSON document: %v\n%s", strings.Join(args, " "), err, stdout)
		}
		requireNoJSONInStrings(t, strings.Join(args, " "), v)
		return []byte(stdout)
	}

	var grants authStatusDoc
	if err := json.Unmarshal(cli("auth", "status", "--json"), &grants); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{} // connection → source
	for _, conn := range c.Connections {
		cfg[conn.Name] = conn.Source
	}
	if len(grants.Grants) != len(cfg) {
		t.Errorf("auth status --json lists %d grants, the configuration has %d connections: %+v", len(grants.Grants), len(cfg), grants)
	}
	for _, g := range grants.Grants {
		if g.Source != cfg[g.Connection] || g.Auth != "oauth" || g.State != "ok" {
			t.Errorf("grant %+v", g)
		}
		// Every vendor's grant names who granted it, and when its access token expires.
		if g.Subject == "" || g.ExpiresAt.IsZero() || g.SavedAt.IsZero() {
			t.Errorf("grant of %s (%s): subject %q, expires_at %v, saved_at %v", g.Connection, g.Source, g.Subject, g.ExpiresAt, g.SavedAt)
		}
	}
	// The table says each time with its zone.
	_, table, _ := runCLI(t, "auth", "status", "--config", env.ConfigPath)
	if zone, _ := time.Now().Zone(); !strings.Contains(table, " "+zone) {
		t.Errorf("auth status gives no zone (%s) with its times:\n%s", zone, table)
	}

	if code, _, stderr := runCLI(t, "migrate", "--config", env.ConfigPath); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	var migs migrationsDoc
	if err := json.Unmarshal(cli("migrate", "--status", "--json"), &migs); err != nil {
		t.Fatal(err)
	}
	if len(migs.Migrations) == 0 {
		t.Fatal("migrate --status --json lists no migrations")
	}
	for _, m := range migs.Migrations {
		if !m.Applied || m.AppliedAt.IsZero() || m.Name == "" {
			t.Errorf("after migrate: %+v", m)
		}
	}
	if code, _, stderr := runCLI(t, "migrate", "--json", "--config", env.ConfigPath); code != exitUsage || !strings.Contains(stderr, "--json goes with --status") {
		t.Errorf("migrate --json without --status: exit %d, %s", code, stderr)
	}

	cli("status", "--json")
}
