package main

import (
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
	"github.com/leadsync/leadsync/internal/webhook"
	"github.com/leadsync/leadsync/sink"
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
	// A --once run's stop notices print above its bars; the daemon's go to stderr.
	notices := io.Writer(stderr)
	if o.once {
		notices = prog
	}
	soft, hard, stop := stopContextsLogged(ctx, a.Config.ShutdownTimeout.D(), notices, a.Logger)
	defer stop()

	if !o.once {
		return daemon(soft, hard, a, f)
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
	if len(res.Connections) > 1 {
		for _, c := range res.Connections {
			cs := c.Stats
			fmt.Fprintf(w, "  %s: %s, %d accounts ok, %d restricted, %d failed; %d leads written\n",
				c.Connection, c.Status, cs.AccountsOK, cs.AccountsRestricted, cs.AccountsFailed, cs.LeadsWritten)
		}
	}
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
// SIGHUP reloads the configuration from f (RELOADING=1, then READY=1 when it is in use or
// refused): the runs in flight finish first, then the new connections and schedules apply.
// Its shutdown takes at most shutdown_timeout + ops.StopMargin (the unit's TimeoutStopSec).
func daemon(soft, hard context.Context, a *app.App, f *flags) (int, error) {
	log := a.Logger
	hup, stopHup := hangups()
	defer stopHup()
	if err := a.SeedMetrics(soft); err != nil {
		log.Warn("account lag metrics start from now", slog.String("error", err.Error()))
	}
	if a.Config.HTTP.Enabled() {
		srv, err := ops.StartServer(a.Config.HTTP.Listen,
			ops.NewHandler(a.Metrics, a.Ready, ops.WithStatusPage(statusPage(a, buildVersion().String()))), log)
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
	if a.Config.Webhooks.Enabled() {
		stopWebhooks, err := startWebhooks(a)
		if err != nil {
			return exitFailed, fmt.Errorf("webhooks: %w", err)
		}
		defer stopWebhooks()
	}
	sched := &worker.Scheduler{Worker: a.Worker, Schedule: a.Config.Schedule, FullSchedule: a.Config.FullSchedule,
		RunOnStart: runOnStart(a.Config), Logger: log, OnRun: func(conn string, res worker.Result, err error) {
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
	var reloaded *reloadPlan // the reload the scheduler starts with, nil at first
	sched.OnStarted = func() {
		_ = ops.Ready()
		switch {
		case reloaded != nil:
			_ = ops.Status(reloadedStatus(reloaded, len(a.Conns)))
			log.Info("reloaded the configuration", reloadedAttrs(reloaded, a)...)
			return
		case len(sched.RunOnStart) > 0:
			_ = ops.Status("running the connections once at start (run_on_start)")
		default:
			_ = ops.Status("waiting for the first scheduled run")
		}
		log.Info("leadsync started", slog.Int("connections", len(a.Conns)), slog.String("version", buildVersion().String()))
	}
	end := func(err error) (int, error) {
		switch {
		case errors.Is(err, sink.ErrSingleWriter): // a backfill holds the SQLite warehouse: retry later
			return exitFailed, err
		case err != nil:
			return exitUsage, &app.ConfigError{Err: err} // a schedule the scheduler refused
		}
		<-stopping // the soft stop began and STOPPING=1 is on its way
		log.Info("leadsync stopped")
		return exitOK, nil
	}
	for {
		until := make(chan struct{})
		ran := make(chan error, 1)
		go func() { ran <- sched.RunUntil(soft, hard, until) }()
		var plan *reloadPlan
		for plan == nil {
			select {
			case err := <-ran: // a soft stop, or the scheduler refused to start
				return end(err)
			case <-hup:
				plan = reload(log, f, a)
			}
		}
		// The runs in flight finish on the configuration they began with.
		close(until)
		if err := <-ran; err != nil || soft.Err() != nil {
			return end(err) // a stop during the wait: the new configuration is not applied
		}
		a.Apply(plan.wiring)
		sched.Schedule, sched.FullSchedule, sched.RunOnStart = a.Config.Schedule, a.Config.FullSchedule, plan.runOnStart
		reloaded = plan
	}
}

// startWebhooks serves the webhook endpoint on its own listener (webhooks.listen), storing
// into the warehouse's inbox. A reload leaves it as started. LACRM and LocaliQ deliveries are
// answered 404 until `webhooks register` exists to store their hooks' secrets.
func startWebhooks(a *app.App) (stop func(), err error) {
	w := a.Config.Webhooks
	inbox, ok := a.Sink.(sink.Inbox)
	if !ok {
		return nil, errors.New("the warehouse has no webhook inbox")
	}
	h, err := webhook.NewHandler(webhook.ServerConfig{
		Inbox: inbox,
		LeadConnector: webhook.LeadConnectorConfig{Ed25519Keys: w.LeadConnector.Ed25519Keys,
			RSAKeys: w.LeadConnector.RSAKeys, DisableRSA: w.LeadConnector.DisableRSA},
		MaxBodyBytes: int64(w.MaxBodyBytes), MaxBacklog: int64(w.MaxBacklog),
		Metrics: a.Metrics, Logger: a.Logger,
	})
	if err != nil {
		return nil, err
	}
	srv, err := webhook.Start(w.Listen, h, w.TLSCertFile, w.TLSKeyFile, a.Logger)
	if err != nil {
		return nil, err
	}
	a.Logger.Info("serving webhooks", slog.String("url", srv.URL()+"/webhooks/"))
	return func() {
		// A delivery in flight is answered once it is stored, within its store timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 2*webhook.DefaultStoreTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			a.Logger.Warn("webhooks", slog.String("error", err.Error()))
		}
	}, nil
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
