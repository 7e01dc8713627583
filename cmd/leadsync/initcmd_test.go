package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/leadsync/leadsync/internal/config"
)

// initSecrets are the secret files a configuration names, from the file itself.
func initSecrets(t *testing.T, path string) []string {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the configuration init wrote does not load: %v", err)
	}
	var files []string
	for _, c := range cfg.Connections {
		for _, s := range c.Secrets() {
			if s.File == "" {
				t.Fatalf("%s: secret %s is not a file", path, s)
			}
			files = append(files, s.File)
		}
	}
	return files
}

// fillSecrets writes a dummy value into each secret file, as an operator would: into the
// file, keeping its mode.
func fillSecrets(t *testing.T, files []string) {
	t.Helper()
	for _, f := range files {
		if err := os.WriteFile(f, []byte("dummy-client-secret-4f9c2a\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

// What init writes from flags names its secret files, which it creates empty and private;
// config check refuses it until they are filled in, then passes.
func TestInitFromFlagsPassesConfigCheck(t *testing.T) {
	t.Parallel()
	all := strings.Join(initVendorNames(), ",")
	cases := [][]string{{"--vendor", all}, {"--vendor", all, "--warehouse", "postgres"}}
	for _, name := range initVendorNames() {
		cases = append(cases, []string{"--vendor", name})
	}
	for i, flags := range cases {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "etc")
			args := append([]string{"init", "--dir", dir}, flags...)
			if i == 0 { // the state directory and the warehouse URL given
				args = append(args, "--state-dir", filepath.Join(dir, "state"), "--warehouse", "sqlite://"+filepath.Join(dir, "wh.db"))
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("init: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			path := filepath.Join(dir, "config.yaml")
			checkMode(t, path, 0o640)
			checkMode(t, filepath.Join(dir, "secrets"), 0o700)
			files := initSecrets(t, path)
			if len(files) < len(strings.Split(flags[1], ",")) {
				t.Fatalf("%d secret files for %s", len(files), flags[1])
			}
			for _, f := range files {
				checkMode(t, f, 0o600)
				if !strings.Contains(stdout, f) {
					t.Errorf("the next steps do not name the secret file %s:\n%s", f, stdout)
				}
			}
			for _, want := range []string{"leadsync config check --config " + path, "leadsync auth login ", "leadsync run --once --config " + path} {
				if !strings.Contains(stdout, want) {
					t.Errorf("the next steps do not say %q:\n%s", want, stdout)
				}
			}

			code, _, stderr = runCLI(t, "config", "check", "--config", path)
			if code != exitUsage || !strings.Contains(stderr, files[0]+" is empty") {
				t.Fatalf("config check with empty secret files: exit %d, want %d naming %s\n%s", code, exitUsage, files[0], stderr)
			}
			fillSecrets(t, files)
			code, stdout, stderr = runCLI(t, "config", "check", "--config", path)
			if code != exitOK || !strings.Contains(stdout, ": ok (") {
				text, _ := os.ReadFile(path)
				t.Fatalf("config check: exit %d\nstdout: %s\nstderr: %s\n%s", code, stdout, stderr, text)
			}
			if i == 0 {
				cfg, err := config.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				if cfg.StateDir != filepath.Join(dir, "state") || cfg.Warehouse.URL != "sqlite://"+filepath.Join(dir, "wh.db") {
					t.Errorf("state_dir %q, warehouse %q", cfg.StateDir, cfg.Warehouse.URL)
				}
			}
		})
	}
}

// The defaults init shows as comments are the vendors' own: uncommented as they are, they
// change nothing.
func TestInitDefaultsUncommentAsIs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plan := &initPlan{path: filepath.Join(dir, "config.yaml"), secretsDir: filepath.Join(dir, "secrets"), warehouse: "sqlite"}
	for _, v := range initVendors() {
		plan.conns = append(plan.conns, newInitConn(v))
	}
	text, written, err := plan.check()
	if err != nil {
		t.Fatal(err)
	}
	uncommented := regexp.MustCompile(`(?m)^    # ([a-z_]+): `).ReplaceAllString(text, "    $1: ")
	if uncommented == text {
		t.Fatalf("no defaults shown:\n%s", text)
	}
	set, err := config.Parse([]byte(uncommented), plan.path)
	if err != nil {
		t.Fatalf("the defaults, uncommented, do not load: %v\n%s", err, uncommented)
	}
	for i, c := range written.Connections {
		s := set.Connections[i]
		if !reflect.DeepEqual(s.Options, c.Options) || s.Concurrency != c.Concurrency {
			t.Errorf("%s: uncommented defaults %+v (concurrency %d), the defaults %+v (concurrency %d)", c.Name, s.Options, s.Concurrency, c.Options, c.Concurrency)
		}
	}
}

// An existing configuration is replaced only with --force, and a secret file that exists is
// never emptied.
func TestInitRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if code, _, stderr := runCLI(t, "init", "--vendor", "lacrm", "--config", path); code != exitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	files := initSecrets(t, path)
	fillSecrets(t, files)
	before, _ := os.ReadFile(path)

	code, stdout, stderr := runCLI(t, "init", "--vendor", "lacrm,localiq", "--config", path)
	if code != exitUsage || !strings.Contains(stderr, path+" exists") || !strings.Contains(stderr, "--force") {
		t.Fatalf("second init: exit %d, want %d naming %s\nstdout: %s\nstderr: %s", code, exitUsage, path, stdout, stderr)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatalf("a refused init changed the configuration:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets", "localiq-client-secret")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused init wrote a secret file: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "init", "--vendor", "lacrm,localiq", "--config", path, "--force")
	if code != exitOK {
		t.Fatalf("init --force: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	checkMode(t, path, 0o640)
	if text, _ := os.ReadFile(path); !strings.Contains(string(text), "source: localiq") {
		t.Errorf("--force did not replace the configuration:\n%s", text)
	}
	if b, _ := os.ReadFile(files[0]); string(b) != "dummy-client-secret-4f9c2a\n" {
		t.Errorf("--force emptied the secret file %s: %q", files[0], b)
	}
	if !strings.Contains(stdout, files[0]+"  (kept") {
		t.Errorf("the output does not say %s was kept:\n%s", files[0], stdout)
	}
	checkMode(t, filepath.Join(dir, "secrets", "localiq-client-secret"), 0o600)
}

// Wrong usage exits 2, says what exists, and writes nothing.
func TestInitUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vendor", "hubspot"}, `unknown vendor "hubspot": want one of ` + strings.Join(initVendorNames(), ", ")},
		{[]string{"--vendor", "lacrm", "--vendor", "LACRM"}, `vendor "lacrm" chosen twice`},
		{[]string{"--vendor", "lacrm", "--config", "x.yaml"}, "--dir or --config, not both"},
		{[]string{"--vendor", "lacrm", "--warehouse", "mysql"}, "want sqlite, postgres or a database URL"},
		{[]string{"--vendor", "lacrm", "--warehouse", "postgres://u:hunter2@db/leads"}, "--warehouse: the URL holds a password"},
		{[]string{"--vendor", "lacrm", "extra"}, "takes no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "etc")
			code, stdout, stderr := runCLI(t, append([]string{"init", "--dir", dir}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d saying %q\nstdout: %s\nstderr: %s", code, exitUsage, tc.want, stdout, stderr)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("the error repeats the password: %s", stderr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("init wrote %s: %v", dir, err)
			}
		})
	}
	// Without --vendor, init asks only on a terminal.
	var stdout, stderr bytes.Buffer
	dir := filepath.Join(t.TempDir(), "etc")
	code, err := cmdInit(&flags{stderr: &stderr}, initOptions{dir: dir, warehouse: "sqlite"}, strings.NewReader("lacrm\n"), &stdout, &stderr)
	if code != exitUsage || err == nil || !strings.Contains(err.Error(), "--vendor NAME") {
		t.Errorf("no --vendor, not a terminal: exit %d, %v", code, err)
	}
}

// The prompts take names or numbers, ask again after a wrong answer, and check each
// connection's values before going on.
func TestInitPrompts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	answers := strings.Join([]string{
		"hubspot",                    // unknown: asked again
		"localiq, 1",                 // LocaliQ, and the first vendor listed: lacrm
		"mysql://x",                  // not a warehouse: asked again
		"",                           // sqlite
		"liq",                        // LocaliQ's connection name
		"liq-client",                 // client_id
		"not-an-email",               // user: refused, the connection asked again
		"", "", "ops@agency.example", // name and client_id kept, user fixed
		"liq", "", // lacrm: LocaliQ's name, refused
		"crm", "", // another name; the example client_id kept
	}, "\n") + "\n"
	var out bytes.Buffer
	plan := &initPlan{path: filepath.Join(dir, "config.yaml"), secretsDir: filepath.Join(dir, "secrets")}
	if err := askPlan(newPrompter(strings.NewReader(answers), &out), plan, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{`unknown vendor "hubspot"`, `unsupported database URL scheme "mysql"`, `user: "not-an-email" is not an email address`, `name: duplicate connection name "liq"`,
		"user, the email of the business user whose advertisers are synced [not-an-email]: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the prompts do not say %q:\n%s", want, out.String())
		}
	}
	first := initVendors()[0]
	if len(plan.conns) != 2 || plan.conns[0].name != "liq" || plan.conns[1].vendor.Name != first.Name || plan.conns[1].name != "crm" || plan.warehouse != "sqlite" {
		t.Fatalf("plan: %+v %+v", plan, plan.conns)
	}
	text, _, err := plan.check()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: liq\n", `client_id: "liq-client"  # the OAuth`, `user: "ops@agency.example"  # the email`,
		"name: crm\n", `client_id: "<client id>"  # replace: `} {
		if !strings.Contains(text, want) {
			t.Errorf("the configuration has no %q:\n%s", want, text)
		}
	}
	// The end of the input is an answer that never comes: nothing is written.
	plan = &initPlan{path: filepath.Join(dir, "config.yaml"), secretsDir: filepath.Join(dir, "secrets")}
	if err := askPlan(newPrompter(strings.NewReader("lacrm\n"), io.Discard), plan, true); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("end of input: %v", err)
	}
}

// On a real terminal, without --vendor, init asks; what it writes passes config check once
// the secrets are filled in.
func TestInitAsksOnATerminal(t *testing.T) {
	t.Parallel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	dir := t.TempDir()
	cmd := exec.Command(leadsyncBin, "init", "--dir", dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	term := newTermReader(ptmx)
	say := func(prompt, answer string) {
		t.Helper()
		term.expect(t, prompt)
		if _, err := io.WriteString(ptmx, answer+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	say("Which vendors?", "lacrm")
	say("Warehouse: sqlite, postgres or a database URL [sqlite]: ", "")
	say("connection name [lacrm]: ", "crm")
	say("client_id, ", "my-lacrm-app")
	term.expect(t, "leadsync run --once --config "+filepath.Join(dir, "config.yaml"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("init on a terminal: %v\n%s", err, term.seen())
	}

	path := filepath.Join(dir, "config.yaml")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "name: crm\n") || !strings.Contains(string(text), `client_id: "my-lacrm-app"`) {
		t.Errorf("the configuration does not have the answers:\n%s", text)
	}
	files := initSecrets(t, path)
	if len(files) != 1 || files[0] != filepath.Join(dir, "secrets", "crm-client-secret") {
		t.Fatalf("secret files %q", files)
	}
	checkMode(t, files[0], 0o600)
	fillSecrets(t, files)
	if code, stdout, stderr := runCLI(t, "config", "check", "--config", path); code != exitOK {
		t.Fatalf("config check: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// termReader collects what a program writes to a terminal.
type termReader struct {
	mu     sync.Mutex
	buf    []byte
	closed bool          // the program has exited (reads fail)
	more   chan struct{} // a signal that buf grew or closed is set
	off    int           // the end of the last match
}

func newTermReader(r io.Reader) *termReader {
	tr := &termReader{more: make(chan struct{}, 1)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			tr.mu.Lock()
			tr.buf = append(tr.buf, b[:n]...)
			tr.closed = err != nil // EIO once the program has exited
			tr.mu.Unlock()
			select {
			case tr.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return tr
}

// expect waits until the terminal shows s after the last match.
func (tr *termReader) expect(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		tr.mu.Lock()
		i := bytes.Index(tr.buf[tr.off:], []byte(s))
		if i >= 0 {
			tr.off += i + len(s)
		}
		closed := tr.closed
		tr.mu.Unlock()
		switch {
		case i >= 0:
			return
		case closed:
			t.Fatalf("the terminal closed before showing %q:\n%s", s, tr.seen())
		}
		select {
		case <-tr.more:
		case <-deadline:
			t.Fatalf("the terminal did not show %q within a minute:\n%s", s, tr.seen())
		}
	}
}

func (tr *termReader) seen() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return string(tr.buf)
}
