package sink

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/pgtest"
)

// planNodes lists the node types of an EXPLAIN (FORMAT JSON) plan, with the index each
// index node uses.
func planNodes(t *testing.T, raw []byte) []string {
	t.Helper()
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", raw, err)
	}
	var out []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		node, _ := n["Node Type"].(string)
		if idx, ok := n["Index Name"].(string); ok {
			node += " using " + idx
		}
		out = append(out, node)
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			if m, ok := c.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(plans[0].Plan)
	return out
}

// The guide's time-window queries (docs/analysts.md, "Time windows") use the leads indexes on
// PostgreSQL once the table is big: 100,000 leads over two years and 20 accounts, analysed.
func TestTimeWindowQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	dsn, _ := pgtest.Schema(t)
	ctx := context.Background()
	s, err := Open(ctx, dsn, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pg := s.(*Postgres)
	if _, err := pg.pool.Exec(ctx, `INSERT INTO leads (source, account_id, lead_id, kind, stream, email, tags, created_at, updated_at,
    first_seen_at, last_synced_at)
SELECT 'localiq', 'acct-' || (i % 20), 'lead-' || i, 'call', 'interactions', 'x' || i || '@example.com',
    CASE WHEN i % 1000 = 0 THEN '["vip"]'::jsonb ELSE '[]'::jsonb END,
    now() - (i % 730) * interval '1 day' - (i % 1440) * interval '1 minute',
    now() - (i % 730) * interval '1 day', now(), now()
FROM generate_series(1, 100000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.pool.Exec(ctx, `ANALYZE leads`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, index string
	}{
		{"the last 7 days", `SELECT source, account_id, count(*) FROM leads_shareable
WHERE created_at >= now() - interval '7 days' GROUP BY source, account_id`, "leads_created_at"},
		{"changed since yesterday", `SELECT lead_id, status, updated_at FROM leads_shareable
WHERE updated_at >= now() - interval '1 day'`, "leads_updated_at"},
		{"one account's month", `SELECT lead_id, kind, created_at FROM leads_shareable
WHERE source = 'localiq' AND account_id = 'acct-7' AND created_at >= now() - interval '30 days' ORDER BY created_at`,
			"leads_account_created_at"},
		// A rare tag (0.1% of leads). Tags are free text, withheld by the sharing view: this query
		// is for the warehouse's owner.
		{"a tag", `SELECT count(*) FROM leads_current WHERE tags @> '["vip"]'`, "leads_tags"},
	} {
		var raw []byte
		if err := pg.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+tc.query).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		nodes := planNodes(t, raw)
		plan := strings.Join(nodes, " > ")
		if !strings.Contains(plan, "using "+tc.index) || strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: plan %s, want a scan using %s and no sequential scan", tc.name, plan, tc.index)
		}
	}
}
