// Command leadsync keeps an agency's CRM leads in its own database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	_ "github.com/leadsync/leadsync/sources/all" // every vendor leadsync ships
	"github.com/leadsync/leadsync/store"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// vendorTitles lists the registered vendors for people.
func vendorTitles() string {
	var titles []string
	for _, v := range vendors.All() {
		titles = append(titles, v.Title)
	}
	return strings.Join(titles, ", ")
}

// Exit codes, as documented in `leadsync --help`.
const (
	exitOK          = 0
	exitFailed      = 1 // a sync failed for some account, or a runtime error
	exitUsage       = 2 // bad command line or configuration
	exitInterrupted = 3 // stopped by a signal before the work was complete
)

// usage is the global help; vendorTitles fills in the registered vendors.
var usage = `leadsync keeps your CRM leads (` + vendorTitles() + `) in your own
SQLite or PostgreSQL database.

Usage:
  leadsync demo [flags]                      sandbox CRMs → ./leadsync-demo.db, then a summary
  leadsync run [flags]                       the daemon: sync on the configured cron schedules
  leadsync run --once [flags]                one sync now (backfill), then exit
  leadsync status [flags]                    per account: last success, leads, access, last error
  leadsync auth login <connection>           authorize a connection in the browser (OAuth code flow)
  leadsync auth password <connection>        LocaliQ direct access (password grant)
  leadsync auth status                       per grant: subject, scopes, expiry, needs re-auth
  leadsync auth forget <connection>          delete a connection's tokens
  leadsync auth rotate-key --new-key FILE    re-encrypt the token store with a new key
  leadsync migrate [--status]                apply (or list) warehouse migrations
  leadsync grant-analyst [--pii] <role>      PostgreSQL: give a role the PII-free tables and views
  leadsync config check                      validate the configuration
  leadsync version

Every command takes --config FILE (default $LEADSYNC_CONFIG, else /etc/leadsync/config.yaml),
and --strict: refuse (exit 2) secret files every user can read or that are symbolic links, and
passwords in database URLs, which otherwise only get a warning.
Run "leadsync <command> --help" for a command's flags.

Exit codes: 0 success; 1 a sync or operation failed; 2 bad usage or configuration (the message
names the field; a token store key that does not match counts too); 3 stopped by a signal
before the work was complete.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	stderr = &serialWriter{w: stderr}
	cmd, rest := args[0], args[1:]
	var code int
	var err error
	switch cmd {
	case "run":
		code, err = cmdRun(ctx, rest, stdout, stderr)
	case "demo":
		code, err = cmdDemo(ctx, rest, stdout, stderr)
	case "status":
		code, err = cmdStatus(ctx, rest, stdout, stderr)
	case "auth":
		code, err = cmdAuth(ctx, rest, stdout, stderr)
	case "migrate":
		code, err = cmdMigrate(ctx, rest, stdout, stderr)
	case "grant-analyst":
		code, err = cmdGrantAnalyst(ctx, rest, stdout, stderr)
	case "config":
		code, err = cmdConfig(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "leadsync", version)
		return exitOK
	default:
		fmt.Fprintf(stderr, "leadsync: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	if err != nil {
		return report(stderr, err)
	}
	return code
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// report prints err and chooses the exit code from its kind.
func report(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
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

// flags is a command's flag set with the common --config and --strict flags.
type flags struct {
	*flag.FlagSet
	config     *string
	strict     *bool
	positional []string
}

func newFlags(name, synopsis string, stderr io.Writer) *flags {
	fs := flag.NewFlagSet("leadsync "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", os.Getenv("LEADSYNC_CONFIG"), "configuration file (default $LEADSYNC_CONFIG, else /etc/leadsync/config.yaml)")
	strict := fs.Bool("strict", false, "refuse (exit 2), rather than warn about, secret files that every user can read or that are symbolic links, and passwords in database URLs")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: leadsync %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return &flags{FlagSet: fs, config: cfg, strict: strict}
}

// parse parses args, flags before or after the positional arguments
// (`leadsync auth login agency --config x.yaml`); it reports flag errors as usage errors.
func (f *flags) parse(args []string) error {
	var positional []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err.Error()}
		}
		args = f.FlagSet.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			positional = append(positional, args[1:]...)
			break
		}
		positional, args = append(positional, args[0]), args[1:]
	}
	f.positional = positional
	return nil
}

// NArg, Arg and Args are the positional arguments wherever they stood.
func (f *flags) NArg() int        { return len(f.positional) }
func (f *flags) Arg(i int) string { return f.positional[i] }
func (f *flags) Args() []string   { return f.positional }

// load reads and validates the configuration. What puts a secret at risk is logged, or
// with --strict refused.
func (f *flags) load() (*config.Config, error) {
	path := *f.config
	if path == "" {
		path = "/etc/leadsync/config.yaml"
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	ws := cfg.Warnings()
	if *f.strict && len(ws) > 0 {
		return nil, strictError{config.Errors(ws)}
	}
	log := newLogger(cfg, f.Output())
	for _, w := range ws {
		log.Warn("configuration puts a secret at risk (--strict refuses it)", slog.String("file", w.File),
			slog.String("field", w.Field), slog.Int("line", w.Line), slog.String("problem", w.Msg))
	}
	return cfg, nil
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
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	format := cfg.Log.Format
	if format == "auto" || format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// openApp loads the configuration and wires leadsync.
func openApp(ctx context.Context, f *flags, stderr io.Writer, opts app.Options) (*app.App, error) {
	cfg, err := f.loadWithKey()
	if err != nil {
		return nil, err
	}
	opts.Version = version
	return app.Open(ctx, cfg, newLogger(cfg, stderr), opts)
}

// oneArg returns the single positional argument named what.
func oneArg(f *flags, what string) (string, error) {
	if f.NArg() != 1 {
		return "", usageError{fmt.Sprintf("%s: want exactly one %s, got %q", f.Name(), what, strings.Join(f.Args(), " "))}
	}
	return f.Arg(0), nil
}
