// Package worker syncs connections: for each, it lists the accounts, and for each account
// (with bounded concurrency) pages its leads into the sink, one transaction per page. Errors
// are per account; a 403 is a restriction, not a failure. It knows sources and the sink only
// by their interfaces.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/httpx"
)

// Connection is one configured grant and its source.
type Connection struct {
	Name   string
	Source sources.Source
	// Concurrency bounds how many of its accounts sync at once (default 4).
	Concurrency int
	// Schedule and FullSchedule are cron specs; "" uses the worker's defaults.
	Schedule     string
	FullSchedule string
	// Selects (optional) chooses the listed accounts to sync, by id (the configuration's
	// accounts.include and accounts.exclude); nil syncs them all.
	Selects func(accountID string) bool
	// Streams (optional) chooses the source's streams to sync, by name (the configuration's
	// streams); nil syncs them all. They sync in the source's order either way.
	Streams []string
}

// streams are the streams of c to sync, in the source's order.
func (c Connection) streams() []sources.Stream {
	all := c.Source.Streams()
	if c.Streams == nil {
		return all
	}
	return slices.DeleteFunc(slices.Clone(all), func(st sources.Stream) bool { return !slices.Contains(c.Streams, st.Name) })
}

// Observer receives what the worker does, for metrics. Implementations must be safe for
// concurrent use.
type Observer interface {
	// RunStarted and RunFinished bracket each connection's part of a run.
	RunStarted(trigger, connection string)
	// AccountsListed reports a connection's complete account listing: accounts of the
	// connection missing from it were uninstalled or removed.
	AccountsListed(connection, source string, accounts []string)
	// RecordsRejected counts vendor records quarantined in rejected_records.
	RecordsRejected(connection, source string, n int)
	AccountSynced(connection, source, account, outcome string, leads int64, d time.Duration)
	// RunFinished reports a connection's part of a run: its status (sink.RunOK, RunFailed
	// when its listing or one of its accounts failed, RunCancelled) and its counts.
	RunFinished(trigger, connection, status string, stats sink.RunStats, d time.Duration)
}

// Account outcomes, as reported to the Observer and the progress display.
const (
	OutcomeOK         = sink.OutcomeOK
	OutcomeFailed     = sink.OutcomeFailed
	OutcomeRestricted = sink.OutcomeRestricted
	// OutcomeMissingScope is a stream's only: the account's other streams carry on, and
	// the account's outcome is theirs.
	OutcomeMissingScope = sink.OutcomeMissingScope
	OutcomeCancelled    = sink.OutcomeCancelled
)

// Worker runs syncs. Its fields are set once before use.
type Worker struct {
	Sink        sink.Sink
	Connections []Connection
	Logger      *slog.Logger
	Observer    Observer  // optional
	Progress    *Progress // optional
	Now         func() time.Time

	abandoned sync.Once // runs a crash or an outage left "running" are closed before the first run
}

// RunOptions select what one run does.
type RunOptions struct {
	Trigger     string   // sink.Trigger*
	Connections []string // only these (all when empty)
	Full        bool     // full pass: re-read everything, then soft-delete what was not seen
	Since       time.Time
	// Hard, when set, is cancelled to abort at once (a second signal); ctx's cancellation
	// is a soft stop: the page in flight is finished and committed first.
	Hard context.Context
}

// Result is the outcome of a run.
type Result struct {
	Run    sink.RunID
	Status string
	Stats  sink.RunStats
	// Failures holds one error per failed account or connection.
	Failures []error
	// Connections are the connections' parts of the run, in the order they were selected.
	Connections []ConnectionResult
}

// ConnectionResult is one connection's part of a run, as sync_run_connections records it
// (its Stats also count its requests).
type ConnectionResult struct {
	sink.ConnectionRun
	Took time.Duration
}

// OK reports whether every account synced or is an expected restriction.
func (r Result) OK() bool { return r.Status == sink.RunOK }

// Run performs one sync run over the selected connections. ctx is the soft-stop context.
func (w *Worker) Run(ctx context.Context, opts RunOptions) (Result, error) {
	hard := cmp.Or(opts.Hard, context.Background())
	// Work continues on the hard context so a soft stop can finish the page in flight.
	work, cancelWork := context.WithCancel(hard)
	defer cancelWork()
	conns, err := w.selected(opts.Connections)
	if err != nil {
		return Result{}, err
	}
	start := w.now()
	trigger := cmp.Or(opts.Trigger, sink.TriggerOnce)
	mode := sink.ModeIncremental
	if opts.Full {
		mode = sink.ModeFull
	}
	runConn := "" // the run covers several connections
	if len(conns) == 1 {
		runConn = conns[0].Name
	}

	w.abandoned.Do(func() {
		// Before this process's first run, so none of its own runs can be running yet.
		n, err := w.Sink.CloseAbandonedRuns(work)
		switch {
		case err != nil:
			w.logger().Warn("closing abandoned runs failed", slog.String("error", err.Error()))
		case n > 0:
			w.logger().Warn("closed runs left running by a crash or a database outage", slog.Int64("runs", n),
				slog.String("status", sink.RunAbandoned))
		}
	})
	run, err := w.Sink.BeginRun(work, trigger, runConn, mode)
	if err != nil {
		return Result{}, fmt.Errorf("worker: begin run: %w", err)
	}
	// Each connection counts its own accounts and requests; the run's are their sums.
	states := make([]*runState, len(conns))
	for i := range conns {
		st := &httpx.Stats{}
		states[i] = &runState{w: w, run: run, opts: opts, trigger: trigger, mode: mode, soft: ctx,
			work: httpx.WithStats(work, st), stats: st}
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { states[i].connection(c) })
	}
	wg.Wait()

	res := Result{Run: run, Connections: make([]ConnectionResult, len(conns))}
	incomplete := false
	for i, rs := range states {
		cr := rs.result
		res.Connections[i] = cr
		res.Failures = append(res.Failures, rs.failures...)
		res.Stats.AccountsOK += cr.Stats.AccountsOK
		res.Stats.AccountsFailed += cr.Stats.AccountsFailed
		res.Stats.AccountsRestricted += cr.Stats.AccountsRestricted
		res.Stats.LeadsWritten += cr.Stats.LeadsWritten
		res.Stats.Requests += cr.Stats.Requests
		res.Stats.Throttled += cr.Stats.Throttled
		res.Stats.RecordsRejected += cr.Stats.RecordsRejected
		incomplete = incomplete || rs.incomplete.Load()
	}
	switch {
	case incomplete:
		// A stop that came after every account had finished does not make the run partial.
		res.Status = sink.RunCancelled
	case len(res.Failures) > 0:
		res.Status = sink.RunFailed
	default:
		res.Status = sink.RunOK
	}
	var first error
	if len(res.Failures) > 0 {
		first = res.Failures[0]
	}
	// The ledger must be closed even after a hard stop.
	finCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.Sink.FinishRun(finCtx, run, res.Status, res.Stats, first); err != nil {
		return res, fmt.Errorf("worker: finish run: %w", err)
	}
	if len(conns) > 1 {
		// Each connection logged its own line; this one sums them.
		w.logger().Info("run finished", slog.Int64("run", int64(run)), slog.Int("connections", len(conns)),
			slog.String("status", res.Status), slog.Int("accounts_ok", res.Stats.AccountsOK),
			slog.Int("accounts_failed", res.Stats.AccountsFailed), slog.Int("accounts_restricted", res.Stats.AccountsRestricted),
			slog.Int64("leads_written", res.Stats.LeadsWritten), slog.Int64("requests", res.Stats.Requests),
			slog.Int64("throttled", res.Stats.Throttled), slog.Duration("took", w.now().Sub(start).Round(time.Millisecond)))
	}
	return res, nil
}

func (w *Worker) selected(names []string) ([]Connection, error) {
	if len(names) == 0 {
		return w.Connections, nil
	}
	var out []Connection
	for _, n := range names {
		found := false
		for _, c := range w.Connections {
			if c.Name == n {
				out, found = append(out, c), true
			}
		}
		if !found {
			return nil, fmt.Errorf("worker: no enabled connection named %q", n)
		}
	}
	return out, nil
}

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// runState is one connection's part of a run: its counters, shared by its accounts.
type runState struct {
	w       *Worker
	run     sink.RunID
	opts    RunOptions
	trigger string
	mode    string
	soft    context.Context // cancelled: finish the page in flight, then stop
	work    context.Context // cancelled: abort now; counts the connection's requests in stats
	stats   *httpx.Stats

	ok, failed, restricted atomic.Int64
	leads, rejected        atomic.Int64
	incomplete             atomic.Bool // a stop left an account unsynced or half-synced

	mu       sync.Mutex
	failures []error

	result ConnectionResult // set when the connection's part ends
}

func (rs *runState) fail(err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.failures = append(rs.failures, err)
}

// connection syncs c's accounts, then records how its part of the run ended.
func (rs *runState) connection(c Connection) {
	log := rs.w.logger().With(slog.String("connection", c.Name), slog.String("source", c.Source.Name()))
	start := rs.w.now()
	if rs.w.Observer != nil {
		rs.w.Observer.RunStarted(rs.trigger, c.Name)
	}
	defer rs.finish(c, start, log)
	rs.syncConnection(c, log)
}

// finish records the connection's result: sync_run_connections, the Observer, its log line.
// Failed when its listing or any of its accounts failed, even if a stop came too: a stop
// must not hide a failing connection.
func (rs *runState) finish(c Connection, start time.Time, log *slog.Logger) {
	rs.mu.Lock()
	var first error
	if len(rs.failures) > 0 {
		first = rs.failures[0]
	}
	rs.mu.Unlock()
	status := sink.RunOK
	switch {
	case first != nil:
		status = sink.RunFailed
	case rs.incomplete.Load():
		status = sink.RunCancelled
	}
	d := rs.w.now().Sub(start)
	rs.result = ConnectionResult{
		ConnectionRun: sink.ConnectionRun{Connection: c.Name, Source: c.Source.Name(), Mode: rs.mode, Status: status,
			Started: start, Err: first, Stats: sink.RunStats{
				AccountsOK: int(rs.ok.Load()), AccountsFailed: int(rs.failed.Load()), AccountsRestricted: int(rs.restricted.Load()),
				LeadsWritten: rs.leads.Load(), Requests: rs.stats.Requests.Load(), Throttled: rs.stats.Throttled.Load(),
				RecordsRejected: rs.rejected.Load()}},
		Took: d,
	}
	// Recorded even after a hard stop.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rs.soft), 10*time.Second)
	defer cancel()
	if err := rs.w.Sink.FinishConnection(ctx, rs.run, rs.result.ConnectionRun); err != nil {
		log.Error("recording the connection's result failed", slog.String("error", err.Error()))
	}
	if rs.w.Observer != nil {
		rs.w.Observer.RunFinished(rs.trigger, c.Name, status, rs.result.Stats, d)
	}
	st := rs.result.Stats
	log.Info("run finished", slog.Int64("run", int64(rs.run)), slog.String("trigger", rs.trigger),
		slog.String("mode", rs.mode), slog.String("status", status), slog.Int("accounts_ok", st.AccountsOK),
		slog.Int("accounts_failed", st.AccountsFailed), slog.Int("accounts_restricted", st.AccountsRestricted),
		slog.Int64("leads_written", st.LeadsWritten), slog.Int64("requests", st.Requests),
		slog.Int64("throttled", st.Throttled), slog.Duration("took", d.Round(time.Millisecond)))
}

func (rs *runState) syncConnection(c Connection, log *slog.Logger) {
	// A listing commits nothing, so the soft stop interrupts it as well as the hard one.
	list, cancelList := context.WithCancel(rs.work)
	defer cancelList()
	defer context.AfterFunc(rs.soft, cancelList)()
	var accts []sources.Account
	unselected := 0
	for a, err := range c.Source.Accounts(list) {
		if err != nil && list.Err() != nil {
			rs.incomplete.Store(true) // stopped: not a failure of the connection
			return
		}
		if err != nil {
			rs.failed.Add(1)
			rs.fail(fmt.Errorf("connection %s: list accounts: %w", c.Name, err))
			log.Error("listing accounts failed", slog.String("error", err.Error()))
			if errors.Is(err, sources.ErrNeedsReauth) {
				log.Error("grant needs re-authorization", slog.String("fix", "leadsync auth login "+c.Name))
			}
			return
		}
		if c.Selects != nil && !c.Selects(a.ID) {
			unselected++
			continue
		}
		accts = append(accts, a)
	}
	cancelList()
	if unselected > 0 {
		log.Debug("accounts listed", slog.Int("accounts", len(accts)), slog.Int("not_selected", unselected))
	} else {
		log.Debug("accounts listed", slog.Int("accounts", len(accts)))
	}
	if rs.w.Observer != nil {
		ids := make([]string, len(accts))
		for i, a := range accts {
			ids[i] = a.ID
		}
		rs.w.Observer.AccountsListed(c.Name, c.Source.Name(), ids)
	}
	rs.w.Progress.AddAccounts(c.Name, len(accts))

	sem := make(chan struct{}, max(1, cmp.Or(c.Concurrency, 4)))
	var wg sync.WaitGroup
	// leased (lease.go) yields the accounts this worker syncs: with several workers on one
	// PostgreSQL, those nobody synced in this slot; leasedAccount claims each one's lease.
	for a := range rs.leased(c, accts) {
		if rs.soft.Err() != nil {
			rs.incomplete.Store(true)
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rs.leasedAccount(c, a, log.With(slog.String("account", a.ID)))
		}()
	}
	wg.Wait()
}

func (rs *runState) account(c Connection, a sources.Account, log *slog.Logger) {
	start := rs.w.now()
	s := rs.w.Sink
	var written int64
	outcome, err := rs.syncAccount(c, a, &written)
	rs.leads.Add(written)
	switch outcome {
	case OutcomeOK:
		rs.ok.Add(1)
	case OutcomeRestricted:
		rs.restricted.Add(1)
	case OutcomeFailed:
		rs.failed.Add(1)
		rs.fail(fmt.Errorf("connection %s: account %s: %w", c.Name, a.ID, err))
		log.Error("account sync failed", slog.String("error", err.Error()))
		if errors.Is(err, sources.ErrNeedsRotation) {
			log.Error("static token needs rotation", slog.String("fix", "put a new token in the secret named in the error"))
		}
	case OutcomeCancelled:
		rs.incomplete.Store(true)
	}
	if outcome != OutcomeCancelled {
		recErr := err
		if outcome == OutcomeRestricted {
			recErr = nil
		}
		// Record the outcome even during a hard stop.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(rs.work), 10*time.Second)
		if outcome != OutcomeRestricted {
			if e := s.AccountSynced(ctx, rs.run, a.Source, a.ID, recErr); e != nil {
				log.Error("recording account outcome failed", slog.String("error", e.Error()))
			}
		}
		cancel()
	}
	d := rs.w.now().Sub(start)
	// At info a run logs per connection; an account only when it failed or is restricted.
	level := slog.LevelDebug
	if outcome == OutcomeFailed || outcome == OutcomeRestricted {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "account synced", slog.String("outcome", outcome), slog.Int64("leads_written", written),
		slog.Duration("took", d.Round(time.Millisecond)))
	if rs.w.Observer != nil {
		rs.w.Observer.AccountSynced(c.Name, a.Source, a.ID, outcome, written, d)
	}
	rs.w.Progress.AccountDone(c.Name, outcome)
}

// syncAccount syncs one account's streams in the source's order, recording each in the
// ledger. A stream that fails or is restricted does not stop the others; a stop does. It
// returns the account's outcome (failed over restricted over ok) and the first failure.
func (rs *runState) syncAccount(c Connection, a sources.Account, written *int64) (string, error) {
	if err := rs.w.Sink.UpsertAccount(rs.work, a); err != nil {
		return OutcomeFailed, fmt.Errorf("record account: %w", err)
	}
	outcome := OutcomeOK
	var failure error
	for _, st := range c.streams() {
		if rs.soft.Err() != nil {
			return OutcomeCancelled, rs.soft.Err()
		}
		start := rs.w.now()
		var n int64
		o, err := rs.syncStream(c, a, st, &n)
		if st.Table == sources.TableLeads {
			*written += n // leads_written counts leads only
		}
		rs.recordStream(c, a, st, o, n, err, start)
		switch o {
		case OutcomeCancelled:
			return o, err
		case OutcomeFailed:
			outcome = OutcomeFailed
			failure = cmp.Or(failure, fmt.Errorf("stream %s: %w", st.Name, err))
		case OutcomeRestricted:
			if outcome == OutcomeOK {
				outcome = OutcomeRestricted
			}
		case OutcomeMissingScope:
			// The stream's ledger row says so, with the fix; the account's other
			// streams synced, so the account did.
		}
	}
	return outcome, failure
}

// recordStream writes how a stream ended to the ledger, even during a hard stop.
func (rs *runState) recordStream(c Connection, a sources.Account, st sources.Stream, outcome string, n int64, err error, start time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rs.work), 10*time.Second)
	defer cancel()
	r := sink.StreamResult{Source: a.Source, Account: a.ID, Stream: st.Name, Outcome: outcome, Written: n, Err: err, Started: start}
	if e := rs.w.Sink.StreamSynced(ctx, rs.run, r); e != nil {
		rs.w.logger().Error("recording stream outcome failed", slog.String("connection", c.Name),
			slog.String("account", a.ID), slog.String("stream", st.Name), slog.String("error", e.Error()))
	}
}

// syncStream pages one stream of an account into the sink: from its cursor, or whole on a
// full pass or for a full-refresh stream, after which the leads it did not see are
// soft-deleted.
func (rs *runState) syncStream(c Connection, a sources.Account, st sources.Stream, written *int64) (string, error) {
	s := rs.w.Sink
	full := rs.opts.Full || st.Mode == sources.FullRefresh
	var cur sources.Cursor
	if !full {
		var err error
		if cur, err = s.Cursor(rs.work, a.Source, a.ID, st.Name); err != nil {
			return OutcomeFailed, fmt.Errorf("read cursor: %w", err)
		}
	}
	p := pass{c: c, a: a, st: st, full: full && sources.SoftDeletes(st.Table), written: written}
	ropts := sources.ReadOptions{Full: full, Since: rs.opts.Since}
	if outcome, err := rs.pages(p, c.Source.Read(rs.work, a, st.Name, cur, ropts), &cur, false); outcome != "" {
		return outcome, err
	}
	if !p.full {
		return OutcomeOK, nil
	}
	if cf, ok := c.Source.(sources.Confirmer); ok {
		missing, err := s.FullPassMissing(rs.work, rs.run, a.Source, a.ID, st.Name)
		if err != nil {
			return OutcomeFailed, fmt.Errorf("finish full pass: %w", err)
		}
		if len(missing) > 0 && cur != "" {
			rs.w.logger().Info("confirming leads missing from the full pass before deleting them",
				slog.String("connection", c.Name), slog.String("account", a.ID), slog.String("stream", st.Name),
				slog.Int("missing", len(missing)))
			if outcome, err := rs.pages(p, cf.Confirm(rs.work, a, st.Name, missing), &cur, true); outcome != "" {
				return outcome, err
			}
		}
	}
	n, err := s.FinishFullPass(rs.work, rs.run, a.Source, a.ID, st.Name)
	if err != nil {
		return OutcomeFailed, fmt.Errorf("finish full pass: %w", err)
	}
	if n > 0 {
		rs.w.logger().Info("soft-deleted leads missing from a full pass", slog.String("connection", c.Name),
			slog.String("account", a.ID), slog.String("stream", st.Name), slog.Int64("deleted", n))
	}
	return OutcomeOK, nil
}

// pass is the stream pass that pages are written for.
type pass struct {
	c       Connection
	a       sources.Account
	st      sources.Stream
	full    bool // a full pass of a stream whose table soft-deletes: its rows are recorded as seen
	written *int64
}

// pages writes a source's pages into the sink, each with its cursor (or, with keepCursor,
// with *cur unchanged), and leaves *cur at the last cursor written. It returns an outcome
// only when the account's sync ends here (restricted, failed, cancelled).
func (rs *runState) pages(p pass, seq iter.Seq2[sources.Page, error], cur *sources.Cursor, keepCursor bool) (string, error) {
	s := rs.w.Sink
	c, a := p.c, p.a
	for page, err := range seq {
		if err != nil {
			if r, ok := errors.AsType[*sources.RestrictedError](err); ok {
				return rs.restrict(p, r)
			}
			if m, ok := errors.AsType[*sources.MissingScopeError](err); ok {
				rs.w.logger().Warn("stream skipped: the grant lacks its scope", slog.String("connection", c.Name),
					slog.String("account", a.ID), slog.String("stream", p.st.Name), slog.String("scope", m.Scope),
					slog.String("fix", "run `leadsync auth login` again with "+m.Scope+" among the connection's scopes"))
				return OutcomeMissingScope, m
			}
			if rs.work.Err() != nil {
				return OutcomeCancelled, rs.work.Err()
			}
			return OutcomeFailed, err
		}
		if !keepCursor {
			*cur = page.Next
		}
		res, err := s.WritePage(rs.work, sink.PageWrite{Run: rs.run, Source: a.Source, Account: a.ID, Stream: p.st.Name,
			Leads: page.Leads, Rejected: page.Rejected, Counts: page.Counts, Deals: page.Deals, Dictionary: page.Dictionary,
			Submissions: page.Submissions, Cycles: page.Cycles, Next: *cur, FullPass: p.full})
		if err != nil {
			if rs.work.Err() != nil {
				return OutcomeCancelled, rs.work.Err()
			}
			return OutcomeFailed, fmt.Errorf("write page: %w", err)
		}
		*p.written += int64(res.Inserted + res.Updated + res.Rows)
		if res.Rejected > 0 {
			rs.rejected.Add(int64(res.Rejected))
			if rs.w.Observer != nil {
				rs.w.Observer.RecordsRejected(c.Name, a.Source, res.Rejected)
			}
			rs.w.logger().Warn("records quarantined in rejected_records", slog.String("connection", c.Name),
				slog.String("account", a.ID), slog.String("stream", p.st.Name), slog.Int("rejected", res.Rejected))
		}
		rs.w.Progress.Page(c.Name, pageRead(page), res.Inserted+res.Updated+res.Rows)
		if rs.soft.Err() != nil {
			// Soft stop: the page is committed; resume from its cursor next time.
			return OutcomeCancelled, rs.soft.Err()
		}
	}
	return "", nil
}

// restrict handles a 403 per DESIGN §6: the stream is restricted and its cursor kept; a
// restricted leads stream tags the account (access, restricted_fields). The account's other
// streams go on (LocaliQ's PII-free daily counts, for one).
func (rs *runState) restrict(p pass, r *sources.RestrictedError) (string, error) {
	rs.w.logger().Warn("stream restricted", slog.String("connection", p.c.Name), slog.String("account", p.a.ID),
		slog.String("stream", p.st.Name), slog.String("access", r.Access()), slog.String("reason", r.Message))
	if p.st.Table != sources.TableLeads {
		return OutcomeRestricted, r
	}
	if err := rs.w.Sink.MarkRestricted(rs.work, rs.run, r); err != nil {
		return OutcomeFailed, fmt.Errorf("mark restricted: %w", err)
	}
	return OutcomeRestricted, r
}
