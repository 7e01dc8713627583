package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
)

// The warehouse's disk fills during `run --once`, so closing the run in the ledger fails
// too: the summary of what was synced is still printed, then the error, plainly saying the
// disk is full, and the exit code is 1. The disk is a 768 KiB tmpfs (the migrated schema
// takes about 200 KiB, and its WAL as much again while it migrates), mounted in a private
// mount namespace of the leadsync process, so nothing outside it sees the mount.
func TestRunOnceSummaryWhenTheWarehouseDiskIsFull(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) for a private tmpfs mount")
	}
	env := testenv.New(t, testenv.Small(31), testenv.SQLite)
	env.Authorized(t)
	disk := filepath.Join(env.Dir, "small-disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(env.Dir, "small-disk.yaml")
	cfg = bytes.Replace(cfg, []byte(env.WarehouseURL), []byte("sqlite://"+filepath.Join(disk, "leads.db")), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=768k tmpfs "$1" && exec "$2" run --once --progress off --config "$3"`,
		"sh", disk, leadsyncBin, cfgPath)
	cmd.Env = append(os.Environ(), "LEADSYNC_CONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailed {
		t.Fatalf("run --once on a full disk: %v, want exit %d\nstdout: %s\nstderr: %s", err, exitFailed, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "finish run") {
		t.Fatalf("closing the run did not fail, so this test proves nothing\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}
	if !regexp.MustCompile(`(?m)^run \d+ failed: \d+ accounts ok, \d+ restricted, [1-9]\d* failed; `).MatchString(stdout.String()) {
		t.Errorf("no summary of the run:\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "database or disk is full") {
		t.Errorf("the error does not say the disk is full:\n%s", stderr.String())
	}
}

// `status` says which connections' grants need `auth login` and which accounts sync under
// them, in its sections, in --wide's table and in --json.
func TestStatusShowsGrantsThatNeedReauth(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(32), testenv.SQLite)
	env.Authorized(t)
	if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath); code != exitOK {
		t.Fatalf("first run: exit %d\nstdout: %s\nstderr: %s", code, stdout, proofTail(stderr))
	}
	for _, g := range env.Sandbox.LACRM.Tokens().Grants() {
		env.Sandbox.LACRM.RevokeGrant(g.ID)
	}
	if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath); code != exitFailed {
		t.Fatalf("run with the LACRM grant revoked: exit %d, want %d\nstdout: %s\nstderr: %s", code, exitFailed, stdout, proofTail(stderr))
	}

	// The connections first, each with its grant (and the fix); then the accounts needing
	// attention: those under the revoked grant.
	code, out, errOut := runCLI(t, "status", "--config", env.ConfigPath)
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	conns, attention, ok := strings.Cut(out, "\n\n")
	if !ok || !strings.HasPrefix(conns, "CONNECTIONS\n") || !strings.HasPrefix(attention, "ACCOUNTS NEEDING ATTENTION\n") {
		t.Fatalf("status has no connections and attention sections:\n%s", out)
	}
	for conn, want := range map[string]string{"sandbox-lacrm": "needs re-auth", "sandbox-localiq": "ok", "sandbox-leadconnector": "ok"} {
		if !regexp.MustCompile(`(?m)^` + conn + `\s+\S+\s+` + regexp.QuoteMeta(want) + `\s`).MatchString(conns) {
			t.Errorf("connections section does not show %s's grant as %q:\n%s", conn, want, conns)
		}
	}
	if !regexp.MustCompile(`(?m)^sandbox-lacrm\s.*\n(  error: .*\n)?  fix: leadsync auth login sandbox-lacrm$`).MatchString(conns) {
		t.Errorf("connections section does not give sandbox-lacrm's fix:\n%s", conns)
	}
	sawLACRM := false
	for _, l := range strings.Split(attention, "\n")[2:] {
		f := strings.Fields(l)
		switch {
		case len(f) < 2:
		case f[0] == "lacrm":
			sawLACRM = true
			if !strings.Contains(l, "needs re-auth") || !strings.Contains(l, "leadsync auth login sandbox-lacrm") {
				t.Errorf("an account under the revoked grant is shown as %q", l)
			}
		case strings.Contains(l, "re-auth"):
			t.Errorf("an account under a good grant is shown as %q", l)
		}
	}
	if !sawLACRM {
		t.Fatalf("status lists no LACRM account needing attention:\n%s", out)
	}

	// --wide: every account, the ACCESS column saying which need the fix.
	code, out, errOut = runCLI(t, "status", "--wide", "--config", env.ConfigPath)
	if code != exitOK {
		t.Fatalf("status --wide: exit %d: %s", code, errOut)
	}
	_, accounts, _ := strings.Cut(out, "\n\nACCOUNTS\n")
	sawLACRM = false
	for _, l := range strings.Split(accounts, "\n")[1:] {
		f := strings.Fields(l)
		switch {
		case len(f) < 2:
		case f[0] == "lacrm":
			sawLACRM = true
			if !strings.Contains(l, "NEEDS RE-AUTH: leadsync auth login sandbox-lacrm") || regexp.MustCompile(`\bok\b`).MatchString(l) {
				t.Errorf("--wide: an account under the revoked grant is shown as %q", l)
			}
		case strings.Contains(l, "NEEDS RE-AUTH"):
			t.Errorf("--wide: an account under a good grant is shown as %q", l)
		}
	}
	if !sawLACRM {
		t.Fatalf("status --wide lists no LACRM account:\n%s", out)
	}

	code, out, errOut = runCLI(t, "status", "--json", "--config", env.ConfigPath)
	if code != exitOK {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	var doc struct {
		Accounts []struct {
			Source      string `json:"source"`
			AccountID   string `json:"account_id"`
			Connection  string `json:"connection"`
			NeedsReauth bool   `json:"needs_reauth"`
		} `json:"accounts"`
		Connections []struct {
			Connection  string `json:"connection"`
			NeedsReauth bool   `json:"needs_reauth"`
		} `json:"connections"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, a := range doc.Accounts {
		if want := a.Source == "lacrm"; a.NeedsReauth != want || a.Connection != "sandbox-"+a.Source || a.AccountID == "" {
			t.Errorf("account %+v: want needs_reauth %v under sandbox-%s", a, want, a.Source)
		}
	}
	if len(doc.Connections) != 3 {
		t.Errorf("--json lists %d connections, want 3: %s", len(doc.Connections), out)
	}
	for _, c := range doc.Connections {
		if c.NeedsReauth != (c.Connection == "sandbox-lacrm") {
			t.Errorf("connection %+v", c)
		}
	}
}

// A missing, short or malformed key file is a configuration error naming
// token_store.key_file (exit 2) for every command that uses the token store, `config check`
// included, and nothing is created.
func TestKeyFileProblemsAreConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  []byte // nil: no file
		want string
	}{
		{"missing", nil, "no such file"},
		{"31 bytes", bytes.Repeat([]byte{0x01}, 31), "got 31 bytes"},
		{"malformed", []byte("not a key\n"), "want 32 raw bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n  url: sqlite://$DIR/leads.db\n"+
				"token_store:\n  key_file: $DIR/token.key\nhttp:\n  listen: \"off\"\n"+proofGoodConn)
			dir := filepath.Dir(path)
			if tc.key != nil {
				if err := os.WriteFile(filepath.Join(dir, "token.key"), tc.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, args := range [][]string{{"config", "check"}, {"run", "--once", "--progress", "off"}, {"status"},
				{"auth", "status"}, {"auth", "forget", "lacrm"}} {
				code, stdout, stderr := runCLI(t, append(args, "--config", path)...)
				if code != exitUsage || !strings.Contains(stderr, "token_store.key_file (line 5)") || !strings.Contains(stderr, tc.want) {
					t.Errorf("%s: exit %d, want %d naming token_store.key_file (line 5) and %q\nstdout: %s\nstderr: %s",
						strings.Join(args, " "), code, exitUsage, tc.want, stdout, proofTail(stderr))
				}
			}
			for _, name := range []string{"leads.db", "state/tokens.db"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("%s was created despite the bad key", name)
				}
			}
		})
	}
}

// `config check` rejects the LEADSYNC_* overrides that `run` and `status` reject. The
// environment is the process's, so this runs the binary.
func TestConfigCheckRejectsBadEnvironmentOverrides(t *testing.T) {
	t.Parallel()
	path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n  url: sqlite://$DIR/leads.db\nhttp:\n  listen: \"off\"\n"+proofGoodConn)
	for _, args := range [][]string{{"config", "check"}, {"status"}} {
		cmd := exec.Command(leadsyncBin, append(args, "--config", path)...)
		cmd.Env = append(os.Environ(), "LEADSYNC_CONFIG=", "LEADSYNC_LEASE_DURATION=forever")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), "$LEADSYNC_LEASE_DURATION") {
			t.Errorf("%s with LEADSYNC_LEASE_DURATION=forever: %v, want exit %d naming it:\n%s", args[0], err, exitUsage, out)
		}
	}
}

// A secret file every user can read, a symlinked one, and a password inline in a database
// URL are warned about (naming the field, never the value), and refused with --strict.
func TestStrictRefusesExposedSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config, field string
		setup               func(t *testing.T, dir string)
	}{
		{"world-readable secret file", proofGoodConn, "connections[0].client_secret (line 6)", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "secret"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlinked secret file", strings.Replace(proofGoodConn, "$DIR/secret", "$DIR/link", 1), "connections[0].client_secret (line 6)",
			func(t *testing.T, dir string) {
				if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
			}},
		{"password in the warehouse URL", "warehouse:\n  url: postgres://leadsync:hunter2@127.0.0.1:1/leads\n" + proofGoodConn,
			"warehouse.url (line 3)", func(*testing.T, string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := proofWriteConfig(t, "state_dir: $DIR/state\n"+tc.config)
			tc.setup(t, filepath.Dir(path))
			code, stdout, stderr := runCLI(t, "config", "check", "--config", path)
			if code != exitOK || !strings.Contains(stderr, "WARN") || !strings.Contains(stderr, strings.Fields(tc.field)[0]) {
				t.Errorf("without --strict: exit %d, want %d and a warning naming %s\nstdout: %s\nstderr: %s", code, exitOK, tc.field, stdout, stderr)
			}
			code, stdout, stderr2 := runCLI(t, "config", "check", "--strict", "--config", path)
			if code != exitUsage || !strings.Contains(stderr2, tc.field) {
				t.Errorf("--strict: exit %d, want %d naming %s\nstdout: %s\nstderr: %s", code, exitUsage, tc.field, stdout, stderr2)
			}
			if s := stderr + stderr2; strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
				t.Errorf("a secret value in the output: %s", s)
			}
		})
	}
}

// A merge-key bomb of about 600 bytes is refused as a configuration error naming its line,
// rather than expanding to billions of values.
func TestAliasBombIsAConfigError(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("connections:\n  - &c0 {name: a, source: lacrm, client_id: x}\n")
	for i := 1; i < 15; i++ {
		p := fmt.Sprintf("*c%d", i-1)
		fmt.Fprintf(&b, "  - &c%d {<<: [%s, %s, %s, %s]}\n", i, p, p, p, p)
	}
	path := filepath.Join(t.TempDir(), "bomb.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "config", "check", "--config", path)
	if code != exitUsage || !regexp.MustCompile(`connections\[\d+\] \(line \d+\): aliases and merge keys`).MatchString(stderr) {
		t.Fatalf("exit %d, stderr %.2000s", code, stderr)
	}
}
