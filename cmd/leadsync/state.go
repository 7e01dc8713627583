package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/leadsync/leadsync/sink"
)

// stateResetOptions are the flags of `state reset`.
type stateResetOptions struct {
	conn, account, stream string
	yes                   bool
}

func (c *cli) stateCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := c.group("state", "the warehouse's sync state: cursors per account and stream")
	var o stateResetOptions
	reset := &cobra.Command{
		Use:   "reset --connection NAME [--account ID] [--stream NAME] [--yes]",
		Short: "clear cursors, so that the next run backfills those accounts and streams",
		Long: `state reset deletes the cursors (and last outcomes) of a connection's accounts, of one
account, or of one stream, so that the next run reads them again from the connection's
backfill_start. Leads already in the warehouse stay; the backfill rewrites only those that
changed. It asks first on a terminal; elsewhere it needs --yes. It refuses while a sync of
those accounts is running.`,
		Example: `  leadsync state reset --connection agency --account loc_123
  leadsync state reset --connection crm --stream pipeline_items --yes`,
		Args: noArgs,
		RunE: c.do(func(ctx context.Context, _ []string) (int, error) {
			return cmdStateReset(ctx, &c.flags, o, stdout, stderr)
		}),
	}
	fs := reset.Flags()
	fs.StringVar(&o.conn, "connection", "", "the connection `NAME` (required)")
	fs.StringVar(&o.account, "account", "", "only this account `ID` (see `leadsync status`)")
	fs.StringVar(&o.stream, "stream", "", "only this stream `NAME` (see `leadsync status --json`)")
	fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	_ = reset.RegisterFlagCompletionFunc("connection", c.completeConnections)
	cmd.AddCommand(reset)
	return cmd
}

func cmdStateReset(ctx context.Context, f *flags, o stateResetOptions, stdout, stderr io.Writer) (int, error) {
	cfg, err := f.load()
	if err != nil {
		return exitUsage, err
	}
	if o.conn == "" {
		return exitUsage, usageError{"state reset: --connection NAME is required"}
	}
	// Any configured connection, enabled or not: a disabled one may be reset before it is
	// enabled again.
	conn := cfg.Connection(o.conn)
	if conn == nil {
		var names []string
		for _, c := range cfg.Connections {
			names = append(names, c.Name)
		}
		return exitUsage, usageError{fmt.Sprintf("no connection named %q in %s; the connections are: %s", o.conn, cfg.File(), strings.Join(names, ", "))}
	}
	s, err := sink.Open(ctx, cfg.Warehouse.OpenURL(), sink.Options{})
	if err != nil {
		return exitFailed, err
	}
	defer s.Close()
	scope := sink.ResetScope{Source: conn.Source, Account: o.account, Stream: o.stream}
	cursors, err := resetTargets(ctx, s, scope)
	if err != nil {
		return exitUsage, err
	}
	if cursors == 0 {
		fmt.Fprintf(stdout, "nothing to reset: %s has no cursor yet (its next run backfills anyway)\n", scope)
		return exitOK, nil
	}
	what := fmt.Sprintf("%d cursor(s) of %s", cursors, scope)
	var shared []string
	for _, c := range cfg.Connections {
		if c.Source == conn.Source && c.Name != conn.Name {
			shared = append(shared, c.Name)
		}
	}
	if len(shared) > 0 && o.account == "" {
		// The warehouse keys state by vendor and account, not by connection.
		what += fmt.Sprintf(" (connections %s use %s too: their accounts are reset as well; --account narrows it)",
			strings.Join(shared, ", "), conn.Source)
	}
	if !o.yes {
		ok, err := confirm(stderr, "reset "+what+"? The next run backfills them. [y/N] ")
		if err != nil {
			return exitUsage, err
		}
		if !ok {
			fmt.Fprintln(stdout, "nothing reset")
			return exitOK, nil
		}
	}
	rs, ok := s.(sink.StateResetter)
	if !ok {
		return exitFailed, errors.New("state reset: this warehouse cannot reset state")
	}
	res, err := rs.ResetState(ctx, scope)
	if err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(stdout, "reset %d cursor(s) of %s; the next run of connection %s backfills them\n", res.Cursors, scope, conn.Name)
	return exitOK, nil
}

// resetTargets counts the cursors a reset of scope would clear. An account or stream the
// warehouse does not know is a usage error that lists those it knows.
func resetTargets(ctx context.Context, s sink.Sink, scope sink.ResetScope) (int, error) {
	st, err := s.Status(ctx)
	if err != nil {
		return 0, err
	}
	var accounts, streams []string
	n, accountKnown := 0, scope.Account == ""
	for _, a := range st {
		if a.Source != scope.Source {
			continue
		}
		accounts = append(accounts, a.AccountID)
		if scope.Account != "" && a.AccountID != scope.Account {
			continue
		}
		accountKnown = true
		for _, ss := range a.Streams {
			if !slices.Contains(streams, ss.Name) {
				streams = append(streams, ss.Name)
			}
			if scope.Stream == "" || ss.Name == scope.Stream {
				n++
			}
		}
	}
	switch {
	case !accountKnown:
		return 0, usageError{fmt.Sprintf("the warehouse has no %s account %q; it has: %s", scope.Source, scope.Account, listSome(accounts))}
	case scope.Stream != "" && n == 0 && len(streams) > 0:
		return 0, usageError{fmt.Sprintf("no stream %q with a cursor in %s; the streams are: %s", scope.Stream, scope, strings.Join(streams, ", "))}
	}
	return n, nil
}

// listSome lists up to 10 names, then how many more.
func listSome(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	if len(names) > 10 {
		return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
	}
	return strings.Join(names, ", ")
}

// confirm asks on a terminal; elsewhere there is nobody to answer, and --yes is needed.
func confirm(prompt io.Writer, question string) (bool, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return false, usageError{"stdin is not a terminal: confirm with --yes"}
	}
	fmt.Fprint(prompt, question)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}
