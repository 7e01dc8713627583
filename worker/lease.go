package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
)

// Several workers on one PostgreSQL (DESIGN §7). Every worker running a connection joins
// the same slot (a cron tick, or an open --once run) and syncs the accounts nobody has
// synced in it yet: it claims an account's lease before syncing it, heartbeats it, and
// releases it marked done. Accounts another worker holds are revisited until they are done
// or their lease expires (then taken over), so a run ends when every account of the slot is
// done, whoever did it. Page commits are fenced on the lease by the sink. SQLite admits one
// syncing process: its writer lock is taken instead.

// OutcomeSkipped is an account another worker synced in the same slot.
const OutcomeSkipped = "skipped"

// Environment overrides of the worker identity and the lease duration (multi-worker
// PostgreSQL only).
const (
	EnvWorkerID      = "LEADSYNC_WORKER_ID"
	EnvLeaseDuration = "LEADSYNC_LEASE_DURATION"
)

// Identity is this process's worker identity: $LEADSYNC_WORKER_ID, else id (the
// configuration's worker.id), else host:pid:random (unique per process, so a restarted
// worker never mistakes an old lease for its own); and the lease duration:
// $LEADSYNC_LEASE_DURATION (a Go duration), else lease (0: the sink's default). The
// environment wins so that several processes can share one configuration file.
func Identity(id string, lease time.Duration) (string, time.Duration, error) {
	if v := os.Getenv(EnvLeaseDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Hour {
			return "", 0, fmt.Errorf("$%s=%q: want a duration between 1s and 1h (as worker.lease_duration), like 60s", EnvLeaseDuration, v)
		}
		lease = d
	}
	if v := os.Getenv(EnvWorkerID); v != "" {
		return v, lease, nil
	}
	if id != "" {
		return id, lease, nil
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", strings.ReplaceAll(host, ":", "_"), os.Getpid(), hex.EncodeToString(b[:])), lease, nil
}

// deadOwner reports whether a lease owner is a worker on this host whose process is gone:
// its leases can be taken over at once rather than after they expire. A reused pid only
// makes the owner look alive, which is the safe mistake.
func deadOwner(owner string) bool {
	parts := strings.Split(owner, ":")
	if len(parts) != 3 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(parts[1])
	if parts[0] != strings.ReplaceAll(host, ":", "_") || err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// slotKey carries a cron tick from the scheduler to the run.
type slotKey struct{}

func withSlot(ctx context.Context, tick time.Time) context.Context {
	return context.WithValue(ctx, slotKey{}, tick)
}

func slotFrom(ctx context.Context) time.Time {
	t, _ := ctx.Value(slotKey{}).(time.Time)
	return t
}

// leasedAccount is an account to sync, with the pass that leases it (nil: no leases).
type leasedAccount struct {
	sources.Account
	pass *leasePass
}

// leased yields the accounts of a connection this worker should sync: all of them for a
// single writer; with leases, each not yet done in the slot, and again those another
// worker held, until every one is done. It ends early on a soft stop.
func (rs *runState) leased(c Connection, accts []sources.Account) iter.Seq[leasedAccount] {
	return func(yield func(leasedAccount) bool) {
		log := rs.w.logger().With(slog.String("connection", c.Name))
		if wl, ok := rs.w.Sink.(sink.WriterLocker); ok {
			if err := wl.LockWriter(); err != nil {
				rs.failed.Add(1)
				rs.fail(fmt.Errorf("connection %s: %w", c.Name, err))
				log.Error("another worker is syncing this warehouse", slog.String("error", err.Error()))
				return
			}
		}
		l, ok := rs.w.Sink.(sink.Leaser)
		if !ok || l.WorkerID() == "" {
			for _, a := range accts {
				if !yield(leasedAccount{Account: a}) {
					return
				}
			}
			return
		}
		p := &leasePass{rs: rs, c: c, l: l, log: log, wake: make(chan struct{}, 1)}
		p.run(accts, yield)
	}
}

// leasePass is one worker's pass over a connection's accounts in a slot.
type leasePass struct {
	rs   *runState
	c    Connection
	l    sink.Leaser
	log  *slog.Logger
	slot sink.Slot
	wake chan struct{} // an account finished or was deferred

	mu       sync.Mutex
	inflight int
	deferred []sources.Account // held by other workers when tried
}

func (p *leasePass) run(accts []sources.Account, yield func(leasedAccount) bool) {
	rs := p.rs
	kind := sink.SlotIncremental
	if rs.opts.Full {
		kind = sink.SlotFull
	}
	var err error
	p.slot, err = p.l.OpenSlot(rs.work, sink.SlotRequest{Connection: p.c.Name, Kind: kind,
		At: slotFrom(rs.soft), Trigger: rs.opts.Trigger, Dead: deadOwner})
	if err != nil {
		rs.failed.Add(1)
		rs.fail(fmt.Errorf("connection %s: %w", p.c.Name, err))
		return
	}
	p.log.Info("joined slot", slog.Int64("slot", p.slot.ID), slog.Time("slot_at", p.slot.At),
		slog.String("opened_by", p.slot.OpenedBy), slog.String("worker", p.l.WorkerID()))
	if p.slot.Closed {
		p.log.Info("every account of this slot was synced by other workers")
		for range accts {
			rs.w.Progress.AccountDone(p.c.Name, OutcomeSkipped)
		}
		return
	}
	// Each worker walks the accounts in its own order, so they rarely collide.
	order := append([]sources.Account(nil), accts...)
	mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, a := range order {
		if !p.yield(a, yield) {
			return
		}
	}
	poll := min(p.l.LeaseDuration()/4, time.Second)
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		p.mu.Lock()
		idle, waiting := p.inflight == 0, p.deferred
		p.deferred = nil
		p.mu.Unlock()
		if idle && len(waiting) == 0 {
			break
		}
		if len(waiting) > 0 {
			again, ok := p.revisit(waiting, yield)
			if !ok {
				return
			}
			p.mu.Lock()
			p.deferred = append(p.deferred, again...)
			p.mu.Unlock()
		}
		timer.Reset(poll)
		select {
		case <-rs.soft.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
	if err := p.l.CloseSlot(rs.work, p.slot.ID); err != nil {
		p.log.Warn("closing the slot failed", slog.String("error", err.Error()))
	}
}

// yield hands an account to the worker's loop, counting it in flight.
func (p *leasePass) yield(a sources.Account, yield func(leasedAccount) bool) bool {
	if p.rs.soft.Err() != nil {
		return false
	}
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
	if !yield(leasedAccount{Account: a, pass: p}) {
		p.finished()
		return false
	}
	return true
}

// revisit looks at accounts other workers held: done ones are skipped, free or expired
// ones are handed out again, the rest returned to wait.
func (p *leasePass) revisit(waiting []sources.Account, yield func(leasedAccount) bool) (again []sources.Account, ok bool) {
	bySource := map[string][]string{}
	for _, a := range waiting {
		bySource[a.Source] = append(bySource[a.Source], a.ID)
	}
	states := map[string]sink.Claim{}
	for src, ids := range bySource {
		st, err := p.l.PeekAccounts(p.rs.work, p.slot.ID, src, ids)
		if err != nil {
			p.log.Warn("reading leases failed", slog.String("error", err.Error()))
			return waiting, true
		}
		for id, c := range st {
			states[src+"\x00"+id] = c
		}
	}
	for _, a := range waiting {
		st := states[a.Source+"\x00"+a.ID]
		switch {
		case st.Done:
			p.rs.w.Progress.AccountDone(p.c.Name, OutcomeSkipped)
		case st.Owner != "" && !st.Held && !deadOwner(st.Owner):
			again = append(again, a)
		default:
			if !p.yield(a, yield) {
				return nil, false
			}
		}
	}
	return again, true
}

func (p *leasePass) finished() {
	p.mu.Lock()
	p.inflight--
	p.mu.Unlock()
	p.signal()
}

func (p *leasePass) later(a sources.Account) {
	p.mu.Lock()
	p.deferred = append(p.deferred, a)
	p.mu.Unlock()
}

func (p *leasePass) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// leasedAccount syncs one account under its lease (without leases: just syncs it).
func (rs *runState) leasedAccount(c Connection, a leasedAccount, log *slog.Logger) {
	p := a.pass
	if p == nil {
		rs.account(c, a.Account, log)
		return
	}
	defer p.finished()
	claim, err := p.l.ClaimAccount(rs.work, p.slot.ID, a.Source, a.ID, "")
	if err == nil && !claim.Held && !claim.Done && deadOwner(claim.Owner) {
		log.Warn("taking over the lease of a dead worker", slog.String("owner", claim.Owner))
		claim, err = p.l.ClaimAccount(rs.work, p.slot.ID, a.Source, a.ID, claim.Owner)
	}
	switch {
	case err != nil:
		if rs.work.Err() != nil {
			return
		}
		rs.failed.Add(1)
		rs.fail(fmt.Errorf("connection %s: account %s: %w", c.Name, a.ID, err))
		log.Error("claiming the account failed", slog.String("error", err.Error()))
		rs.w.Progress.AccountDone(c.Name, OutcomeFailed)
		return
	case claim.Done:
		rs.w.Progress.AccountDone(c.Name, OutcomeSkipped)
		return
	case !claim.Held:
		log.Debug("account held by another worker; later", slog.String("owner", claim.Owner))
		p.later(a.Account)
		return
	}

	hbCtx, stopHB := context.WithCancel(rs.work)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		p.heartbeat(hbCtx, a.Account, log)
	}()
	rs.account(c, a.Account, log)
	stopHB()
	<-hbDone

	// A sync cut short by a stop is not done: another worker (or the next run) redoes it.
	done := rs.soft.Err() == nil && rs.work.Err() == nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rs.work), 10*time.Second)
	defer cancel()
	held, err := p.l.ReleaseAccount(ctx, a.Source, a.ID, done)
	switch {
	case err != nil:
		log.Warn("releasing the lease failed; it will expire", slog.String("error", err.Error()))
	case !held && done:
		// Taken over mid-sync: wait for the new holder to finish it.
		log.Warn("lease lost during the sync; another worker took the account over")
		p.later(a.Account)
	}
}

// heartbeat extends the lease every third of its duration until ctx ends.
func (p *leasePass) heartbeat(ctx context.Context, a sources.Account, log *slog.Logger) {
	t := time.NewTicker(p.l.LeaseDuration() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held, err := p.l.Heartbeat(ctx, p.slot.ID, a.Source, a.ID)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("lease heartbeat failed", slog.String("error", err.Error()))
			}
			continue
		}
		if !held {
			// The sink's fence refuses this worker's next page; nothing more to do here.
			log.Warn("account lease lost", slog.String("worker", p.l.WorkerID()))
			return
		}
	}
}
