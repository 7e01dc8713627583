package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/leadsync/leadsync/sink"
)

// Scheduler runs the worker on cron schedules: each connection on its schedule, and a full
// pass on its full schedule. Runs of one connection never overlap; a tick that finds its
// connection still running is skipped. Every run knows its tick (its slot): workers sharing
// a PostgreSQL warehouse fire the same ticks and split the tick's accounts (lease.go), so
// "@every" schedules are aligned to the clock rather than to each process's start.
type Scheduler struct {
	Worker *Worker
	// Schedule and FullSchedule are the defaults for connections without their own.
	Schedule     string
	FullSchedule string
	// RunOnStart names the connections to run once (incremental) as soon as the schedules
	// run, rather than at their first tick (run_on_start).
	RunOnStart []string
	Logger     *slog.Logger
	// OnStarted, if set, is called each time the schedules run (and, on SQLite, this process
	// holds the warehouse's writer lock): the moment to tell systemd READY=1.
	OnStarted func()
	// OnRun, if set, is called after each run (e.g. to update sd_notify STATUS).
	OnRun func(conn string, res Result, err error)

	beat atomic.Int64 // unix nanos of the scheduler's last heartbeat

	mu     sync.Mutex
	active map[string]bool  // connections with a run in flight
	jobs   map[string][]job // each connection's schedules, for the next-run lines
}

// job is one schedule of one connection.
type job struct {
	spec  string
	full  bool
	sched cron.Schedule
}

func (j job) mode() string {
	if j.full {
		return "full"
	}
	return "incremental"
}

// heartbeat is how often the scheduler says it is alive; Alive allows six times as long.
const heartbeat = 5 * time.Second

// Alive reports whether the scheduler loop ticked recently; the systemd watchdog stops
// pinging when it does not.
func (s *Scheduler) Alive() bool {
	last := s.beat.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 6*heartbeat
}

// Run schedules every connection and blocks until ctx is cancelled (soft stop), then waits
// for the runs in flight to finish their page. hard aborts them at once.
func (s *Scheduler) Run(ctx, hard context.Context) error { return s.RunUntil(ctx, hard, nil) }

// RunUntil is Run that also returns once until is closed (a reload): no run starts after
// that, and those in flight are waited for, whole rather than to the end of their page
// unless ctx is cancelled meanwhile. It may be called again once it returned, with the
// worker's connections and the schedules changed.
func (s *Scheduler) RunUntil(ctx, hard context.Context, until <-chan struct{}) error {
	log := cmp.Or(s.Logger, slog.Default())
	jobs, err := s.plan()
	if err != nil {
		return err
	}
	c := cron.New(cron.WithChain(cron.Recover(cronLogger{log})))
	for _, conn := range s.Worker.Connections {
		for _, j := range jobs[conn.Name] {
			name, full, sched := conn.Name, j.full, j.sched
			c.Schedule(sched, cron.FuncJob(func() {
				s.runOne(withSlot(ctx, tickOf(sched, time.Now())), hard, name, full)
			}))
		}
	}
	s.beat.Store(time.Now().UnixNano())
	if _, err := c.AddFunc(fmt.Sprintf("@every %s", heartbeat), func() { s.beat.Store(time.Now().UnixNano()) }); err != nil {
		return err
	}
	if wl, ok := s.Worker.Sink.(sink.WriterLocker); ok {
		// SQLite: this daemon is the warehouse's one writer for as long as it runs.
		if err := wl.LockWriter(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	s.mu.Lock()
	s.jobs = jobs
	s.mu.Unlock()
	c.Start()
	if s.OnStarted != nil {
		s.OnStarted()
	}
	now := time.Now()
	for _, conn := range s.Worker.Connections {
		s.logNext(log, conn.Name, now)
	}
	// A run on start has no tick: like a --once run it joins a slot another worker has
	// open for the connection, or opens one (lease.go).
	var starts sync.WaitGroup
	for _, name := range s.RunOnStart {
		if slices.ContainsFunc(s.Worker.Connections, func(c Connection) bool { return c.Name == name }) {
			starts.Go(func() { s.runOne(ctx, hard, name, false) })
		}
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: finishing the pages in flight")
	case <-until:
		if busy := s.inFlight(); len(busy) > 0 {
			log.Info("reloading: waiting for the runs in flight to finish", slog.Any("connections", busy))
		}
	}
	stopped := c.Stop()
	// The heartbeat stopped with the other cron jobs; it goes on while the runs in flight
	// finish, which after a reload may take a while, so that the watchdog does not take
	// the wait for a wedged scheduler.
	waited := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.beat.Store(time.Now().UnixNano())
			case <-waited:
				return
			}
		}
	}()
	<-stopped.Done()
	starts.Wait()
	close(waited)
	return nil
}

// plan parses each connection's schedules: all of them, before anything is scheduled.
func (s *Scheduler) plan() (map[string][]job, error) {
	jobs := map[string][]job{}
	for _, conn := range s.Worker.Connections {
		for _, j := range []job{{spec: cmp.Or(conn.Schedule, s.Schedule)}, {spec: cmp.Or(conn.FullSchedule, s.FullSchedule), full: true}} {
			if j.spec == "" || j.spec == "off" {
				continue
			}
			sched, err := cron.ParseStandard(j.spec)
			if err != nil {
				return nil, fmt.Errorf("worker: schedule %q for connection %s: %w", j.spec, conn.Name, err)
			}
			if every, ok := sched.(cron.ConstantDelaySchedule); ok {
				sched = alignedEvery{every.Delay}
			}
			j.sched = sched
			jobs[conn.Name] = append(jobs[conn.Name], j)
		}
	}
	return jobs, nil
}

// logNext says when each schedule of conn fires next: at start, and after each run.
func (s *Scheduler) logNext(log *slog.Logger, conn string, now time.Time) {
	s.mu.Lock()
	jobs := s.jobs[conn]
	s.mu.Unlock()
	for _, j := range jobs {
		next := j.sched.Next(now)
		log.Info("next run", slog.String("connection", conn), slog.String("mode", j.mode()), slog.String("schedule", j.spec),
			slog.Time("at", next), slog.Duration("in", next.Sub(now).Round(time.Second)))
	}
}

// begin marks conn as running; false when it already is.
func (s *Scheduler) begin(conn string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[conn] {
		return false
	}
	if s.active == nil {
		s.active = map[string]bool{}
	}
	s.active[conn] = true
	return true
}

func (s *Scheduler) end(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, conn)
}

// inFlight lists the connections running now, sorted.
func (s *Scheduler) inFlight() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for conn := range s.active {
		out = append(out, conn)
	}
	slices.Sort(out)
	return out
}

func (s *Scheduler) runOne(ctx, hard context.Context, conn string, full bool) {
	log := cmp.Or(s.Logger, slog.Default())
	if !s.begin(conn) {
		log.Warn("skipping a scheduled run: the previous one is still running", slog.String("connection", conn), slog.Bool("full", full))
		return
	}
	defer s.end(conn)
	if ctx.Err() != nil {
		return
	}
	res, err := s.Worker.Run(ctx, RunOptions{Trigger: sink.TriggerCron, Connections: []string{conn}, Full: full, Hard: hard})
	if err != nil {
		log.Error("run failed", slog.String("connection", conn), slog.String("error", err.Error()))
	}
	if s.OnRun != nil {
		s.OnRun(conn, res, err)
	}
	if ctx.Err() == nil {
		s.logNext(log, conn, time.Now())
	}
}

// cronLogger adapts slog to cron's logger (it logs recovered panics).
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, slog.String("error", fmt.Sprint(err)))...)
}

// alignedEvery is "@every d" on a grid anchored at the zero time rather than at the process
// start, so that every worker ticks at the same instants.
type alignedEvery struct{ d time.Duration }

func (a alignedEvery) Next(t time.Time) time.Time { return t.Truncate(a.d).Add(a.d) }

// tickOf is the tick a job firing at now belongs to: cron fires a job at its tick, on the
// minute for cron specs (seconds are not in the standard syntax).
func tickOf(sched cron.Schedule, now time.Time) time.Time {
	if a, ok := sched.(alignedEvery); ok {
		return now.Truncate(a.d).UTC()
	}
	return now.Truncate(time.Minute).UTC()
}
