package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
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
	Logger       *slog.Logger
	// OnStarted, if set, is called once the schedules run (and, on SQLite, this process
	// holds the warehouse's writer lock): the moment to tell systemd READY=1.
	OnStarted func()
	// OnRun, if set, is called after each run (e.g. to update sd_notify STATUS).
	OnRun func(conn string, res Result, err error)

	beat    atomic.Int64 // unix nanos of the scheduler's last heartbeat
	running sync.Map     // connection name → *sync.Mutex
}

// Alive reports whether the scheduler loop ticked recently; the systemd watchdog stops
// pinging when it does not.
func (s *Scheduler) Alive() bool {
	last := s.beat.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 30*time.Second
}

// Run schedules every connection and blocks until ctx is cancelled (soft stop), then waits
// for the runs in flight to finish their page. hard aborts them at once.
func (s *Scheduler) Run(ctx, hard context.Context) error {
	log := cmp.Or(s.Logger, slog.Default())
	c := cron.New(cron.WithChain(cron.Recover(cronLogger{log})))
	for _, conn := range s.Worker.Connections {
		for _, job := range []struct {
			spec string
			full bool
		}{{cmp.Or(conn.Schedule, s.Schedule), false}, {cmp.Or(conn.FullSchedule, s.FullSchedule), true}} {
			if job.spec == "" || job.spec == "off" {
				continue
			}
			name, full := conn.Name, job.full
			sched, err := cron.ParseStandard(job.spec)
			if err != nil {
				return fmt.Errorf("worker: schedule %q for connection %s: %w", job.spec, name, err)
			}
			if every, ok := sched.(cron.ConstantDelaySchedule); ok {
				sched = alignedEvery{every.Delay}
			}
			c.Schedule(sched, cron.FuncJob(func() {
				s.runOne(withSlot(ctx, tickOf(sched, time.Now())), hard, name, full)
			}))
			log.Info("scheduled", slog.String("connection", name), slog.String("spec", job.spec), slog.Bool("full", full))
		}
	}
	s.beat.Store(time.Now().UnixNano())
	if _, err := c.AddFunc("@every 5s", func() { s.beat.Store(time.Now().UnixNano()) }); err != nil {
		return err
	}
	if wl, ok := s.Worker.Sink.(sink.WriterLocker); ok {
		// SQLite: this daemon is the warehouse's one writer for as long as it runs.
		if err := wl.LockWriter(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	c.Start()
	if s.OnStarted != nil {
		s.OnStarted()
	}
	<-ctx.Done()
	log.Info("stopping: finishing the pages in flight")
	<-c.Stop().Done()
	return nil
}

func (s *Scheduler) runOne(ctx, hard context.Context, conn string, full bool) {
	log := cmp.Or(s.Logger, slog.Default()).With(slog.String("connection", conn))
	mu, _ := s.running.LoadOrStore(conn, &sync.Mutex{})
	if !mu.(*sync.Mutex).TryLock() {
		log.Warn("skipping a scheduled run: the previous one is still running", slog.Bool("full", full))
		return
	}
	defer mu.(*sync.Mutex).Unlock()
	if ctx.Err() != nil {
		return
	}
	res, err := s.Worker.Run(ctx, RunOptions{Trigger: sink.TriggerCron, Connections: []string{conn}, Full: full, Hard: hard})
	if err != nil {
		log.Error("run failed", slog.String("error", err.Error()))
	}
	if s.OnRun != nil {
		s.OnRun(conn, res, err)
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
