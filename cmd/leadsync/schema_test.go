package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/leadsync/leadsync/internal/pgtest"
)

// warehouse.schema puts the warehouse's tables and views in a schema of their own, created
// by the first migration; grant-analyst grants in it.
func TestWarehouseSchema(t *testing.T) {
	t.Parallel()
	_, base := pgtest.Schema(t) // a unique name; the warehouse's schema is a new one beside it
	schema := base + "_wh"
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), pgtest.URL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n  url: "+pgtest.URL()+"\n  schema: "+schema+
		"\nhttp:\n  listen: \"off\"\n"+proofGoodConn)
	if code, _, stderr := runCLI(t, "migrate", "--config", path); code != exitOK {
		t.Fatalf("migrate: exit %d\n%s", code, stderr)
	}
	c, err := pgx.Connect(t.Context(), pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var tables int
	if err := c.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables
WHERE table_schema = $1 AND table_name IN ('leads', 'sync_state', 'leads_shareable')`, schema).Scan(&tables); err != nil || tables != 3 {
		t.Fatalf("%d of the warehouse's tables and views in schema %s (%v)", tables, schema, err)
	}
	code, out, stderr := runCLI(t, "grant-analyst", "--print", "analyst", "--config", path)
	if code != exitOK || !strings.Contains(out, `GRANT USAGE ON SCHEMA "`+schema+`"`) {
		t.Fatalf("grant-analyst --print: exit %d\n%s%s", code, out, stderr)
	}
	// The schema of a SQLite warehouse, a bad name, or a second search_path: exit 2 naming the field.
	for _, wh := range []string{
		"  url: sqlite://$DIR/leads.db\n  schema: leadsync",
		"  url: " + pgtest.URL() + "\n  schema: Leads-Sync",
		"  url: " + pgtest.WithSearchPath(pgtest.URL(), "other") + "\n  schema: leadsync",
	} {
		path := proofWriteConfig(t, "state_dir: $DIR/state\nwarehouse:\n"+wh+"\n"+proofGoodConn)
		if code, _, stderr := runCLI(t, "config", "check", "--config", path); code != exitUsage || !strings.Contains(stderr, "warehouse.schema") {
			t.Errorf("%s: exit %d, %s", wh, code, stderr)
		}
	}
}
