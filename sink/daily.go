package sink

import (
	"context"
	"fmt"
	"time"
)

// DayCount is what was written in one UTC day.
type DayCount struct {
	Day   time.Time // midnight UTC
	Leads int64
}

// DailyWriter is what a warehouse tells of its recent writes, for the status page. It is
// not part of Sink, so callers holding a Sink type-assert it.
type DailyWriter interface {
	// LeadsWrittenPerDay gives the leads written in each of the last days UTC days up to
	// and including now's, oldest first, a day without runs counting zero.
	LeadsWrittenPerDay(ctx context.Context, days int, now time.Time) ([]DayCount, error)
}

var (
	_ DailyWriter = (*SQLite)(nil)
	_ DailyWriter = (*Postgres)(nil)
)

// maxDailyDays bounds the window: the query scans sync_runs from its start.
const maxDailyDays = 366

// LeadsWrittenPerDay implements DailyWriter. A run counts on the day it finished, whatever
// its status: a failed or cancelled run's committed pages are written all the same; a run
// still going (or abandoned) has no finish and counts nowhere yet.
func (c *core) LeadsWrittenPerDay(ctx context.Context, days int, now time.Time) ([]DayCount, error) {
	if days < 1 || days > maxDailyDays {
		return nil, fmt.Errorf("sink: leads written per day: %d days is not in 1..%d", days, maxDailyDays)
	}
	end := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1) // the start of the day after now's
	start := end.AddDate(0, 0, -days)
	// Both expressions give the UTC day: SQLite stores UTC text, PostgreSQL a timestamptz.
	// PostgreSQL sums a bigint as a numeric: cast back for the scan.
	day := `date(finished_at)`
	if c.dialect == DialectPostgres {
		day = `(finished_at AT TIME ZONE 'UTC')::date`
	}
	var rows []struct {
		Day   nullTime `db:"day"`
		Leads int64    `db:"leads"`
	}
	err := c.r.SelectContext(ctx, &rows, c.q(`SELECT `+day+` AS day, CAST(sum(leads_written) AS BIGINT) AS leads
FROM sync_runs
WHERE finished_at >= ? AND finished_at < ?
GROUP BY `+day), c.ts(start), c.ts(end))
	if err != nil {
		return nil, fmt.Errorf("sink: leads written per day: %w", err)
	}
	out := make([]DayCount, days)
	for i := range out {
		out[i].Day = start.AddDate(0, 0, i)
	}
	for _, r := range rows {
		i := int(r.Day.Sub(start) / (24 * time.Hour))
		if i < 0 || i >= days {
			return nil, fmt.Errorf("sink: leads written per day: day %s outside %s..%s", r.Day.Format(time.DateOnly),
				start.Format(time.DateOnly), end.Format(time.DateOnly))
		}
		out[i].Leads += r.Leads
	}
	return out, nil
}
