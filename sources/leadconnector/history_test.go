package leadconnector_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/worker"
)

// An opportunity moved through three stages between runs, at the sandbox, leaves three rows
// in opportunity_stage_history, in order, observed at each run; deal_stage_intervals gives
// the time it spent in each stage it left. On both warehouses, through the whole app.
func TestOpportunityStageHistoryThroughRuns(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.Options{Seed: 31, Locations: 1, ContactsPerLocation: 40}, dialect)
			a := env.Authorized(t)
			run := func() worker.Result {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				res, err := a.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce, Connections: []string{"sandbox-leadconnector"}})
				if err != nil || !res.OK() {
					t.Fatalf("run: %v %v", err, res.Failures)
				}
				return res
			}
			run()
			lc := env.Sandbox.LC
			loc := lc.LocationIDs()[0]
			opp := lc.OpportunityIDs(loc)[0]
			state, err := lc.Opportunity(loc, opp)
			if err != nil {
				t.Fatal(err)
			}
			stages := lc.StageIDs(loc, state.PipelineID)
			at := slices.Index(stages, state.StageID)
			want := []string{state.StageID}
			for i := range 2 {
				next := stages[(at+1+i)%len(stages)]
				if err := lc.MoveOpportunity(loc, opp, next); err != nil {
					t.Fatal(err)
				}
				want = append(want, next)
				run()
			}

			db := env.OpenDB(t)
			defer db.Close()
			rows, err := db.Query(`SELECT stage_id, observed_via, sync_run_id FROM opportunity_stage_history
WHERE source = 'leadconnector' AND account_id = $1 AND deal_id = $2 ORDER BY observed_at, id`, loc, opp)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var runs []int64
			for rows.Next() {
				var stage, via string
				var run int64
				if err := rows.Scan(&stage, &via, &run); err != nil {
					t.Fatal(err)
				}
				if via != "poll" {
					t.Errorf("observed_via %q, want poll", via)
				}
				got, runs = append(got, stage), append(runs, run)
			}
			rows.Close()
			if !slices.Equal(got, want) || !slices.IsSorted(runs) || len(slices.Compact(slices.Clone(runs))) != 3 {
				t.Fatalf("history %v in runs %v, want %v, one per run", got, runs, want)
			}
			// Time in stage: from the run that saw the deal enter a stage to the run that saw it
			// leave, as the runs' own times say.
			var closed int
			if err := db.QueryRow(`SELECT count(*) FROM deal_stage_intervals i
JOIN sync_runs r ON r.id = (SELECT min(h.sync_run_id) FROM opportunity_stage_history h
                            WHERE h.deal_id = i.deal_id AND h.observed_at = i.left_at)
WHERE i.deal_id = $1 AND i.left_at IS NOT NULL AND i.left_at > i.entered_at AND i.left_at >= r.started_at`, opp).Scan(&closed); err != nil {
				t.Fatal(err)
			}
			if closed != 2 {
				t.Errorf("%d closed stage intervals with a positive duration, want 2 (the stages it left)", closed)
			}
		})
	}
}
