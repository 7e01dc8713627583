package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
)

// accounts.include and accounts.exclude choose the accounts a connection syncs: ids and
// path.Match patterns, include first, then exclude. The others are not synced.
func TestAccountSelection(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(43), testenv.SQLite)
	var liq []string
	for _, at := range env.Sandbox.GroundTruth() {
		if at.Source == sources.LocaliQ && !at.Restricted {
			liq = append(liq, at.AccountID)
		}
	}
	slices.Sort(liq)
	if len(liq) < 3 {
		t.Fatalf("the sandbox has %d unrestricted LocaliQ advertisers, want 3", len(liq))
	}
	// Include two by id and (with a pattern) nothing else; then exclude the second again.
	b, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	sel := "    accounts:\n      include: [" + liq[0] + ", \"" + liq[1] + "*\"]\n      exclude: [" + liq[1] + "]\n"
	cfg := strings.Replace(string(b), "  - name: sandbox-localiq\n", "  - name: sandbox-localiq\n"+sel, 1)
	if cfg == string(b) {
		t.Fatal("no sandbox-localiq connection in the sandbox configuration")
	}
	if err := os.WriteFile(env.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Authorized(t)
	if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--connection", "sandbox-localiq", "--config", env.ConfigPath); code != exitOK {
		t.Fatalf("run --once: exit %d\n%s\n%s", code, stdout, stderr)
	}
	db := env.OpenDB(t)
	rows, err := db.Query(`SELECT DISTINCT account_id FROM sync_state WHERE source = 'localiq' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var synced []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		synced = append(synced, id)
	}
	if !slices.Equal(synced, liq[:1]) {
		t.Fatalf("synced LocaliQ accounts %v, want only %v", synced, liq[:1])
	}
	var others int
	if err := db.QueryRow(`SELECT count(*) FROM leads WHERE source = 'localiq' AND account_id <> ?`, liq[0]).Scan(&others); err != nil || others != 0 {
		t.Fatalf("%d leads of accounts not selected (%v)", others, err)
	}
}

// streams chooses the streams a connection syncs; an unknown name is a configuration error
// (exit 2) naming the key and listing the source's streams.
func TestStreamSelection(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(44), testenv.SQLite)
	b, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	withStreams := func(list string) {
		t.Helper()
		cfg := strings.Replace(string(b), "  - name: sandbox-localiq\n", "  - name: sandbox-localiq\n    streams: "+list+"\n", 1)
		if cfg == string(b) {
			t.Fatal("no sandbox-localiq connection in the sandbox configuration")
		}
		if err := os.WriteFile(env.ConfigPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withStreams("[interactions, nope]")
	code, _, stderr := runCLI(t, "run", "--once", "--progress", "off", "--connection", "sandbox-localiq", "--config", env.ConfigPath)
	if code != exitUsage || !strings.Contains(stderr, `streams[1]: localiq has no stream "nope" (its streams: interactions, daily_counts`) {
		t.Fatalf("unknown stream: exit %d\n%s", code, stderr)
	}
	withStreams("[interactions]")
	env.Authorized(t)
	if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--connection", "sandbox-localiq", "--config", env.ConfigPath); code != exitOK {
		t.Fatalf("run --once: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var streams []string
	rows, err := env.OpenDB(t).Query(`SELECT DISTINCT stream FROM sync_state WHERE source = 'localiq' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	if !slices.Equal(streams, []string{"interactions"}) {
		t.Fatalf("synced LocaliQ streams %v, want [interactions]", streams)
	}
}
