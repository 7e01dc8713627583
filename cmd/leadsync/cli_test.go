package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// cliConfig writes a configuration with an enabled connection lacrm, a disabled one old,
// and a secret file every user can read (which gets a warning, or with --strict exit 2).
func cliConfig(t *testing.T) string {
	t.Helper()
	path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n  url: sqlite://$DIR/leads.db\nhttp:\n  listen: \"off\"\n"+
		proofGoodConn+"  - name: localiq\n    source: localiq\n    client_id: li\n    client_secret: {file: $DIR/secret}\n    user: ops@example.com\n"+
		"  - name: old\n    source: lacrm\n    enabled: false\n    client_id: x\n    client_secret: {file: $DIR/secret}\n")
	if err := os.Chmod(filepath.Join(filepath.Dir(path), "secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The global flags work before the command, between a command and its subcommand, and
// after it, with either spelling of a value.
func TestGlobalFlagsAnywhere(t *testing.T) {
	t.Parallel()
	path := cliConfig(t)
	for _, tc := range []struct {
		args     []string
		code     int
		stderr   string // in stderr
		noStderr string // not in stderr
	}{
		{args: []string{"--config", path, "config", "check"}, stderr: "WARN"},
		{args: []string{"config", "--config", path, "check"}, stderr: "WARN"},
		{args: []string{"config", "check", "--config", path}, stderr: "WARN"},
		{args: []string{"--config=" + path, "config", "check"}, stderr: "WARN"},
		{args: []string{"--strict", "--config", path, "config", "check"}, code: exitUsage, stderr: "--strict: "},
		{args: []string{"config", "check", "--config", path, "--strict"}, code: exitUsage, stderr: "--strict: "},
		{args: []string{"--log-format", "json", "config", "check", "--config", path}, stderr: `"level":"WARN"`},
		{args: []string{"config", "check", "--config", path, "--log-format=text"}, stderr: "level=WARN"},
		{args: []string{"--log-level", "error", "--config", path, "config", "check"}, noStderr: "WARN"},
		{args: []string{"config", "check", "--log-level", "ERROR", "--config", path}, noStderr: "WARN"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) || (tc.noStderr != "" && strings.Contains(stderr, tc.noStderr)) {
				t.Errorf("exit %d, want %d; stderr wants %q, not %q\nstdout: %s\nstderr: %s", code, tc.code, tc.stderr, tc.noStderr, stdout, stderr)
			}
			if code == exitOK && !strings.Contains(stdout, ": ok (3 connections, 2 enabled)") {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}

// commandPaths lists every command a person can call, as argument lists.
func commandPaths(c *cobra.Command) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() {
			continue
		}
		path := strings.Fields(sub.CommandPath())[1:]
		out = append(out, path)
		out = append(out, commandPaths(sub)...)
	}
	return out
}

// `help <command>` and `<command> --help` print the same help for every command, exit 0.
func TestHelpForEveryCommand(t *testing.T) {
	t.Parallel()
	paths := commandPaths(newCLI(io.Discard, io.Discard).root)
	for _, want := range []string{"run", "auth login", "auth rotate-key", "config check", "grant-analyst", "completion bash", "version"} {
		if !slices.ContainsFunc(paths, func(p []string) bool { return strings.Join(p, " ") == want }) {
			t.Fatalf("the command tree has no %q: %q", want, paths)
		}
	}
	for _, path := range append(paths, []string{}) {
		t.Run("leadsync "+strings.Join(path, " "), func(t *testing.T) {
			t.Parallel()
			code, viaHelp, stderr := runCLI(t, append([]string{"help"}, path...)...)
			if code != exitOK || !strings.Contains(viaHelp, "Usage:\n  leadsync "+strings.Join(path, " ")) || stderr != "" {
				t.Fatalf("help %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(path, " "), code, viaHelp, stderr)
			}
			code, viaFlag, _ := runCLI(t, append(path, "--help")...)
			if code != exitOK || viaFlag != viaHelp {
				t.Errorf("%s --help: exit %d, and it differs from help %s:\n%s\n----\n%s", strings.Join(path, " "), code, strings.Join(path, " "), viaFlag, viaHelp)
			}
			if !strings.Contains(viaHelp, "--config FILE") {
				t.Errorf("the help does not list the global flags:\n%s", viaHelp)
			}
		})
	}
	// The global help documents the exit codes; a command's does not repeat them.
	if _, out, _ := runCLI(t, "help"); !strings.Contains(out, "Exit codes: 0 success") {
		t.Errorf("help has no exit codes:\n%s", out)
	}
	if _, out, _ := runCLI(t, "help", "status"); strings.Contains(out, "Exit codes") {
		t.Errorf("help status repeats the exit codes:\n%s", out)
	}
}

// Every usage error exits 2, says what was wrong and, for a typo, what was meant.
func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string // in stderr
	}{
		{[]string{}, nil}, // the help, on stdout
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate" for "leadsync"`, "leadsync --help"}},
		{[]string{"stauts"}, []string{"Did you mean this?\n\tstatus"}},
		{[]string{"--config", "x.yaml", "stauts"}, []string{"Did you mean this?\n\tstatus"}},
		{[]string{"run", "--onc"}, []string{"unknown flag: --onc", "Did you mean this?\n\t--once", "leadsync run --help"}},
		{[]string{"status", "--jsn"}, []string{"Did you mean this?\n\t--json"}},
		{[]string{"status", "--conifg", "x"}, []string{"--config"}},
		{[]string{"run", "--progress", "sometimes"}, []string{`"--progress"`, "want one of auto, on, off"}},
		{[]string{"--log-level", "loud", "status"}, []string{"want one of debug, info, warn, error"}},
		{[]string{"--log-format", "xml", "status"}, []string{"want one of auto, text, json"}},
		{[]string{"run", "--full"}, []string{"--once"}},
		{[]string{"run", "--once", "--since", "yesterday"}, []string{"want a date like"}},
		{[]string{"status", "extra"}, []string{`leadsync status takes no arguments, got "extra"`}},
		{[]string{"run", "--once", "now"}, []string{"takes no arguments"}},
		{[]string{"version", "--short"}, []string{"unknown flag: --short"}},
		{[]string{"version", "x"}, []string{"takes no arguments"}},
		{[]string{"auth", "login"}, []string{"want exactly one connection"}},
		{[]string{"auth", "forget", "a", "b"}, []string{`want exactly one connection, got "a b"`}},
		{[]string{"grant-analyst"}, []string{"want exactly one role"}},
		{[]string{"auth"}, nil},
		{[]string{"auth", "logn", "x"}, []string{`unknown command "logn" for "leadsync auth"`, "Did you mean this?\n\tlogin"}},
		{[]string{"auth", "rotate-key"}, []string{"--new-key FILE is required"}},
		{[]string{"config"}, nil},
		{[]string{"config", "chek"}, []string{"Did you mean this?\n\tcheck"}},
		{[]string{"help", "nope"}, []string{`unknown command "nope" for "leadsync"`}},
		{[]string{"help", "auth", "logn"}, []string{"Did you mean this?\n\tlogin"}},
		{[]string{"completion", "tcsh"}, []string{`"tcsh"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if tc.want == nil && !strings.Contains(stdout, "Usage:") {
				t.Errorf("no help on stdout:\n%s", stdout)
			}
		})
	}
}

// A connection name the configuration does not enable is a usage error that lists the
// names there are, before anything is opened.
func TestWrongConnectionNameListsTheNames(t *testing.T) {
	t.Parallel()
	path := cliConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--once", "--progress", "off", "--connection", "lacrm", "--connection", "nope"},
			`no connection named "nope" in ` + path + `; the enabled connections are: lacrm, localiq`},
		{[]string{"run", "--once", "--connection", "old"}, `connection "old" is disabled`},
		{[]string{"auth", "login", "lacrm-typo", "--no-browser"}, "the enabled connections are: lacrm, localiq"},
		{[]string{"auth", "password", "nope", "--password-file", "/dev/null"}, "the enabled connections are: lacrm, localiq"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, append(tc.args, "--config", path)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d saying %q\nstdout: %s\nstderr: %s", code, exitUsage, tc.want, stdout, stderr)
			}
		})
	}
	dir := filepath.Dir(path)
	for _, name := range []string{"leads.db", "state/tokens.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s was created for a connection that does not exist", name)
		}
	}
}

// The completion scripts come from the command tree, and completing asks it.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash":       "__start_leadsync",
		"zsh":        "#compdef leadsync",
		"fish":       "complete -c leadsync",
		"powershell": "Register-ArgumentCompleter",
	} {
		code, out, stderr := runCLI(t, "completion", shell)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, no %q in %d bytes; stderr %s", shell, code, want, len(out), stderr)
		}
		// The shells that are here check the script's syntax.
		if sh, err := exec.LookPath(shell); err == nil && shell != "powershell" {
			script := filepath.Join(t.TempDir(), "leadsync."+shell)
			if err := os.WriteFile(script, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, b)
			}
		}
	}
	path := cliConfig(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"st"}, []string{"status\t", "completion"}}, // completion: 'st' is no prefix of it
		{[]string{"auth", "login", "--config", path, ""}, []string{"lacrm\tlacrm", "localiq\tlocaliq"}},
		{[]string{"--config", path, "run", "--once", "--connection", ""}, []string{"lacrm", "localiq"}},
		{[]string{"run", "--progress", ""}, []string{"auto", "on", "off"}},
		{[]string{"--log-level", ""}, []string{"debug", "warn"}},
		{[]string{"help", "auth", ""}, []string{"login\t", "rotate-key\t"}},
	} {
		code, out, stderr := runCLI(t, append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
		if code != exitOK {
			t.Errorf("complete %q: exit %d, stderr %s", tc.args, code, stderr)
			continue
		}
		lines := strings.Split(out, "\n")
		for _, w := range tc.want {
			found := slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) })
			if strings.HasSuffix(w, "completion") {
				found = !found
			}
			if !found {
				t.Errorf("complete %q: want %q:\n%s", tc.args, w, out)
			}
		}
		if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "old") }) {
			t.Errorf("complete %q offers the disabled connection:\n%s", tc.args, out)
		}
	}
}

// `leadsync man DIR` writes a page for every command from the same tree; it is not in
// the help.
func TestManPages(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "man1")
	if code, stdout, stderr := runCLI(t, "man", dir); code != exitOK {
		t.Fatalf("man: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, path := range append(commandPaths(newCLI(io.Discard, io.Discard).root), nil) {
		name := strings.Join(append([]string{"leadsync"}, path...), "-") + ".1"
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %q: %v", path, err)
			continue
		}
		if !strings.Contains(string(b), `.TH "LEADSYNC"`) || !strings.Contains(string(b), "config") {
			t.Errorf("%s is not a man page naming --config:\n%s", name, b)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "leadsync-run.1"))
	if !strings.Contains(string(b), `\fB--once\fP`) {
		t.Errorf("leadsync-run.1 does not document --once:\n%s", b)
	}
	if _, out, _ := runCLI(t, "--help"); strings.Contains(out, "man ") {
		t.Errorf("the hidden man command is in the help:\n%s", out)
	}
	if code, _, _ := runCLI(t, "man"); code != exitUsage {
		t.Errorf("man without a directory: exit %d", code)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name    string
		ldflags string
		info    *debug.BuildInfo
		want    string
	}{
		{"no build info", "", nil, "devel"},
		{"go run, no VCS", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"go install module@v1.2.3", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"a clean checkout without a version", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")},
			"devel+0123456789ab"},
		{"a dirty checkout without a version", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")},
			"devel+0123456789ab.dirty"},
		{"a pseudo-version names revision and dirt already", "", &debug.BuildInfo{
			Main: debug.Module{Version: "v0.0.0-20261201100000-0123456789ab+dirty"}, Settings: vcs(rev, "true")},
			"v0.0.0-20261201100000-0123456789ab+dirty"},
		{"a tag, dirty", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(rev, "true")}, "v1.2.3+dirty"},
		{"-ldflags wins", "v2.0.0", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(rev, "false")}, "v2.0.0"},
	} {
		if got := versionFrom(tc.ldflags, tc.info).String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	d := versionFrom("", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}).Details()
	for _, w := range []string{"leadsync devel+0123456789ab.dirty\n", "revision  " + rev, "time      2026-12-01T10:00:00Z", "modified  true", "go        go1.26.0"} {
		if !strings.Contains(d, w) {
			t.Errorf("details lack %q:\n%s", w, d)
		}
	}
}

// The binary's version: the VCS revision it was built from (TestMain builds with
// -buildvcs=auto), or what -ldflags sets.
func TestVersionOfTheBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(leadsyncBin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The go command stamps the revision of a clone, not of a linked worktree (its .git
	// is a file).
	git := func(args ...string) string {
		b, err := exec.Command("git", args...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	if rev, dir := git("rev-parse", "HEAD"), git("rev-parse", "--absolute-git-dir"); rev != "" && filepath.Base(filepath.Dir(dir)) != "worktrees" {
		if !strings.Contains(string(out), "revision  "+rev) {
			t.Errorf("version does not name the revision %s:\n%s", rev, out)
		}
	} else {
		t.Logf("no git clone here (git dir %q): the revision is not checked", dir)
	}
	if strings.HasPrefix(string(out), "leadsync dev\n") {
		t.Errorf("version: %s", out)
	}
	short, err := exec.Command(leadsyncBin, "--version").Output()
	if err != nil || string(short) != strings.SplitAfter(string(out), "\n")[0] {
		t.Errorf("--version %q (%v), want the first line of version %q", short, err, out)
	}

	if testing.Short() {
		t.Skip("-short: no second build")
	}
	bin := filepath.Join(t.TempDir(), "leadsync")
	if b, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "leadsync v9.8.7\n") {
		t.Errorf("-X main.version=v9.8.7: version %q (%v)", out, err)
	}
}

// $LEADSYNC_LOG_LEVEL and $LEADSYNC_LOG_FORMAT stand in for the flags, which win over them;
// a value they do not allow is a usage error naming the variable. (Not parallel: the
// environment is the process's.)
func TestLogEnvironmentOverrides(t *testing.T) {
	path := cliConfig(t)
	for _, tc := range []struct {
		level, format string
		args          []string
		code          int
		stderr        string // in stderr
		noStderr      string // not in stderr
	}{
		{level: "error", noStderr: "WARN"},
		{level: "ERROR", format: "json", noStderr: "WARN"},
		{level: "error", args: []string{"--log-level", "warn"}, stderr: "WARN"},
		{format: "json", stderr: `"level":"WARN"`},
		{format: "json", args: []string{"--log-format", "text"}, stderr: "level=WARN"},
		{level: "loud", code: exitUsage, stderr: `$LEADSYNC_LOG_LEVEL="loud": want one of debug, info, warn, error`},
		{format: "xml", code: exitUsage, stderr: `$LEADSYNC_LOG_FORMAT="xml"`},
		{level: "loud", args: []string{"--log-level", "info"}, stderr: "WARN"}, // the flag wins; the variable is not read
	} {
		t.Run(tc.level+","+tc.format+","+strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv(envLogLevel, tc.level)
			t.Setenv(envLogFormat, tc.format)
			code, stdout, stderr := runCLI(t, append([]string{"config", "check", "--config", path}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) || (tc.noStderr != "" && strings.Contains(stderr, tc.noStderr)) {
				t.Errorf("exit %d, want %d; stderr wants %q, not %q\nstdout: %s\nstderr: %s", code, tc.code, tc.stderr, tc.noStderr, stdout, stderr)
			}
		})
	}
}

// A disabled connection's secrets are not read by config check: the shipped example has
// one, and passes once the enabled connections' credentials exist.
func TestConfigCheckIgnoresDisabledConnectionsSecrets(t *testing.T) {
	t.Parallel()
	path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n  url: sqlite://$DIR/leads.db\nhttp:\n  listen: \"off\"\n"+
		proofGoodConn+"  - name: old\n    source: lacrm\n    enabled: false\n    client_id: x\n    client_secret: {file: $DIR/missing}\n")
	if code, stdout, stderr := runCLI(t, "config", "check", "--config", path); code != exitOK || !strings.Contains(stdout, "(2 connections, 1 enabled)") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// Enabled, the same missing secret is an error naming its field.
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(mustRead(t, path), "enabled: false", "enabled: true")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "config", "check", "--config", path); code != exitUsage || !strings.Contains(stderr, "connections[1].client_secret") {
		t.Fatalf("enabled: exit %d, stderr %s", code, stderr)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The shipped example passes config check once its enabled connections' credentials exist
// (its LACRM connection is disabled, and its credential is absent). Not parallel: it sets
// $CREDENTIALS_DIRECTORY.
func TestExampleConfigChecks(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"agency-client-secret", "localiq-client-secret"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if code, stdout, stderr := runCLI(t, "config", "check", "--config", "../../config.example.yaml"); code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}
