// Command leadsync keeps an agency's CRM leads in its own database.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/vendors"
	_ "github.com/leadsync/leadsync/sources/all" // every vendor leadsync ships
	"github.com/leadsync/leadsync/store"
)

// vendorTitles lists the registered vendors for people.
func vendorTitles() string {
	var titles []string
	for _, v := range vendors.All() {
		titles = append(titles, v.Title)
	}
	return strings.Join(titles, ", ")
}

// Exit codes, as documented in `leadsync --help` (exitCodesHelp).
const (
	exitOK          = 0
	exitFailed      = 1 // a sync failed for some account, or a runtime error
	exitUsage       = 2 // bad command line or configuration
	exitInterrupted = 3 // stopped by a signal before the work was complete
)

// examples is the overview of the commands in the global help; vendorTitles fills in the
// registered vendors.
var (
	about = `leadsync keeps your CRM leads (` + vendorTitles() + `) in your own
SQLite or PostgreSQL database.`
	examples = `  leadsync demo [flags]                      sandbox CRMs → ./leadsync-demo.db, then a summary
  leadsync init --vendor NAME [flags]        a starting configuration and empty secret files
  leadsync run [flags]                       the daemon: sync on the configured cron schedules
  leadsync run --once [flags]                one sync now (backfill), then exit
  leadsync status [flags]                    per account: last success, leads, access, last error
  leadsync auth login <connection>           authorize a connection in the browser (OAuth code flow)
  leadsync auth password <connection>        LocaliQ direct access (password grant)
  leadsync auth status                       per grant: subject, scopes, expiry, needs re-auth
  leadsync auth forget <connection>          delete a connection's tokens
  leadsync auth rotate-key --new-key FILE    re-encrypt the token store with a new key
  leadsync state reset --connection NAME     clear cursors (one --account, one --stream): the next run backfills
  leadsync migrate [--status]                apply (or list) warehouse migrations
  leadsync grant-analyst [--pii] <role>      PostgreSQL: give a role the PII-free tables and views
  leadsync config check                      validate the configuration
  leadsync doctor [--json]                   check config, databases, grants, scopes and listener
  leadsync version`
)

// exitCodesHelp ends the global help.
const exitCodesHelp = `Exit codes: 0 success; 1 a sync or operation failed; 2 bad usage or configuration (the message
names the field; a token store key that does not match counts too); 3 stopped by a signal
before the work was complete.`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &serialWriter{w: stderr}
	c := newCLI(stdout, stderr)
	c.root.SetArgs(args)
	cmd, err := c.root.ExecuteContextC(ctx)
	switch {
	case !c.ran && err != nil:
		// cobra refused the command line before any command ran: a flag, an argument or a
		// command it does not know.
		if cmd.Name() == "help" {
			cmd = cmd.Root()
		}
		fmt.Fprintf(stderr, "leadsync: %v\nRun '%s --help' for usage.\n", strings.TrimRight(err.Error(), "\n"), cmd.CommandPath())
		return exitUsage
	case !c.ran: // help, --version, completion
		return exitOK
	case err != nil:
		return report(stderr, err)
	}
	return c.code
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// report prints err and chooses the exit code from its kind.
func report(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "leadsync:", err)
	var ue usageError
	var ce *config.Error
	var ces config.Errors
	var ae *app.ConfigError
	// A token store key that does not match, or cannot be read, is a configuration mistake
	// too (key_file).
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &ces) || errors.As(err, &ae) || errors.Is(err, store.ErrKeyMismatch) ||
		errors.Is(err, store.ErrBadKey) {
		return exitUsage
	}
	return exitFailed
}

// flags are the global flags, which every command takes.
type flags struct {
	config    string
	strict    bool
	logLevel  string // overrides log.level
	logFormat string // overrides log.format
	stderr    io.Writer
}

// load reads and validates the configuration. What puts a secret at risk is logged, or
// with --strict refused.
func (f *flags) load() (*config.Config, error) {
	cfg, err := config.Load(configPath(f.config))
	if err != nil {
		return nil, err
	}
	ws := cfg.Warnings()
	if f.strict && len(ws) > 0 {
		return nil, strictError{config.Errors(ws)}
	}
	if err := f.overrideLog(&cfg.Log); err != nil {
		return nil, err
	}
	log := newLogger(cfg, f.stderr)
	for _, w := range ws {
		log.Warn("configuration puts a secret at risk (--strict refuses it)", slog.String("file", w.File),
			slog.String("field", w.Field), slog.Int("line", w.Line), slog.String("problem", w.Msg))
	}
	return cfg, nil
}

// configPath is the --config path, else the default.
func configPath(flag string) string { return cmp.Or(flag, "/etc/leadsync/config.yaml") }

// The environment variables that stand in for the global log flags, for units and
// containers: a flag wins over its variable, and the variable over the configuration.
const (
	envLogLevel  = "LEADSYNC_LOG_LEVEL"
	envLogFormat = "LEADSYNC_LOG_FORMAT"
)

// overrideLog applies --log-level and --log-format, else $LEADSYNC_LOG_LEVEL and
// $LEADSYNC_LOG_FORMAT. A variable with a value that is not allowed is a usage error.
func (f *flags) overrideLog(l *config.Log) error {
	for _, o := range []struct {
		flag, env string
		choices   []string
		into      *string
	}{
		{f.logLevel, envLogLevel, logLevels, &l.Level},
		{f.logFormat, envLogFormat, logFormats, &l.Format},
	} {
		v := o.flag
		if v == "" {
			if v = os.Getenv(o.env); v != "" {
				if err := newChoice(&v, o.choices...).Set(v); err != nil {
					return usageError{fmt.Sprintf("$%s=%q: %v", o.env, v, err)}
				}
			}
		}
		*o.into = cmp.Or(v, *o.into)
	}
	return nil
}

// loadWithKey is load for the commands that use the token store: the key is read and
// checked too, so that a bad key file is a configuration error before anything is opened.
func (f *flags) loadWithKey() (*config.Config, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckKey(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkConnection makes a name that is not an enabled connection a usage error that lists
// the names there are.
func checkConnection(cfg *config.Config, name string) error {
	var enabled []string
	for _, c := range cfg.Connections {
		if c.Name == name && !c.IsEnabled() {
			return usageError{fmt.Sprintf("connection %q is disabled in %s (enabled: false)", name, cfg.File())}
		}
		if c.IsEnabled() {
			enabled = append(enabled, c.Name)
		}
	}
	if slices.Contains(enabled, name) {
		return nil
	}
	return usageError{fmt.Sprintf("no connection named %q in %s; the enabled connections are: %s", name, cfg.File(), strings.Join(enabled, ", "))}
}

// strictError is the warnings --strict turned into errors.
type strictError struct{ config.Errors }

func (e strictError) Error() string { return "--strict: " + e.Errors.Error() }
func (e strictError) Unwrap() error { return e.Errors }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	if s, ok := w.(*serialWriter); ok {
		w = s.w
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// serialWriter makes the writes of the logger and of the progress display to one stream
// whole and one at a time, so neither cuts into a line of the other.
type serialWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *serialWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// newLogger logs text on a terminal and JSON otherwise (journald keeps the fields).
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	format := cfg.Log.Format
	if format == "auto" || format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	return slog.New(ops.NewLogHandler(w, cfg.Log.SlogLevel(), format))
}

// openApp loads the configuration and wires leadsync.
func openApp(ctx context.Context, f *flags, opts app.Options) (*app.App, error) {
	cfg, err := f.loadWithKey()
	if err != nil {
		return nil, err
	}
	opts.Version = buildVersion().String()
	return app.Open(ctx, cfg, newLogger(cfg, f.stderr), opts)
}

// writeJSON prints v as one indented JSON document: what every --json prints.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
