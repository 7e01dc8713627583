package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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

// benchFloorTable is a table of the leads upsert's columns, without key, index or check.
func benchFloorTable(dialect string) (create string, columns []string) {
	var defs []string
	for _, i := range slices.Concat(leadsTable.shared, leadsTable.perRow) {
		c := leadsTable.columns[i]
		typ := pgScalar(c.typ)
		if dialect == DialectSQLite {
			typ = "text"
		}
		defs = append(defs, c.name+" "+typ)
		columns = append(columns, c.name)
	}
	return "CREATE TABLE bench_floor (" + strings.Join(defs, ", ") + ")", columns
}

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
		if _, err := w.WritePage(ctx, PageWrite{Run: 1, Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: page(0), Next: "x"}); err != nil {
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
		res, err := w.WritePage(ctx, PageWrite{Run: RunID(i + 1), Source: sources.LocaliQ, Stream: testStream, Account: "USA_1", Leads: leads, Next: "x"})
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
	page := &PageWrite{Run: 1, Source: sources.LocaliQ, Account: "USA_1", Stream: testStream}
	switch s := w.(type) {
	case *SQLite:
		create, columns := benchFloorTable(DialectSQLite)
		if _, err := s.w.ExecContext(ctx, create); err != nil {
			b.Fatal(err)
		}
		ins, err := s.w.PrepareContext(ctx, `INSERT INTO bench_floor VALUES (`+strings.Repeat("?,", len(columns)-1)+`?)`)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ins.Close() })
		return func(ctx context.Context, leads []sources.Lead) {
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			st := tx.StmtContext(ctx, ins)
			for _, r := range leadRows(page, time.Now(), leads) {
				if _, err := st.ExecContext(ctx, leadsTable.oneArgs(DialectSQLite, &r)...); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	case *Postgres:
		create, columns := benchFloorTable(DialectPostgres)
		if _, err := s.pool.Exec(ctx, create); err != nil {
			b.Fatal(err)
		}
		return func(ctx context.Context, leads []sources.Lead) {
			rows := leadRows(page, time.Now(), leads)
			values := make([][]any, len(rows))
			for i := range rows {
				values[i] = leadsTable.oneArgs(DialectPostgres, &rows[i])
			}
			if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"bench_floor"}, columns, pgx.CopyFromRows(values)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Fatalf("no floor for %T", w)
	return nil
}
