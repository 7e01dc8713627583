package sink

import (
	"slices"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources"
)

// schemaColumn is a column of a migrated table as the database describes it.
type schemaColumn struct {
	Name    string `db:"name"`
	Type    string `db:"type"`
	NotNull bool   `db:"not_null"`
	PII     bool   `db:"pii"` // PostgreSQL: commented 'PII'
}

// schemaTypes are the database types each described type may be stored as.
var schemaTypes = map[string]map[colType][]string{
	DialectSQLite: {colText: {"TEXT"}, colJSON: {"TEXT"}, colTime: {"TEXT"}, colDay: {"TEXT"},
		colBool: {"INTEGER"}, colInt: {"INTEGER"}, colReal: {"REAL"}},
	DialectPostgres: {colText: {"text"}, colJSON: {"jsonb"}, colTime: {"timestamp with time zone"}, colDay: {"date"},
		colBool: {"boolean"}, colInt: {"integer", "bigint"}, colReal: {"double precision"}},
}

// TestTablesMatchSchema checks each table's description against the migrated schema of
// both dialects: the same columns (none missing, none undescribed), of matching types and
// nullability, the same primary key, and on PostgreSQL the PII comments on exactly the
// PII columns.
func TestTablesMatchSchema(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, newURL func(testing.TB) string) {
		b := setup(t, newURL)
		for _, tbl := range describedTables() {
			var cols []schemaColumn
			var key []string
			var err error
			if b.c.dialect == DialectSQLite {
				err = b.c.r.SelectContext(b.ctx, &cols, `SELECT name, type, "notnull" <> 0 AS not_null, 0 AS pii
FROM pragma_table_info(?) ORDER BY cid`, tbl.name)
				if err == nil {
					err = b.c.r.SelectContext(b.ctx, &key, `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, tbl.name)
				}
			} else {
				err = b.c.r.SelectContext(b.ctx, &cols, `SELECT column_name AS name, data_type AS type,
    is_nullable = 'NO' AS not_null,
    COALESCE(col_description(to_regclass(quote_ident($1)), ordinal_position::int) = 'PII', false) AS pii
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, tbl.name)
				if err == nil {
					err = b.c.r.SelectContext(b.ctx, &key, `SELECT k.column_name
FROM information_schema.table_constraints c
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
WHERE c.table_schema = current_schema() AND c.table_name = $1 AND c.constraint_type = 'PRIMARY KEY'
ORDER BY k.ordinal_position`, tbl.name)
				}
			}
			if err != nil {
				t.Fatalf("read the schema of %s: %v", tbl.name, err)
			}
			if len(cols) == 0 {
				t.Fatalf("table %s is not in the schema", tbl.name)
			}
			if !slices.Equal(key, tbl.key) {
				t.Errorf("%s: primary key %v, described %v", tbl.name, key, tbl.key)
			}
			stored := make(map[string]schemaColumn, len(cols))
			for _, c := range cols {
				stored[c.Name] = c
			}
			for _, d := range tbl.columns {
				c, ok := stored[d.name]
				if !ok {
					t.Errorf("%s.%s is described but not in the schema", tbl.name, d.name)
					continue
				}
				delete(stored, d.name)
				if !slices.Contains(schemaTypes[b.c.dialect][d.typ], c.Type) {
					t.Errorf("%s.%s is %s, described as %s (%v)", tbl.name, d.name, c.Type, d.typ, schemaTypes[b.c.dialect][d.typ])
				}
				if c.NotNull == d.null {
					t.Errorf("%s.%s: NOT NULL is %v, described nullable %v", tbl.name, d.name, c.NotNull, d.null)
				}
				if b.c.dialect == DialectPostgres && c.PII != d.pii {
					t.Errorf("%s.%s: commented PII %v, described PII %v", tbl.name, d.name, c.PII, d.pii)
				}
			}
			for name := range stored {
				t.Errorf("%s.%s is in the schema but not described", tbl.name, name)
			}
		}
	})
}

// The PII columns of leads are the fields a restricted account withholds.
func TestLeadsPIIColumns(t *testing.T) {
	t.Parallel()
	var pii []string
	for _, c := range leadsTable.columns {
		if c.pii {
			pii = append(pii, c.name)
		}
	}
	if !slices.Equal(pii, sources.PIIFields) {
		t.Errorf("PII columns of leads = %v, sources.PIIFields = %v", pii, sources.PIIFields)
	}
}

// Every lead field the database may refuse has a probe that names it (see refusal).
func TestProbeFieldsCoverLeadColumns(t *testing.T) {
	t.Parallel()
	for _, c := range leadsTable.columns {
		if !c.content || c.shared || c.typ == colBool {
			continue // a page's stream, and a bool, cannot be refused
		}
		found := false
		for _, p := range probeFields {
			found = found || p.name == c.name
		}
		if !found {
			t.Errorf("leads.%s has no probe in probeFields", c.name)
		}
	}
}

// The statements built from the descriptions, as a reader would check them.
func TestBuiltUpserts(t *testing.T) {
	t.Parallel()
	for _, want := range []string{
		"INSERT INTO leads (source, account_id, stream, first_seen_at, last_synced_at, sync_run_id, lead_id, kind,",
		"ON CONFLICT (source, account_id, lead_id) DO UPDATE SET stream = excluded.stream,",
		"revision = leads.revision + 1, deleted_at = NULL\nWHERE leads.stream IS DISTINCT FROM excluded.stream OR",
		" OR leads.deleted_at IS NOT NULL\nRETURNING revision",
	} {
		if !strings.Contains(leadsTable.oneSQL, want) {
			t.Errorf("the leads upsert lacks %q:\n%s", want, leadsTable.oneSQL)
		}
	}
	if strings.Contains(leadsTable.tail, "first_seen_at =") {
		t.Errorf("a rewrite of a lead resets first_seen_at:\n%s", leadsTable.tail)
	}
	const counts = "ON CONFLICT (source, account_id, day, kind) DO UPDATE SET count = excluded.count, synced_at = excluded.synced_at"
	if !strings.HasSuffix(countsTable.oneSQL, counts) {
		t.Errorf("the counts upsert does not end with %q:\n%s", counts, countsTable.oneSQL)
	}
	if got := countsTable.pgSQL; !strings.Contains(got, "SELECT $1::text, $2::text, $3::timestamptz, u.day::date, u.kind, u.count\nFROM unnest($4::text[], $5::text[], $6::bigint[])") {
		t.Errorf("the PostgreSQL counts upsert:\n%s", got)
	}
	if got, want := strings.Count(leadsTable.sqliteSQL(3), "(?1,?2,?3,?4,?5,?6,"), 3; got != want {
		t.Errorf("SQLite rows sharing the page's parameters: %d, want %d:\n%s", got, want, leadsTable.sqliteSQL(3))
	}
}
