package sink

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/leadsync/leadsync/sources"
)

// The warehouse tables the sink upserts, each described once: its columns, their types, its
// key, which columns are PII, and how a row's values are read. Every upsert of both dialects
// (SQLite's multi-row statement, PostgreSQL's array-bound one, and the one-row statement of
// the lead-by-lead fallback) is built from the description, and TestTablesMatchSchema checks
// the description against the migrated schema of both: a new column is one entry here (and
// its migration).

// colType is a column's type, as each dialect stores it.
type colType string

const (
	colText colType = "text" // TEXT; text
	colJSON colType = "json" // TEXT checked with json_valid; jsonb
	colTime colType = "time" // fixed-width UTC TEXT (tsLayout); timestamptz
	colBool colType = "bool" // INTEGER 0 or 1; boolean
	colInt  colType = "int"  // INTEGER; integer or bigint
	colDay  colType = "day"  // YYYY-MM-DD TEXT (UTC); date
	colReal colType = "real" // REAL; double precision
)

// role says who sets a column in an upsert.
type role int

const (
	fromRow    role = iota // the row's own value (a key or data column)
	stamp                  // the write's (its time, its run), on insert and on every rewrite
	created                // the write's, on insert only
	revision               // 1 on insert (the default), one more on every rewrite; returned
	softDelete             // when the row was soft-deleted: a rewrite clears it, and a deleted row is always rewritten
)

// val is one column value of a row, before a dialect encodes it. A nullable column's zero
// text, JSON, time or day is NULL; ints and bools are never NULL.
type val struct {
	s string    // text, json
	t time.Time // time, day
	i int64
	f float64
	b bool
}

// column describes a column of a table whose rows are read from an R.
type column[R any] struct {
	name string
	typ  colType
	null bool
	// pii columns hold lead PII: withheld from restricted accounts, NULL in leads_shareable
	// and, for HIPAA leads, in leads_pii, and commented 'PII' on PostgreSQL.
	pii bool
	// content columns are compared to decide whether a stored row changed.
	content bool
	role    role
	// shared: the value is the same for every row of one write (the page's source, account,
	// stream, time, run), so multi-row statements bind it once.
	shared bool
	// value reads the column of a row; nil for the columns the upsert sets itself
	// (revision, softDelete).
	value func(*R) val
}

// table describes a warehouse table and builds its upserts.
type table[R any] struct {
	name    string
	key     []string
	columns []column[R]
	// skipUnchanged rewrites a stored row only when a content column changed (or it was
	// soft-deleted): an unchanged row keeps its stamps and revision.
	skipUnchanged bool

	// Derived by newTable.
	shared, perRow []int // the inserted columns, by index
	tail           string
	oneSQL         string // one row, ? placeholders (rebound for PostgreSQL)
	pgSQL          string // PostgreSQL: the shared values, then one array per column
	sqliteChunk    int    // the most rows one SQLite statement carries
}

// newTable derives the statements of t.
func newTable[R any](t table[R]) *table[R] {
	for i, c := range t.columns {
		if c.value == nil {
			continue
		}
		if c.shared {
			t.shared = append(t.shared, i)
		} else {
			t.perRow = append(t.perRow, i)
		}
	}
	t.tail = t.upsertTail()
	head := t.insertHead()
	n := len(t.shared) + len(t.perRow)
	t.oneSQL = head + " VALUES (" + strings.Repeat("?, ", n-1) + "?)" + t.tail
	t.pgSQL = head + t.pgSelect() + t.tail
	// SQLite allows 32766 variables a statement; larger statements gain little past 200 rows.
	t.sqliteChunk = min(200, (32766-len(t.shared))/max(len(t.perRow), 1))
	return &t
}

// insertHead names the inserted columns: the shared ones first, as every statement binds them.
func (t *table[R]) insertHead() string {
	var cols []string
	for _, i := range slices.Concat(t.shared, t.perRow) {
		cols = append(cols, t.columns[i].name)
	}
	return "INSERT INTO " + t.name + " (" + strings.Join(cols, ", ") + ")"
}

// upsertTail is what follows the rows of every upsert of t: on a key conflict, rewrite the
// data and stamps (keeping the created columns), only when something changed if
// skipUnchanged, and return the revision of each written row.
func (t *table[R]) upsertTail() string {
	var set, changed []string
	returning := ""
	for _, c := range t.columns {
		switch {
		case slices.Contains(t.key, c.name), c.role == created:
		case c.role == revision:
			set = append(set, c.name+" = "+t.name+"."+c.name+" + 1")
			returning = c.name
		case c.role == softDelete:
			set = append(set, c.name+" = NULL")
			changed = append(changed, t.name+"."+c.name+" IS NOT NULL")
		default:
			set = append(set, c.name+" = excluded."+c.name)
			if c.content {
				changed = append(changed, t.name+"."+c.name+" IS DISTINCT FROM excluded."+c.name)
			}
		}
	}
	s := "\nON CONFLICT (" + strings.Join(t.key, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
	if t.skipUnchanged {
		s += "\nWHERE " + strings.Join(changed, " OR ")
	}
	if returning != "" {
		s += "\nRETURNING " + returning
	}
	return s
}

// pgScalar and pgArray are the PostgreSQL types a column's values are bound as. (Switches,
// not maps: the tables are built during package initialization, and Go does not order that
// by what a generic method refers to.)
func pgScalar(t colType) string {
	switch t {
	case colJSON:
		return "jsonb"
	case colTime:
		return "timestamptz"
	case colBool:
		return "boolean"
	case colInt:
		return "bigint"
	case colDay:
		return "date"
	case colReal:
		return "float8"
	}
	return "text"
}

func pgArray(t colType) string {
	switch t {
	case colJSON, colDay:
		return "text[]" // bound as text, cast per element
	}
	return pgScalar(t) + "[]"
}

// pgSelect is the rows of the PostgreSQL upsert: $1.. the shared values, then one array per
// other column, unnested together (a single statement whatever the page size).
func (t *table[R]) pgSelect() string {
	var exprs, arrays, names []string
	p := 1
	for _, i := range t.shared {
		exprs = append(exprs, "$"+strconv.Itoa(p)+"::"+pgScalar(t.columns[i].typ))
		p++
	}
	for _, i := range t.perRow {
		c := t.columns[i]
		expr := "u." + c.name
		if c.typ == colJSON || c.typ == colDay {
			expr += "::" + pgScalar(c.typ) // bound as text
		}
		exprs = append(exprs, expr)
		arrays = append(arrays, "$"+strconv.Itoa(p)+"::"+pgArray(c.typ))
		names = append(names, c.name)
		p++
	}
	return "\nSELECT " + strings.Join(exprs, ", ") +
		"\nFROM unnest(" + strings.Join(arrays, ", ") + ") AS u(" + strings.Join(names, ", ") + ")"
}

// sqliteSQL is a multi-row upsert of n rows: ?1.. are the shared values, bound once, and
// numbered parameters let every row reuse them.
func (t *table[R]) sqliteSQL(n int) string {
	var b strings.Builder
	b.WriteString(t.insertHead() + " VALUES ")
	p := len(t.shared) + 1
	for r := range n {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := range t.shared {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString("?" + strconv.Itoa(j+1))
		}
		for range t.perRow {
			b.WriteString(",?" + strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
	}
	b.WriteString(t.tail)
	return b.String()
}

// encode is a value as a database/sql parameter of the dialect.
func (c *column[R]) encode(dialect string, v val) any {
	switch c.typ {
	case colBool:
		return v.b
	case colInt:
		return v.i
	case colReal:
		return v.f
	case colTime:
		if dialect == DialectSQLite {
			return sqliteTS(v.t)
		}
		return postgresTS(v.t)
	}
	s, ok := c.text(v)
	if !ok {
		return nil
	}
	return s
}

// text is a text, JSON or day value as text; false for NULL.
func (c *column[R]) text(v val) (string, bool) {
	if c.typ == colDay {
		if v.t.IsZero() {
			return "", false
		}
		return v.t.UTC().Format(time.DateOnly), true
	}
	return v.s, !c.null || v.s != ""
}

// oneArgs are the parameters of oneSQL for r.
func (t *table[R]) oneArgs(dialect string, r *R) []any {
	args := make([]any, 0, len(t.shared)+len(t.perRow))
	for _, i := range slices.Concat(t.shared, t.perRow) {
		c := &t.columns[i]
		args = append(args, c.encode(dialect, c.value(r)))
	}
	return args
}

// sqliteArgs appends the parameters of sqliteSQL(len(rows)) to args.
func (t *table[R]) sqliteArgs(args []any, rows []R) []any {
	for _, i := range t.shared {
		c := &t.columns[i]
		args = append(args, c.encode(DialectSQLite, c.value(&rows[0])))
	}
	for r := range rows {
		for _, i := range t.perRow {
			c := &t.columns[i]
			args = append(args, c.encode(DialectSQLite, c.value(&rows[r])))
		}
	}
	return args
}

// pgArgs are the parameters of pgSQL for rows (at least one).
func (t *table[R]) pgArgs(rows []R) []any {
	args := make([]any, 0, len(t.shared)+len(t.perRow))
	for _, i := range t.shared {
		c := &t.columns[i]
		args = append(args, c.encode(DialectPostgres, c.value(&rows[0])))
	}
	for _, i := range t.perRow {
		c := &t.columns[i]
		switch c.typ {
		case colTime:
			a := make([]pgtype.Timestamptz, len(rows))
			for r := range rows {
				v := c.value(&rows[r])
				a[r] = pgtype.Timestamptz{Time: storedTime(v.t), Valid: !v.t.IsZero()}
			}
			args = append(args, a)
		case colBool:
			a := make([]bool, len(rows))
			for r := range rows {
				a[r] = c.value(&rows[r]).b
			}
			args = append(args, a)
		case colInt:
			a := make([]int64, len(rows))
			for r := range rows {
				a[r] = c.value(&rows[r]).i
			}
			args = append(args, a)
		case colReal:
			a := make([]float64, len(rows))
			for r := range rows {
				a[r] = c.value(&rows[r]).f
			}
			args = append(args, a)
		default:
			a := make([]pgtype.Text, len(rows))
			for r := range rows {
				s, ok := c.text(c.value(&rows[r]))
				a[r] = pgtype.Text{String: s, Valid: ok}
			}
			args = append(args, a)
		}
	}
	return args
}

// leadRow is a lead of a page, as the leads table reads it.
type leadRow struct {
	w   *PageWrite
	now time.Time
	l   *sources.Lead
}

func leadRows(w *PageWrite, now time.Time, leads []sources.Lead) []leadRow {
	rows := make([]leadRow, len(leads))
	for i := range leads {
		rows[i] = leadRow{w: w, now: now, l: &leads[i]}
	}
	return rows
}

func text(s string) val { return val{s: s} }

// leadsTable is the leads table: upserted on (source, account_id, lead_id), a row rewritten
// only when its content changed.
var leadsTable = newTable(table[leadRow]{
	name:          "leads",
	key:           []string{"source", "account_id", "lead_id"},
	skipUnchanged: true,
	columns: []column[leadRow]{
		{name: "source", typ: colText, shared: true, value: func(r *leadRow) val { return text(r.w.Source) }},
		{name: "account_id", typ: colText, shared: true, value: func(r *leadRow) val { return text(r.w.Account) }},
		{name: "lead_id", typ: colText, value: func(r *leadRow) val { return text(r.l.ID) }},
		{name: "stream", typ: colText, content: true, shared: true, value: func(r *leadRow) val { return text(r.w.Stream) }},
		{name: "kind", typ: colText, content: true, value: func(r *leadRow) val { return text(r.l.Kind) }},
		{name: "status", typ: colText, null: true, content: true, value: func(r *leadRow) val { return text(r.l.Status) }},
		{name: "first_name", typ: colText, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(r.l.FirstName) }},
		{name: "last_name", typ: colText, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(r.l.LastName) }},
		{name: "email", typ: colText, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(r.l.Email) }},
		{name: "phone", typ: colText, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(r.l.Phone) }},
		{name: "company", typ: colText, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(r.l.Company) }},
		{name: "channel", typ: colText, null: true, content: true, value: func(r *leadRow) val { return text(r.l.Channel) }},
		{name: "campaign", typ: colText, null: true, content: true, value: func(r *leadRow) val { return text(r.l.Campaign) }},
		{name: "tags", typ: colJSON, content: true, value: func(r *leadRow) val { return text(tagsJSON(r.l.Tags)) }},
		{name: "created_at", typ: colTime, null: true, content: true, value: func(r *leadRow) val { return val{t: r.l.CreatedAt} }},
		{name: "updated_at", typ: colTime, null: true, content: true, value: func(r *leadRow) val { return val{t: r.l.UpdatedAt} }},
		{name: "hipaa", typ: colBool, content: true, value: func(r *leadRow) val { return val{b: r.l.HIPAA} }},
		{name: "raw", typ: colJSON, null: true, pii: true, content: true, value: func(r *leadRow) val { return text(string(r.l.Raw)) }},
		{name: "read_at", typ: colTime, null: true, content: true, value: func(r *leadRow) val { return val{t: r.l.ReadAt} }},
		{name: "archived_at", typ: colTime, null: true, content: true, value: func(r *leadRow) val { return val{t: r.l.ArchivedAt} }},
		{name: "call_seconds", typ: colInt, content: true, value: func(r *leadRow) val { return val{i: r.l.DurationSeconds} }},
		{name: "first_seen_at", typ: colTime, role: created, shared: true, value: func(r *leadRow) val { return val{t: r.now} }},
		{name: "last_synced_at", typ: colTime, role: stamp, shared: true, value: func(r *leadRow) val { return val{t: r.now} }},
		{name: "sync_run_id", typ: colInt, null: true, role: stamp, shared: true, value: func(r *leadRow) val { return val{i: int64(r.w.Run)} }},
		{name: "revision", typ: colInt, role: revision},
		{name: "deleted_at", typ: colTime, null: true, role: softDelete},
	},
})

// countRow is a daily count of a page, as lead_daily_counts reads it.
type countRow struct {
	w   *PageWrite
	now time.Time
	c   *sources.DailyCount
}

func countRows(w *PageWrite, now time.Time, counts []sources.DailyCount) []countRow {
	rows := make([]countRow, len(counts))
	for i := range counts {
		rows[i] = countRow{w: w, now: now, c: &counts[i]}
	}
	return rows
}

// countsTable is lead_daily_counts: PII-free aggregates, each count overwritten by the
// vendor's latest.
var countsTable = newTable(table[countRow]{
	name: "lead_daily_counts",
	key:  []string{"source", "account_id", "day", "kind"},
	columns: []column[countRow]{
		{name: "source", typ: colText, shared: true, value: func(r *countRow) val { return text(r.w.Source) }},
		{name: "account_id", typ: colText, shared: true, value: func(r *countRow) val { return text(r.w.Account) }},
		{name: "day", typ: colDay, value: func(r *countRow) val { return val{t: r.c.Day} }},
		{name: "kind", typ: colText, value: func(r *countRow) val { return text(r.c.Kind) }},
		{name: "count", typ: colInt, content: true, value: func(r *countRow) val { return val{i: int64(r.c.Count)} }},
		{name: "synced_at", typ: colTime, role: stamp, shared: true, value: func(r *countRow) val { return val{t: r.now} }},
	},
})

// describedTable is a table's description without its row type, for the schema checks.
type describedTable struct {
	name    string
	key     []string
	columns []describedColumn
}

type describedColumn struct {
	name string
	typ  colType
	null bool
	pii  bool
}

func (t *table[R]) describe() describedTable {
	d := describedTable{name: t.name, key: t.key}
	for _, c := range t.columns {
		d.columns = append(d.columns, describedColumn{name: c.name, typ: c.typ, null: c.null, pii: c.pii})
	}
	return d
}

// describedTables are every described table.
func describedTables() []describedTable {
	return []describedTable{leadsTable.describe(), countsTable.describe(), dealsTable.describe(),
		dictionaryTable.describe(), submissionsTable.describe(), cyclesTable.describe()}
}
