package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/worker"
)

// runOptions are run's flags.
type runOptions struct {
	once     bool
	conns    []string
	since    string
	full     bool
	progress string
}

func cmdRun(ctx context.Context, f *flags, o runOptions, stdout, stderr io.Writer) (int, error) {
	if !o.once && (len(o.conns) > 0 || o.since != "" || o.full) {
		return exitUsage, usageError{"--connection, --since and --full go with --once (the daemon follows the configured schedules)"}
	}
	var sinceT time.Time
	if o.since != "" {
		t, err := time.Parse(time.DateOnly, o.since)
		if err != nil {
			return exitUsage, usageError{fmt.Sprintf("--since %q: want a date like 2025-01-31", o.since)}
		}
		sinceT = t
	}
	cfg, err := f.loadWithKey()
	if err != nil {
		return exitUsage, err
	}
	if !slices.ContainsFunc(cfg.Connections, func(c config.Connection) bool { return c.IsEnabled() }) {
		return exitUsage, &app.ConfigError{Err: fmt.Errorf("%s: no enabled connections: nothing to sync (add one under connections:, see config.example.yaml)", cfg.File())}
	}
	for _, name := range o.conns {
		if err := checkConnection(cfg, name); err != nil {
			return exitUsage, err
		}
	}
	prog, log := runProgress(o.progress, runConnections(cfg, o.conns), cfg.Log, stderr)
	a, err := app.Open(ctx, cfg, log, app.Options{Version: buildVersion().String()})
	if err != nil {
		return exitFailed, err
	}
	defer func() {
		// A rotated token the token store has not taken yet gets this long more (part of
		// ops.StopMargin), then goes to the recovery file.
		ctx, cancel := context.WithTimeout(context.Background(), ops.TokenWriteWait)
		defer cancel()
		a.Shutdown(ctx)
	}()
	soft, hard, stop := stopContexts(ctx, a.Config.ShutdownTimeout.D(), prog)
	defer stop()

	if !o.once {
		return daemon(soft, hard, a)
	}
	trigger := sink.TriggerOnce
	if !sinceT.IsZero() || o.full {
		trigger = sink.TriggerBackfill
	}
	a.Worker.Progress = prog
	prog.Start()
	res, err := a.Worker.Run(soft, worker.RunOptions{Trigger: trigger, Connections: o.conns, Full: o.full, Since: sinceT, Hard: hard})
	prog.Finish(res.Status == sink.RunCancelled)
	return onceOutcome(stdout, res, err)
}

// onceOutcome prints the summary of a run that began, even when closing it failed (the
// warehouse's disk full, or its database gone): what was synced is committed and the
// operator must see it. Then the error, if any, decides the exit code.
func onceOutcome(stdout io.Writer, res worker.Result, err error) (int, error) {
	if res.Run != 0 {
		printSummary(stdout, res)
	}
	switch {
	case err != nil:
		return exitFailed, err
	case res.Status == sink.RunOK:
		return exitOK, nil
	case res.Status == sink.RunCancelled:
		return exitInterrupted, nil
	}
	return exitFailed, nil
}

func printSummary(w io.Writer, res worker.Result) {
	s := res.Stats
	fmt.Fprintf(w, "run %d %s: %d accounts ok, %d restricted, %d failed; %d leads written; %d requests (%d throttled)\n",
		res.Run, res.Status, s.AccountsOK, s.AccountsRestricted, s.AccountsFailed, s.LeadsWritten, s.Requests, s.Throttled)
	if s.RecordsRejected > 0 {
		fmt.Fprintf(w, "  quarantined: %d vendor records that could not be read, kept in rejected_records\n", s.RecordsRejected)
	}
	for _, e := range res.Failures {
		fmt.Fprintln(w, "  failed:", e)
	}
}

// daemon runs the schedules until a signal, telling systemd how it goes: READY=1 once the
// databases are open, the HTTP endpoint listens and the scheduler runs; STATUS= after each
// run; WATCHDOG=1 while the scheduler is alive; STOPPING=1 as soon as the soft stop begins.
// Its shutdown takes at most shutdown_timeout + ops.StopMargin (the unit's TimeoutStopSec).
func daemon(soft, hard context.Context, a *app.App) (int, error) {
	log := a.Logger
	if err := a.SeedMetrics(soft); err != nil {
		log.Warn("account lag metrics start from now", slog.String("error", err.Error()))
	}
	if a.Config.HTTP.Enabled() {
		srv, err := ops.StartServer(a.Config.HTTP.Listen, ops.NewHandler(a.Metrics, a.Ready), log)
		if err != nil {
			return exitFailed, fmt.Errorf("http: %w", err)
		}
		// Tests and operators find the bound address here (http.listen may use port 0).
		log.Info("serving metrics and health", slog.String("url", srv.URL()))
		defer func() {
			// In-flight scrapes get a moment; the endpoint must not hold up the stop.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("http", slog.String("error", err.Error()))
			}
		}()
	}
	sched := &worker.Scheduler{Worker: a.Worker, Schedule: a.Config.Schedule, FullSchedule: a.Config.FullSchedule,
		Logger: log, OnRun: func(conn string, res worker.Result, err error) {
			msg := fmt.Sprintf("last run (%s): %s, %d ok, %d restricted, %d failed, %d leads written",
				conn, res.Status, res.Stats.AccountsOK, res.Stats.AccountsRestricted, res.Stats.AccountsFailed, res.Stats.LeadsWritten)
			if err != nil {
				msg = fmt.Sprintf("last run (%s) failed: %v", conn, err)
			}
			if soft.Err() == nil { // while stopping, STATUS keeps saying so
				_ = ops.Status(msg)
			}
		}}
	wdCtx, wdStop := context.WithCancel(hard)
	defer wdStop()
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		if err := ops.Watchdog(wdCtx, sched.Alive); err != nil {
			log.Warn("watchdog", slog.String("error", err.Error()))
		}
	}()
	defer func() { wdStop(); <-wdDone }()
	stopping := make(chan struct{})
	go func() {
		defer close(stopping)
		<-soft.Done()
		// Tell systemd at once, not after the runs in flight have finished their pages.
		_ = ops.Stopping()
		_ = ops.Status("stopping: finishing the pages in flight")
	}()
	sched.OnStarted = func() {
		_ = ops.Ready()
		_ = ops.Status("waiting for the first scheduled run")
		log.Info("leadsync started", slog.Int("connections", len(a.Conns)), slog.String("version", buildVersion().String()))
	}
	if err := sched.Run(soft, hard); err != nil {
		if errors.Is(err, sink.ErrSingleWriter) { // a backfill holds the SQLite warehouse: retry later
			return exitFailed, err
		}
		return exitUsage, &app.ConfigError{Err: err} // a schedule the scheduler refused
	}
	<-stopping // Run returned nil: the soft stop began and STOPPING=1 is on its way
	log.Info("leadsync stopped")
	return exitOK, nil
}

func cmdStatus(ctx context.Context, f *flags, asJSON bool, stdout io.Writer) (int, error) {
	a, err := openApp(ctx, f, app.Options{})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()
	st, err := a.Sink.Status(ctx)
	if err != nil {
		return exitFailed, err
	}
	grants, err := a.Grants(ctx)
	if err != nil {
		return exitFailed, err
	}
	doc := statusJSON(st, grants)
	if asJSON {
		return exitOK, writeJSON(stdout, doc)
	}
	// Several workers on one PostgreSQL: say which one is syncing each account, and which
	// synced it last. A single worker's table stays as it was.
	workers := false
	for _, s := range st {
		workers = workers || s.LeaseOwner != "" || s.LastSyncedBy != ""
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := "SOURCE\tACCOUNT\tNAME\tACCESS\tLAST SUCCESS\tLEADS\tLAST ERROR"
	if workers {
		header += "\tSYNCING NOW ON\tLAST SYNCED BY"
	}
	fmt.Fprintln(tw, header)
	for _, s := range doc.Accounts {
		last := "never"
		if !s.LastSyncedAt.IsZero() {
			last = when(s.LastSyncedAt)
		}
		access := s.Access
		if s.AccessReason != "" {
			access += " (" + truncate(s.AccessReason, 40) + ")"
		}
		// Whatever the warehouse last recorded, nothing syncs until the grant is renewed.
		if s.NeedsReauth {
			access = reauthHint(s.Connection, s.Source, grants)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s", s.Source, s.AccountID, truncate(s.Name, 30), access, last,
			s.Leads, truncate(s.LastError, 60))
		if workers {
			holder := "-"
			if s.LeaseOwner != "" {
				holder = fmt.Sprintf("%s (lease until %s)", s.LeaseOwner, s.LeaseExpiresAt.Local().Format(time.TimeOnly))
			}
			fmt.Fprintf(tw, "\t%s\t%s", holder, cmp.Or(s.LastSyncedBy, "-"))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CONNECTION\tSOURCE\tGRANT")
	for _, g := range grants {
		state := "ok"
		switch {
		case g.NeedsReauth:
			state = fmt.Sprintf("NEEDS RE-AUTH: leadsync auth login %s (leadsync auth status says why)", g.Connection)
		case g.NeedsRotation:
			state = "NEEDS ROTATION: a static token was refused; put a new one in its secret (leadsync auth status says which)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Connection, g.Source, state)
	}
	return exitOK, tw.Flush()
}

// accountGrant finds the grant an account is synced under. The warehouse records the
// source, not the connection: with one connection of that source it is that one's grant;
// with several, the account needs re-auth only if all of them do.
func accountGrant(grants []ops.GrantState, source string) (conn string, needsReauth bool) {
	n, bad := 0, 0
	for _, g := range grants {
		if g.Source != source {
			continue
		}
		n++
		conn = g.Connection
		if g.NeedsReauth {
			bad++
		}
	}
	if n != 1 {
		conn = ""
	}
	return conn, n > 0 && bad == n
}

func reauthHint(conn, source string, grants []ops.GrantState) string {
	if conn != "" {
		return "NEEDS RE-AUTH: leadsync auth login " + conn
	}
	var names []string
	for _, g := range grants {
		if g.Source == source {
			names = append(names, g.Connection)
		}
	}
	return "NEEDS RE-AUTH: leadsync auth login " + strings.Join(names, ", ")
}

// The `status --json` document: stable snake_case keys.
type (
	statusDoc struct {
		Accounts    []accountDoc    `json:"accounts"`
		Connections []connectionDoc `json:"connections"`
	}
	accountDoc struct {
		Source         string      `json:"source"`
		AccountID      string      `json:"account_id"`
		Name           string      `json:"name"`
		Access         string      `json:"access"`
		AccessReason   string      `json:"access_reason,omitempty"`
		Connection     string      `json:"connection,omitempty"` // "" when several share the source
		NeedsReauth    bool        `json:"needs_reauth"`
		LastSyncedAt   time.Time   `json:"last_synced_at,omitzero"`
		LastError      string      `json:"last_error,omitempty"`
		Leads          int64       `json:"leads"`
		Streams        []streamDoc `json:"streams"`
		LeaseOwner     string      `json:"lease_owner,omitempty"`
		LeaseExpiresAt time.Time   `json:"lease_expires_at,omitzero"`
		LastSyncedBy   string      `json:"last_synced_by,omitempty"`
	}
	streamDoc struct {
		Name         string         `json:"name"`
		LastOutcome  string         `json:"last_outcome,omitempty"`
		LastError    string         `json:"last_error,omitempty"`
		LastSyncedAt time.Time      `json:"last_synced_at,omitzero"`
		Cursor       sources.Cursor `json:"cursor,omitempty"`
	}
	connectionDoc struct {
		Connection    string `json:"connection"`
		Source        string `json:"source"`
		NeedsReauth   bool   `json:"needs_reauth"`
		NeedsRotation bool   `json:"needs_rotation"`
	}
)

func statusJSON(st []sink.AccountStatus, grants []ops.GrantState) statusDoc {
	doc := statusDoc{Accounts: make([]accountDoc, len(st)), Connections: make([]connectionDoc, len(grants))}
	for i, s := range st {
		conn, reauth := accountGrant(grants, s.Source)
		doc.Accounts[i] = accountDoc{Source: s.Source, AccountID: s.AccountID, Name: s.Name, Access: s.Access,
			AccessReason: s.AccessReason, Connection: conn, NeedsReauth: reauth,
			LastSyncedAt: s.LastSyncedAt, LastError: s.LastError, Leads: s.Leads, Streams: []streamDoc{},
			LeaseOwner: s.LeaseOwner, LeaseExpiresAt: s.LeaseExpiresAt, LastSyncedBy: s.LastSyncedBy}
		for _, ss := range s.Streams {
			doc.Accounts[i].Streams = append(doc.Accounts[i].Streams, streamDoc{Name: ss.Name, LastOutcome: ss.LastOutcome,
				LastError: ss.LastError, LastSyncedAt: ss.LastSyncedAt, Cursor: ss.Cursor})
		}
	}
	for i, g := range grants {
		doc.Connections[i] = connectionDoc{Connection: g.Connection, Source: g.Source, NeedsReauth: g.NeedsReauth,
			NeedsRotation: g.NeedsRotation}
	}
	return doc
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// The `migrate --status --json` document.
type (
	migrationsDoc struct {
		Migrations []migrationDoc `json:"migrations"`
	}
	migrationDoc struct {
		Version   int64     `json:"version"`
		Name      string    `json:"name"`
		Applied   bool      `json:"applied"`
		AppliedAt time.Time `json:"applied_at,omitzero"`
	}
)

func cmdMigrate(ctx context.Context, f *flags, status, asJSON bool, stdout io.Writer) (int, error) {
	cfg, err := f.load()
	if err != nil {
		return exitUsage, err
	}
	if asJSON && !status {
		return exitUsage, usageError{"migrate: --json goes with --status"}
	}
	if status {
		st, err := sink.MigrationStatus(ctx, cfg.Warehouse.OpenURL())
		if err != nil {
			return exitFailed, err
		}
		if asJSON {
			doc := migrationsDoc{Migrations: make([]migrationDoc, len(st))}
			for i, m := range st {
				doc.Migrations[i] = migrationDoc{Version: m.Version, Name: m.Name, Applied: m.Applied, AppliedAt: m.AppliedAt}
			}
			return exitOK, writeJSON(stdout, doc)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
		for _, m := range st {
			applied := "pending"
			if m.Applied {
				applied = when(m.AppliedAt)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, applied)
		}
		return exitOK, tw.Flush()
	}
	if err := sink.Migrate(ctx, cfg.Warehouse.OpenURL()); err != nil {
		return exitFailed, err
	}
	fmt.Fprintln(stdout, "warehouse is up to date")
	return exitOK, nil
}

func cmdGrantAnalyst(ctx context.Context, f *flags, role string, printOnly, pii bool, stdout io.Writer) (int, error) {
	cfg, err := f.load()
	if err != nil {
		return exitUsage, err
	}
	tgt, err := sink.ParseURL(cfg.Warehouse.OpenURL())
	if err != nil {
		return exitUsage, err
	}
	opts := sink.GrantOptions{PII: pii}
	if printOnly {
		for _, q := range sink.AnalystGrantSQL(sink.SchemaOf(tgt.DSN), role, opts) {
			fmt.Fprintln(stdout, q+";")
		}
		return exitOK, nil
	}
	s, err := sink.Open(ctx, cfg.Warehouse.OpenURL(), sink.Options{})
	if err != nil {
		return exitFailed, err
	}
	defer s.Close()
	pg, ok := s.(*sink.Postgres)
	if !ok {
		return exitUsage, usageError{"grant-analyst needs a PostgreSQL warehouse (SQLite has no roles: share an export of leads_shareable instead)"}
	}
	if err := pg.GrantAnalyst(ctx, role, opts); err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(stdout, "role %s may now read %s; never leads, leads_current or rejected_records\n", role, strings.Join(sink.AnalystGrants(opts), ", "))
	return exitOK, nil
}

func cmdConfig(_ context.Context, f *flags, stdout io.Writer) (int, error) {
	cfg, err := f.loadWithKey()
	if err != nil {
		return exitUsage, err
	}
	// The same environment overrides `run` and `status` apply (worker.Identity).
	if _, _, err := worker.Identity(cfg.Worker.ID, cfg.Worker.LeaseDuration.D()); err != nil {
		return exitUsage, &app.ConfigError{Err: err}
	}
	// A disabled connection's secrets are not read: it may be configured ahead of its
	// credentials (config.example.yaml ships one), and nothing uses them until it is enabled.
	var secretErrs []error
	enabled := 0
	for _, c := range cfg.Connections {
		if !c.IsEnabled() {
			continue
		}
		enabled++
		if err := c.CheckSecrets(); err != nil {
			secretErrs = append(secretErrs, err)
		}
	}
	if err := errors.Join(secretErrs...); err != nil {
		return exitUsage, &app.ConfigError{Err: err}
	}
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d enabled)\n", cfg.File(), len(cfg.Connections), enabled)
	return exitOK, nil
}
