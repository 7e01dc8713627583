package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// leadsyncBin is the leadsync binary built once for the tests that run it as a process
// (signals, crashes, the systemd protocol).
var leadsyncBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "leadsync-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	leadsyncBin = filepath.Join(dir, "leadsync")
	// -buildvcs=auto: the VCS revision goes into the binary when there is a checkout, as
	// in a release build (GOFLAGS may say -buildvcs=false).
	out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", leadsyncBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building leadsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the CLI in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHelpDocumentsEveryCommand(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "--help")
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	// Every command (but cobra's own help and completion) has its line in the overview.
	for _, path := range commandPaths(newCLI(io.Discard, io.Discard).root) {
		if path[0] == "help" || path[0] == "completion" {
			continue
		}
		if cmd := "leadsync " + strings.Join(path, " "); !strings.Contains(out, cmd) {
			t.Errorf("--help does not mention %q", cmd)
		}
	}
	for _, s := range []string{"run --once", "Exit codes"} {
		if !strings.Contains(out, s) {
			t.Errorf("--help does not mention %q", s)
		}
	}
}

func TestBadConfigExitsTwoNamingTheField(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("connections:\n  - name: a\n    source: leadconnector\n    api_verison: v3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "config", "check", "--config", path)
	if code != exitUsage || !strings.Contains(stderr, "connections[0].api_verison (line 4)") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	t.Parallel()
	if code, _, _ := runCLI(t, "frobnicate"); code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	if code, _, stderr := runCLI(t, "run", "--full"); code != exitUsage || !strings.Contains(stderr, "--once") {
		t.Fatalf("--full without --once: exit %d, %q", code, stderr)
	}
}

func TestFlagsMayFollowPositionalArguments(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := "warehouse:\n  url: postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path=wh\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "grant-analyst", "analyst", "--print", "--config", path)
	if code != exitOK || !strings.Contains(out, `GRANT SELECT ON "wh".leads_deidentified TO "analyst";`) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, _, _ := runCLI(t, "grant-analyst", "a", "b", "--config", path); code != exitUsage {
		t.Fatalf("two roles: exit %d, want %d", code, exitUsage)
	}
}

func TestRunWithoutConnectionsIsAConfigError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("state_dir: "+dir+"/state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "--once", "--config", path)
	if code != exitUsage || !strings.Contains(stderr, "no enabled connections") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "leads.db")); err == nil {
		t.Fatal("a run with nothing to do created a warehouse")
	}
}
