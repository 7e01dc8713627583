package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadsync/leadsync/sources"
)

// BenchmarkWritePage upserts pages of new leads and reports rows/s and x_floor: the upsert's
// throughput as a fraction of a raw floor measured on the same rows in the same run
// (SQLite: plain INSERTs into an unindexed table in one transaction; PostgreSQL: COPY into
// an unindexed table). Goals: x_floor >= 0.5 on SQLite, >= 0.3 on PostgreSQL.
func BenchmarkWritePage(b *testing.B) {
	for _, dc := range dialectCases {
		for _, size := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/insert/%d", dc.name, size), func(b *testing.B) { benchWrite(b, dc, size, false) })
		}
		b.Run(dc.name+"/unchanged/1000", func(b *testing.B) { benchWrite(b, dc, 1000, true) })
	}
}

const benchFloorColumns = `source text, account_id text, first_seen_at %[1]s, last_synced_at %[1]s,
    sync_run_id bigint, lead_id text, kind text, status text, first_name text, last_name text,
    email text, phone text, company text, channel text, campaign text, tags %[2]s,
    created_at %[1]s, updated_at %[1]s, hipaa boolean, raw %[2]s`

var benchColumnNames = []string{"source", "account_id", "first_seen_at", "last_synced_at", "sync_run_id",
	"lead_id", "kind", "status", "first_name", "last_name", "email", "phone", "company", "channel",
	"campaign", "tags", "created_at", "updated_at", "hipaa", "raw"}

// benchLead looks like a synced contact: a few hundred bytes of vendor JSON.
func benchLead(account, id string) sources.Lead {
	l := testLead(account, id)
	raw, _ := json.Marshal(map[string]any{
		"id": id, "contact_id": "c-" + id, "campaign_id": 4242, "campaign_name": "Spring promo",
		"created_at": "2026-02-27T09:30:00Z", "event_type": "call", "status": "new",
		"tags": []string{"vip", "new"}, "display_name": "Ada Lovelace",
		"contact": map[string]string{"first_name": "Ada", "last_name": "Lovelace", "email": id + "@example.com",
			"phone_work": "+15550100", "city": "Springfield", "state": "IL", "postal": "62701"},
		"call": map[string]any{"duration": "00:55", "caller_number": "+15550100"},
	})
	l.Raw = raw
	return l
}

func benchWrite(b *testing.B, dc dialectCase, size int, unchanged bool) {
	ctx := context.Background()
	w, err := open(ctx, dc.newURL(b), Options{Logger: quiet}, modeMigrate)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	floor := newFloor(b, w)

	page := func(i int) []sources.Lead {
		if unchanged {
			i = 0
		}
		leads := make([]sources.Lead, size)
		for j := range leads {
			leads[j] = benchLead("USA_1", fmt.Sprintf("%08d-%05d", i, j))
		}
		return leads
	}
	if unchanged {
		if _, err := w.WritePage(ctx, PageWrite{Run: 1, Source: sources.LocaliQ, Account: "USA_1", Leads: page(0), Next: "x"}); err != nil {
			b.Fatal(err)
		}
	}
	var upsert, raw time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		leads := page(i)
		start := time.Now()
		floor(ctx, leads)
		raw += time.Since(start)
		b.StartTimer()

		start = time.Now()
		res, err := w.WritePage(ctx, PageWrite{Run: RunID(i + 1), Source: sources.LocaliQ, Account: "USA_1", Leads: leads, Next: "x"})
		upsert += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if !unchanged && res.Inserted != size || unchanged && res.Unchanged != size {
			b.Fatalf("page wrote %+v", res)
		}
	}
	b.ReportMetric(float64(size*b.N)/upsert.Seconds(), "rows/s")
	b.ReportMetric(raw.Seconds()/upsert.Seconds(), "x_floor")
}

// newFloor creates the unindexed floor table and returns the raw writer of a page.
func newFloor(b *testing.B, w warehouse) func(context.Context, []sources.Lead) {
	ctx := context.Background()
	switch s := w.(type) {
	case *SQLite:
		if _, err := s.w.ExecContext(ctx, "CREATE TABLE bench_floor ("+fmt.Sprintf(benchFloorColumns, "text", "text")+")"); err != nil {
			b.Fatal(err)
		}
		ins, err := s.w.PrepareContext(ctx, `INSERT INTO bench_floor VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ins.Close() })
		return func(ctx context.Context, leads []sources.Lead) {
			now := sqliteTS(time.Now())
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			st := tx.StmtContext(ctx, ins)
			args := make([]any, 0, 20)
			for i := range leads {
				args = append(args[:0], "localiq", "USA_1", now, now, 1)
				args = appendLeadArgs(args, &leads[i])
				if _, err := st.ExecContext(ctx, args...); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	case *Postgres:
		if _, err := s.pool.Exec(ctx, "CREATE TABLE bench_floor ("+fmt.Sprintf(benchFloorColumns, "timestamptz", "jsonb")+")"); err != nil {
			b.Fatal(err)
		}
		return func(ctx context.Context, leads []sources.Lead) {
			now := storedTime(time.Now())
			rows := make([][]any, len(leads))
			for i := range leads {
				l := &leads[i]
				rows[i] = []any{"localiq", "USA_1", now, now, int64(1), l.ID, l.Kind, pgText(l.Status),
					pgText(l.FirstName), pgText(l.LastName), pgText(l.Email), pgText(l.Phone), pgText(l.Company),
					pgText(l.Channel), pgText(l.Campaign), tagsJSON(l.Tags), pgTime(l.CreatedAt), pgTime(l.UpdatedAt),
					l.HIPAA, string(l.Raw)}
			}
			if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"bench_floor"}, benchColumnNames, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Fatalf("no floor for %T", w)
	return nil
}
