package worker_test

import (
	"context"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/worker"
)

func TestBackfillEqualsGroundTruth(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.Small(7), dialect)
			a := env.Authorized(t)
			res, err := a.Worker.Run(context.Background(), worker.RunOptions{Trigger: sink.TriggerOnce})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("run status %s: %v", res.Status, res.Failures)
			}
			if res.Stats.AccountsRestricted == 0 {
				t.Fatalf("the sandbox has restricted accounts; none reported: %+v", res.Stats)
			}
			env.RequireTruth(t)
		})
	}
}
