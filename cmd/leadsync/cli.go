package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/store/login"
)

// cli is one invocation's command tree and what its command returned. The tree is built
// anew for every run, so that tests may run the CLI in parallel.
type cli struct {
	root  *cobra.Command
	flags flags
	ran   bool // a command's action ran: its code and error decide the exit
	code  int
}

// action is a command's work once cobra has parsed its command line.
type action func(ctx context.Context, args []string) (int, error)

// do makes an action a cobra RunE, keeping its exit code.
func (c *cli) do(fn action) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c.ran = true
		code, err := fn(cmd.Context(), args)
		c.code = code
		return err
	}
}

func newCLI(stdout, stderr io.Writer) *cli {
	c := &cli{flags: flags{stderr: stderr}}
	root := &cobra.Command{
		Use:     "leadsync",
		Short:   "keep an agency's CRM leads in its own database",
		Long:    about,
		Example: examples,
		Version: buildVersion().String(),
		// With no command: the help, and exit 2, as a usage error. (Args stays nil: cobra
		// then says "unknown command" with suggestions.)
		RunE:                       c.do(func(context.Context, []string) (int, error) { return exitUsage, c.root.Help() }),
		SuggestionsMinimumDistance: 2,
		SilenceErrors:              true,
		SilenceUsage:               true,
		DisableAutoGenTag:          true, // man pages the same from build to build
	}
	c.root = root
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("leadsync {{.Version}}\n")
	root.SetUsageTemplate(root.UsageTemplate() + "{{if not .HasParent}}\n" + exitCodesHelp + "\n{{end}}")
	root.SetFlagErrorFunc(flagError)
	root.SetHelpCommand(c.helpCmd())

	pf := root.PersistentFlags()
	pf.StringVar(&c.flags.config, "config", os.Getenv("LEADSYNC_CONFIG"), "configuration `FILE` (default $LEADSYNC_CONFIG, else /etc/leadsync/config.yaml)")
	pf.BoolVar(&c.flags.strict, "strict", false, "refuse (exit 2), rather than warn about, secret files that every user can read or that are symbolic links, and passwords in database URLs")
	pf.Var(newChoice(&c.flags.logLevel, logLevels...), "log-level", "log `LEVEL`: debug, info, warn, error (default $"+envLogLevel+", else the configuration's log.level)")
	pf.Var(newChoice(&c.flags.logFormat, logFormats...), "log-format", "log `FORMAT`: auto (text on a terminal, else JSON), text, json (default $"+envLogFormat+", else the configuration's log.format)")
	completeChoices(root, pf, "log-level", "log-format")

	root.AddCommand(c.demoCmd(stdout, stderr), c.runCmd(stdout, stderr), c.statusCmd(stdout), c.authCmd(stdout, stderr),
		c.migrateCmd(stdout), c.grantAnalystCmd(stdout), c.configCmd(stdout), c.versionCmd(stdout), c.manCmd())
	root.AddCommand(c.initCmd(os.Stdin, stdout, stderr), c.stateCmd(stdout, stderr))
	root.AddCommand(c.doctorCmd(stdout))
	// cobra's `completion` command, with an unknown shell a usage error like any other.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		c.asGroup(comp)
	}
	return c
}

func (c *cli) demoCmd(stdout, stderr io.Writer) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "sandbox CRMs → ./leadsync-demo.db, then a summary",
		Long: `demo starts sandbox CRMs on loopback, authorizes a connection to each through the real
flows, syncs them into a SQLite warehouse and prints a summary and example queries.`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) { return cmdDemo(ctx, &c.flags, o, stdout, stderr) }),
	}
	cmd.Flags().StringVar(&o.db, "db", "leadsync-demo.db", "the SQLite warehouse `FILE` to fill")
	cmd.Flags().BoolVar(&o.fresh, "fresh", false, "delete the warehouse first (otherwise a second demo is an incremental run)")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "seed of the sandbox data")
	return cmd
}

func (c *cli) runCmd(stdout, stderr io.Writer) *cobra.Command {
	o := runOptions{progress: "auto"}
	cmd := &cobra.Command{
		Use:   "run [--once [--connection NAME]... [--since YYYY-MM-DD] [--full]]",
		Short: "the daemon: sync on the configured cron schedules (--once: one sync now, then exit)",
		Long: `run is the daemon: it syncs every enabled connection on its cron schedule until SIGINT or
SIGTERM. With --once it syncs once now, prints a summary and exits (a backfill when the
warehouse is empty).`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) { return cmdRun(ctx, &c.flags, o, stdout, stderr) }),
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.once, "once", false, "sync once now, then exit (a backfill when the warehouse is empty)")
	fs.StringArrayVar(&o.conns, "connection", nil, "with --once: only this connection `NAME` (repeatable)")
	fs.StringVar(&o.since, "since", "", "with --once: start accounts without a cursor at this `DATE` (YYYY-MM-DD)")
	fs.BoolVar(&o.full, "full", false, "with --once: a full pass: re-read everything, then soft-delete leads the vendor no longer has")
	fs.Var(newChoice(&o.progress, "auto", "on", "off"), "progress", "with --once: progress display `MODE`: auto (on a terminal), on, off")
	completeChoices(cmd, fs, "progress")
	_ = cmd.RegisterFlagCompletionFunc("connection", c.completeConnections)
	return cmd
}

func (c *cli) statusCmd(stdout io.Writer) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [--wide | --json]",
		Short: "per connection: grant, last run and its error, next run; then the accounts needing attention",
		Long: `status shows each enabled connection (its grant, its last run with its result and
error, its next scheduled run), then the accounts that need attention (needing re-auth,
failed, restricted, never synced, or stale beyond two runs of their schedule), then one
line summing up the rest. It fits 120 columns; --wide lists every account with its full
error instead, and --json prints all of it.`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) { return cmdStatus(ctx, &c.flags, o, stdout) }),
	}
	cmd.Flags().BoolVar(&o.wide, "wide", false, "after the connections, every account with its access, leads and full last error (wider than 120 columns)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print JSON: {\"connections\", \"attention\", \"summary\", \"accounts\"}, snake_case keys")
	return cmd
}

func (c *cli) migrateCmd(stdout io.Writer) *cobra.Command {
	var status, asJSON bool
	cmd := &cobra.Command{
		Use:   "migrate [--status [--json]]",
		Short: "apply (or list) warehouse migrations",
		Args:  noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) {
			return cmdMigrate(ctx, &c.flags, status, asJSON, stdout)
		}),
	}
	cmd.Flags().BoolVar(&status, "status", false, "list the migrations and whether each is applied, without applying any")
	cmd.Flags().BoolVar(&asJSON, "json", false, "with --status: print JSON: {\"migrations\": [...]}, snake_case keys")
	return cmd
}

func (c *cli) grantAnalystCmd(stdout io.Writer) *cobra.Command {
	var printOnly, pii bool
	cmd := &cobra.Command{
		Use:   "grant-analyst [--pii] [--print] <role>",
		Short: "PostgreSQL: give a role every PII-free table and view (--pii: also leads_pii)",
		Args:  oneArg("role"),
		RunE: c.do(func(ctx context.Context, args []string) (int, error) {
			return cmdGrantAnalyst(ctx, &c.flags, args[0], printOnly, pii, stdout)
		}),
	}
	cmd.Flags().BoolVar(&pii, "pii", false, "also grant leads_pii: the PII of leads that are not HIPAA-protected")
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the SQL instead of running it")
	return cmd
}

func (c *cli) configCmd(stdout io.Writer) *cobra.Command {
	cmd := c.group("config", "the configuration file")
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "validate the configuration",
		Long: `config check validates the configuration file, its secrets, the token store key and the
LEADSYNC_* environment overrides, without opening any database.`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) { return cmdConfig(ctx, &c.flags, stdout) }),
	})
	return cmd
}

func (c *cli) authCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := c.group("auth", "the connections' grants: authorize, inspect, forget, re-encrypt")
	var noBrowser bool
	var timeout time.Duration
	loginCmd := &cobra.Command{
		Use:               "login <connection> [--no-browser]",
		Short:             "authorize a connection in the browser (OAuth code flow)",
		Args:              oneArg("connection"),
		ValidArgsFunction: c.completeConnections,
		RunE: c.do(func(ctx context.Context, args []string) (int, error) {
			return authLogin(ctx, &c.flags, args[0], noBrowser, timeout, stdout, stderr)
		}),
	}
	loginCmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the authorization URL instead of opening a browser, and accept the redirected address pasted on stdin (a headless server)")
	loginCmd.Flags().DurationVar(&timeout, "timeout", login.DefaultTimeout, "how long to wait for the browser")

	var pwFile string
	passwordCmd := &cobra.Command{
		Use:               "password <connection> [--password-file FILE]",
		Short:             "LocaliQ direct access (password grant)",
		Args:              oneArg("connection"),
		ValidArgsFunction: c.completeConnections,
		RunE: c.do(func(ctx context.Context, args []string) (int, error) {
			return authPassword(ctx, &c.flags, args[0], pwFile, stdout, stderr)
		}),
	}
	passwordCmd.Flags().StringVar(&pwFile, "password-file", "", "read the password from this `FILE` (default: the connection's password setting, else a prompt)")

	var newKey string
	rotateCmd := &cobra.Command{
		Use:   "rotate-key --new-key FILE",
		Short: "re-encrypt every token with a new key",
		Args:  noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) {
			return authRotateKey(ctx, &c.flags, newKey, stdout)
		}),
	}
	rotateCmd.Flags().StringVar(&newKey, "new-key", "", "`FILE` holding the new 32-byte key (raw, hex or base64), e.g. made with: head -c 32 /dev/urandom > FILE")

	var authJSON bool
	statusCmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "per grant: subject, scopes, expiry, needs re-auth or rotation",
		Args:  noArgs,
		RunE:  c.do(func(ctx context.Context, _ []string) (int, error) { return authStatus(ctx, &c.flags, authJSON, stdout) }),
	}
	statusCmd.Flags().BoolVar(&authJSON, "json", false, "print JSON: {\"grants\": [...]}, snake_case keys, times in RFC 3339")

	cmd.AddCommand(loginCmd, passwordCmd, statusCmd,
		&cobra.Command{
			Use:               "forget <connection>",
			Short:             "delete a connection's tokens",
			Args:              oneArg("connection"),
			ValidArgsFunction: c.completeConnections,
			RunE: c.do(func(ctx context.Context, args []string) (int, error) {
				return authForget(ctx, &c.flags, args[0], stdout)
			}),
		},
		rotateCmd)
	return cmd
}

func (c *cli) versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "the version, VCS revision and Go version of this build",
		Args:  noArgs,
		RunE: c.do(func(context.Context, []string) (int, error) {
			fmt.Fprint(stdout, buildVersion().Details())
			return exitOK, nil
		}),
	}
}

// manCmd writes the man pages from the same command tree as the help (`make man`).
func (c *cli) manCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write man pages for every command to DIR",
		Hidden: true,
		Args:   oneArg("directory"),
		RunE: c.do(func(_ context.Context, args []string) (int, error) {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return exitFailed, err
			}
			header := &doc.GenManHeader{Title: "LEADSYNC", Section: "1", Source: "leadsync " + buildVersion().String(), Manual: "leadsync manual"}
			return exitOK, doc.GenManTree(c.root, header, args[0])
		}),
	}
}

// group is a command that only holds subcommands.
func (c *cli) group(name, short string) *cobra.Command {
	cmd := &cobra.Command{Use: name, Short: short}
	c.asGroup(cmd)
	return cmd
}

// asGroup makes cmd a group: alone it prints its help and exits 2; an unknown subcommand is
// a usage error with suggestions.
func (c *cli) asGroup(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = c.do(func(_ context.Context, args []string) (int, error) {
		if len(args) == 0 {
			return exitUsage, cmd.Help()
		}
		return exitUsage, usageError{fmt.Sprintf("unknown command %q for %q%s\nRun '%s --help' for usage.",
			args[0], cmd.CommandPath(), didYouMean(cmd.SuggestionsFor(args[0])), cmd.CommandPath())}
	})
}

// helpCmd is `help [command]`: the same help as `<command> --help`, and exit 2 for a
// command that does not exist.
func (c *cli) helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, _, err := c.root.Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := c.root.Find(args)
			if err == nil && len(rest) > 0 {
				target.SuggestionsMinimumDistance = 2
				err = fmt.Errorf("unknown command %q for %q%s", rest[0], target.CommandPath(), didYouMean(target.SuggestionsFor(rest[0])))
			}
			if err != nil {
				return err // before any action ran: a usage error
			}
			// As `<command> --help` shows them: cobra adds these flags when a command runs.
			target.InitDefaultHelpFlag()
			target.InitDefaultVersionFlag()
			return target.Help()
		},
	}
}

// flagError makes pflag's errors usage errors, suggesting the flags a typo may have meant.
func flagError(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	var near []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && (levenshtein(name, f.Name) <= 2 || strings.HasPrefix(f.Name, name)) {
			near = append(near, "--"+f.Name)
		}
	})
	return fmt.Errorf("%w%s", err, didYouMean(near))
}

func didYouMean(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return "\n\nDid you mean this?\n\t" + strings.Join(names, "\n\t")
}

// levenshtein is the edit distance between a and b, in bytes (flag names are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// noArgs refuses positional arguments, which leadsync used to ignore.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}

// oneArg wants exactly one positional argument, named what.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s: want exactly one %s, got %q", cmd.CommandPath(), what, strings.Join(args, " "))
		}
		return nil
	}
}

// The values of --log-level and --log-format (and of their environment variables).
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"auto", "text", "json"}
)

// choice is a string flag that takes one of a few values.
type choice struct {
	v       *string
	choices []string
}

func newChoice(v *string, choices ...string) *choice { return &choice{v: v, choices: choices} }

func (c *choice) String() string { return *c.v }
func (c *choice) Type() string   { return "string" }
func (c *choice) Set(v string) error {
	v = strings.ToLower(v)
	if !slices.Contains(c.choices, v) {
		return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
	}
	*c.v = v
	return nil
}

// completeChoices completes the named choice flags with their values.
func completeChoices(cmd *cobra.Command, fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		ch := fs.Lookup(name).Value.(*choice)
		_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(ch.choices, cobra.ShellCompDirectiveNoFileComp))
	}
}

// completeConnections completes a connection name from the configuration --config names.
func (c *cli) completeConnections(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cfg, err := config.Load(configPath(c.flags.config))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, conn := range cfg.Connections {
		if conn.IsEnabled() {
			names = append(names, cobra.CompletionWithDesc(conn.Name, conn.Source))
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
