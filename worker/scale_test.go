package worker_test

import (
	"context"
	"sync"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/worker"
)

// Two workers (two wired leadsyncs, each its own identity) share one PostgreSQL warehouse.
func TestScaleTwoWorkersShareARun(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(5), testenv.Postgres)
	a := env.Authorized(t)
	b := env.App(t) // the token store is shared through the config
	accounts := len(env.Sandbox.GroundTruth())

	var wg sync.WaitGroup
	res := make([]worker.Result, 2)
	errs := make([]error, 2)
	for i, app := range []*worker.Worker{a.Worker, b.Worker} {
		wg.Go(func() { res[i], errs[i] = app.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce}) })
	}
	wg.Wait()
	synced := 0
	for i := range res {
		if errs[i] != nil || !res[i].OK() {
			t.Fatalf("worker %d: %v %s %v", i, errs[i], res[i].Status, res[i].Failures)
		}
		s := res[i].Stats
		synced += s.AccountsOK + s.AccountsRestricted + s.AccountsFailed
	}
	if synced != accounts {
		t.Fatalf("the two workers synced %d accounts together; the sandbox has %d: each exactly once", synced, accounts)
	}
	env.RequireTruth(t)

	// A later run of one worker is a new slot: it syncs every account again.
	r, err := a.Worker.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce})
	if err != nil || !r.OK() {
		t.Fatalf("second run: %v %+v", err, r)
	}
	if n := r.Stats.AccountsOK + r.Stats.AccountsRestricted; n != accounts {
		t.Fatalf("a worker's next run synced %d accounts, want all %d", n, accounts)
	}
	st, err := a.Sink.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	me := a.Sink.(sink.Leaser).WorkerID()
	for _, s := range st {
		if s.LeaseOwner != "" || s.LastSyncedBy != me {
			t.Fatalf("status of %s/%s: held by %q, last synced by %q; want released, last synced by %s",
				s.Source, s.AccountID, s.LeaseOwner, s.LastSyncedBy, me)
		}
	}
}
