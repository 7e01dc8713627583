package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// auth password with a username but no password in the configuration reads --password-file
// (the prompt is the same path on a terminal): configuration validation leaves it reachable.
func TestAuthPasswordFromFile(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(47), testenv.SQLite)
	b, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := regexp.MustCompile(`(?m)^    password: .*\n`).ReplaceAllString(string(b), "")
	if cfg == string(b) {
		t.Fatal("the sandbox configuration has no password line")
	}
	if err := os.WriteFile(env.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(liqtest.DefaultSandboxPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "auth", "password", "sandbox-localiq", "--password-file", pw, "--config", env.ConfigPath)
	if code != exitOK || !strings.Contains(stdout, "authorized as") {
		t.Fatalf("auth password --password-file: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, liqtest.DefaultSandboxPassword) {
		t.Fatal("the password was printed")
	}
	// Without the file, and with no terminal, it says where a password may come from.
	code, _, stderr = runCLI(t, "auth", "password", "sandbox-localiq", "--config", env.ConfigPath)
	if code != exitUsage || !strings.Contains(stderr, "--password-file") {
		t.Fatalf("auth password without a password: exit %d\n%s", code, stderr)
	}
}
