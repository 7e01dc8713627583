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
// connection still running is skipped.
type Scheduler struct {
	Worker *Worker
	// Schedule and FullSchedule are the defaults for connections without their own.
	Schedule     string
	FullSchedule string
	Logger       *slog.Logger
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
			if job.spec == "" {
				continue
			}
			name, full := conn.Name, job.full
			if _, err := c.AddFunc(job.spec, func() { s.runOne(ctx, hard, name, full) }); err != nil {
				return fmt.Errorf("worker: schedule %q for connection %s: %w", job.spec, name, err)
			}
			log.Info("scheduled", slog.String("connection", name), slog.String("spec", job.spec), slog.Bool("full", full))
		}
	}
	s.beat.Store(time.Now().UnixNano())
	if _, err := c.AddFunc("@every 5s", func() { s.beat.Store(time.Now().UnixNano()) }); err != nil {
		return err
	}
	c.Start()
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
