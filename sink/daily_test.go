package sink

import (
	"errors"
	"testing"
	"time"
)

// TestDailyLeadsWritten: the status page's chart sums what finished runs wrote per UTC day,
// zero-filled, over exactly the days asked for, ending with now's UTC day.
func TestDailyLeadsWritten(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		dw, ok := b.s.(DailyWriter)
		if !ok {
			t.Fatalf("%T is not a DailyWriter", b.s)
		}
		day := func(s string) time.Time {
			d, err := time.Parse(time.DateOnly, s)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// finishAt records a run that ends at the given instant and wrote leads.
		finishAt := func(at time.Time, status string, leads int64) {
			t.Helper()
			b.clock.Advance(at.Sub(b.clock.Now()))
			run, err := b.s.BeginRun(b.ctx, TriggerCron, "alpha", ModeIncremental)
			if err != nil {
				t.Fatal(err)
			}
			var runErr error
			if status != RunOK {
				runErr = errors.New("vendor answered 502")
			}
			if err := b.s.FinishRun(b.ctx, run, status, RunStats{AccountsOK: 1, LeadsWritten: leads}, runErr); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := dw.LeadsWrittenPerDay(b.ctx, 30, day("2026-03-31")); err != nil || len(got) != 30 || got[29].Leads != 0 {
			t.Fatalf("an empty warehouse: %v, %v; want 30 zero days", got, err)
		}

		finishAt(day("2026-03-01").Add(12*time.Hour), RunOK, 7)
		finishAt(day("2026-03-02").Add(-time.Millisecond), RunOK, 3) // the last instant of March 1st
		finishAt(day("2026-03-02"), RunOK, 5)                        // the first of March 2nd
		finishAt(day("2026-03-05").Add(3*time.Hour), RunFailed, 2)   // a failed run's pages are written too
		finishAt(day("2026-03-05").Add(4*time.Hour), RunCancelled, 1)
		if _, err := b.s.BeginRun(b.ctx, TriggerCron, "alpha", ModeIncremental); err != nil { // still running: no finish
			t.Fatal(err)
		}
		finishAt(day("2026-03-31").Add(23*time.Hour), RunOK, 4)
		finishAt(day("2026-04-01").Add(time.Hour), RunOK, 100) // after the window

		want := map[string]int64{"2026-03-02": 5, "2026-03-05": 3, "2026-03-31": 4}
		check := func(got []DayCount, days int, first string, want map[string]int64) {
			t.Helper()
			if len(got) != days {
				t.Fatalf("%d days, want %d: %v", len(got), days, got)
			}
			for i, dc := range got {
				wantDay := day(first).AddDate(0, 0, i)
				if !dc.Day.Equal(wantDay) || dc.Day.Location() != time.UTC {
					t.Errorf("day %d is %v, want %v UTC", i, dc.Day, wantDay)
				}
				if w := want[wantDay.Format(time.DateOnly)]; dc.Leads != w {
					t.Errorf("%s: %d leads, want %d", wantDay.Format(time.DateOnly), dc.Leads, w)
				}
			}
		}
		got, err := dw.LeadsWrittenPerDay(b.ctx, 30, day("2026-03-31").Add(15*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		check(got, 30, "2026-03-02", want)

		// One more day reaches March 1st, both of its runs.
		got, err = dw.LeadsWrittenPerDay(b.ctx, 31, day("2026-03-31"))
		if err != nil {
			t.Fatal(err)
		}
		want["2026-03-01"] = 10
		check(got, 31, "2026-03-01", want)

		// Days are UTC days whatever now's zone: 23:30 in New York on March 31st is April 1st.
		ny := time.FixedZone("EST", -5*3600)
		got, err = dw.LeadsWrittenPerDay(b.ctx, 2, time.Date(2026, 3, 31, 23, 30, 0, 0, ny))
		if err != nil {
			t.Fatal(err)
		}
		check(got, 2, "2026-03-31", map[string]int64{"2026-03-31": 4, "2026-04-01": 100})

		for _, days := range []int{0, -1, 367} {
			if _, err := dw.LeadsWrittenPerDay(b.ctx, days, day("2026-03-31")); err == nil {
				t.Errorf("%d days: no error", days)
			}
		}
	})
}
