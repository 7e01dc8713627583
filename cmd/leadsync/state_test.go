package main

import (
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
)

// state reset clears the cursors it names, after a confirmation that a script gives with
// --yes; wrong names are usage errors listing the right ones; the next run reads the reset
// stream again and rewrites nothing that did not change.
func TestStateReset(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(41), testenv.SQLite)
	env.Authorized(t)
	cfg := []string{"--config", env.ConfigPath}
	cli := func(code int, args ...string) (string, string) {
		t.Helper()
		got, stdout, stderr := runCLI(t, append(args, cfg...)...)
		if got != code {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, stdout, stderr)
		}
		return stdout, stderr
	}
	if out, _ := cli(exitOK, "state", "reset", "--connection", "sandbox-lacrm", "--yes"); !strings.Contains(out, "nothing to reset") {
		t.Errorf("reset before any run: %s", out)
	}
	cli(exitOK, "run", "--once", "--progress", "off")

	db := env.OpenDB(t)
	cursor := func(stream string) string {
		t.Helper()
		var c string
		err := db.QueryRow(`SELECT cursor FROM sync_state WHERE source = 'lacrm' AND stream = ?`, stream).Scan(&c)
		if err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		return c
	}
	if cursor("contacts") == "" || cursor("pipeline_items") == "" {
		t.Fatal("the run left no LACRM cursors")
	}
	out, _ := cli(exitOK, "status", "--json")
	var st statusDoc
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	var account string
	for _, a := range st.Accounts {
		if a.Source == "lacrm" {
			account = a.AccountID
		}
	}

	// Usage errors, each naming what there is.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"state", "reset", "--yes"}, "--connection NAME is required"},
		{[]string{"state", "reset", "--connection", "nope", "--yes"}, "the connections are: sandbox-"},
		{[]string{"state", "reset", "--connection", "sandbox-lacrm", "--account", "nope", "--yes"}, "it has: " + account},
		{[]string{"state", "reset", "--connection", "sandbox-lacrm", "--stream", "deals", "--yes"}, "the streams are: contacts, custom_fields, pipeline_items, pipelines"},
		// In a test stdin is no terminal: without --yes there is nobody to confirm.
		{[]string{"state", "reset", "--connection", "sandbox-lacrm"}, "confirm with --yes"},
	} {
		if _, stderr := cli(exitUsage, tc.args...); !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: stderr %q, want %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
	if cursor("pipeline_items") == "" {
		t.Fatal("a refused reset cleared a cursor")
	}

	out, _ = cli(exitOK, "state", "reset", "--connection", "sandbox-lacrm", "--account", account, "--stream", "pipeline_items", "--yes")
	if !strings.Contains(out, "reset 1 cursor(s) of lacrm/"+account+" stream pipeline_items") {
		t.Errorf("reset said %q", out)
	}
	if cursor("pipeline_items") != "" || cursor("contacts") == "" {
		t.Fatalf("after the reset: pipeline_items %q, contacts %q", cursor("pipeline_items"), cursor("contacts"))
	}
	var revs int
	if err := db.QueryRow(`SELECT count(*) FROM leads WHERE source = 'lacrm'`).Scan(&revs); err != nil || revs == 0 {
		t.Fatalf("the reset lost leads: %d, %v", revs, err)
	}
	cli(exitOK, "run", "--once", "--progress", "off", "--connection", "sandbox-lacrm")
	if cursor("pipeline_items") == "" {
		t.Fatal("the run after the reset left no cursor")
	}
}
