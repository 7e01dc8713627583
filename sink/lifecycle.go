package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/leadsync/leadsync/sources"
)

// The lifecycle tables (deals, crm_dictionary, submissions, campaign_cycles): described like
// leads, and written by every page path through one interface, rowBatch.

// rowOf is a row of a lifecycle table: the page it belongs to, the write's time, and the
// vendor's row.
type rowOf[T any] struct {
	w   *PageWrite
	now time.Time
	r   *T
}

func rowsOf[T any](w *PageWrite, now time.Time, items []T) []rowOf[T] {
	rows := make([]rowOf[T], len(items))
	for i := range items {
		rows[i] = rowOf[T]{w: w, now: now, r: &items[i]}
	}
	return rows
}

type (
	dealRow       = rowOf[sources.Deal]
	dictRow       = rowOf[sources.DictEntry]
	submissionRow = rowOf[sources.Submission]
	cycleRow      = rowOf[sources.CampaignCycle]
)

// The columns every lifecycle table shares.
func sourceCol[T any]() column[rowOf[T]] {
	return column[rowOf[T]]{name: "source", typ: colText, shared: true, value: func(r *rowOf[T]) val { return text(r.w.Source) }}
}

func accountCol[T any]() column[rowOf[T]] {
	return column[rowOf[T]]{name: "account_id", typ: colText, shared: true, value: func(r *rowOf[T]) val { return text(r.w.Account) }}
}

func streamCol[T any]() column[rowOf[T]] {
	return column[rowOf[T]]{name: "stream", typ: colText, content: true, shared: true, value: func(r *rowOf[T]) val { return text(r.w.Stream) }}
}

// stamps are the bookkeeping columns of a table whose rows are soft-deleted by full passes:
// created (first seen, when the table keeps it), synced, run, revision, deleted.
func stamps[T any](firstSeen string, synced string) []column[rowOf[T]] {
	var cols []column[rowOf[T]]
	if firstSeen != "" {
		cols = append(cols, column[rowOf[T]]{name: firstSeen, typ: colTime, role: created, shared: true, value: func(r *rowOf[T]) val { return val{t: r.now} }})
	}
	return append(cols,
		column[rowOf[T]]{name: synced, typ: colTime, role: stamp, shared: true, value: func(r *rowOf[T]) val { return val{t: r.now} }},
		column[rowOf[T]]{name: "sync_run_id", typ: colInt, null: true, role: stamp, shared: true, value: func(r *rowOf[T]) val { return val{i: int64(r.w.Run)} }},
		column[rowOf[T]]{name: "revision", typ: colInt, role: revision},
		column[rowOf[T]]{name: "deleted_at", typ: colTime, null: true, role: softDelete},
	)
}

// str is a nullable, content text column of a row.
func str[T any](name string, pii bool, get func(*T) string) column[rowOf[T]] {
	return column[rowOf[T]]{name: name, typ: colText, null: true, pii: pii, content: true,
		value: func(r *rowOf[T]) val { return text(get(r.r)) }}
}

// tm is a nullable, content time column of a row.
func tm[T any](name string, get func(*T) time.Time) column[rowOf[T]] {
	return column[rowOf[T]]{name: name, typ: colTime, null: true, content: true,
		value: func(r *rowOf[T]) val { return val{t: get(r.r)} }}
}

// js is a nullable, content JSON column of a row.
func js[T any](name string, pii bool, get func(*T) json.RawMessage) column[rowOf[T]] {
	return column[rowOf[T]]{name: name, typ: colJSON, null: true, pii: pii, content: true,
		value: func(r *rowOf[T]) val { return text(string(get(r.r))) }}
}

// num and whole are NOT NULL, content number columns of a row.
func num[T any](name string, get func(*T) float64) column[rowOf[T]] {
	return column[rowOf[T]]{name: name, typ: colReal, content: true, value: func(r *rowOf[T]) val { return val{f: get(r.r)} }}
}

func whole[T any](name string, get func(*T) int64) column[rowOf[T]] {
	return column[rowOf[T]]{name: name, typ: colInt, content: true, value: func(r *rowOf[T]) val { return val{i: get(r.r)} }}
}

// observedVia is how the sink saw a deal's change: a sync's poll (webhooks will say so).
const observedPoll = "poll"

// dealsTable is deals: LeadConnector opportunities and LACRM pipeline items. Its trigger
// appends to opportunity_stage_history when a deal first appears and whenever its stage,
// status or value changes.
var dealsTable = newTable(table[dealRow]{
	name:          sources.TableDeals,
	key:           []string{"source", "account_id", "deal_id"},
	skipUnchanged: true,
	columns: slices.Concat([]column[dealRow]{
		sourceCol[sources.Deal](), accountCol[sources.Deal](),
		{name: "deal_id", typ: colText, value: func(r *dealRow) val { return text(r.r.ID) }},
		streamCol[sources.Deal](),
		str("contact_id", false, func(d *sources.Deal) string { return d.ContactID }),
		str("name", true, func(d *sources.Deal) string { return d.Name }),
		str("pipeline_id", false, func(d *sources.Deal) string { return d.PipelineID }),
		str("stage_id", false, func(d *sources.Deal) string { return d.StageID }),
		str("status", false, func(d *sources.Deal) string { return d.Status }),
		{name: "status_category", typ: colText, content: true, value: func(r *dealRow) val { return text(statusCategory(r.r)) }},
		num("monetary_value", func(d *sources.Deal) float64 { return d.Value }),
		str("assigned_to", false, func(d *sources.Deal) string { return d.AssignedTo }),
		str("lead_source", false, func(d *sources.Deal) string { return d.LeadSource }),
		str("lost_reason_id", false, func(d *sources.Deal) string { return d.LostReasonID }),
		{name: "custom_values", typ: colJSON, pii: true, content: true, value: func(r *dealRow) val { return text(customJSON(r.r.CustomValues)) }},
		tm("created_at", func(d *sources.Deal) time.Time { return d.CreatedAt }),
		tm("updated_at", func(d *sources.Deal) time.Time { return d.UpdatedAt }),
		tm("stage_changed_at", func(d *sources.Deal) time.Time { return d.StageChangedAt }),
		tm("status_changed_at", func(d *sources.Deal) time.Time { return d.StatusChangedAt }),
		{name: "hipaa", typ: colBool, content: true, value: func(r *dealRow) val { return val{b: r.r.HIPAA} }},
		js("raw", true, func(d *sources.Deal) json.RawMessage { return d.Raw }),
		{name: "observed_via", typ: colText, role: stamp, shared: true, value: func(*dealRow) val { return text(observedPoll) }},
	}, stamps[sources.Deal]("first_seen_at", "last_synced_at")),
})

// statusCategory is a deal's category, open when the source did not say.
func statusCategory(d *sources.Deal) string {
	switch d.StatusCategory {
	case sources.StatusOpen, sources.StatusWon, sources.StatusLost, sources.StatusAbandoned:
		return d.StatusCategory
	}
	return sources.StatusOpen
}

// customJSON is a deal's custom values as a JSON object ({} when none).
func customJSON(m map[string]json.RawMessage) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m) // repaired values (prepareDeals) always marshal
	if err != nil {
		return "{}"
	}
	return string(b)
}

// dictionaryTable is crm_dictionary: what the ids in deals and leads mean.
var dictionaryTable = newTable(table[dictRow]{
	name:          sources.TableDictionary,
	key:           []string{"source", "account_id", "kind", "entry_id"},
	skipUnchanged: true,
	columns: slices.Concat([]column[dictRow]{
		sourceCol[sources.DictEntry](), accountCol[sources.DictEntry](),
		{name: "kind", typ: colText, value: func(r *dictRow) val { return text(r.r.Kind) }},
		{name: "entry_id", typ: colText, value: func(r *dictRow) val { return text(r.r.ID) }},
		streamCol[sources.DictEntry](),
		str("parent_id", false, func(e *sources.DictEntry) string { return e.ParentID }),
		str("name", false, func(e *sources.DictEntry) string { return e.Name }),
		whole("position", func(e *sources.DictEntry) int64 { return int64(e.Position) }),
		str("data_type", false, func(e *sources.DictEntry) string { return e.DataType }),
		str("category", false, func(e *sources.DictEntry) string { return e.Category }),
		js("detail", false, func(e *sources.DictEntry) json.RawMessage { return e.Detail }),
	}, stamps[sources.DictEntry]("", "synced_at")),
})

// submissionsTable is submissions: form and survey submissions.
var submissionsTable = newTable(table[submissionRow]{
	name:          sources.TableSubmissions,
	key:           []string{"source", "account_id", "submission_id"},
	skipUnchanged: true,
	columns: slices.Concat([]column[submissionRow]{
		sourceCol[sources.Submission](), accountCol[sources.Submission](),
		{name: "submission_id", typ: colText, value: func(r *submissionRow) val { return text(r.r.ID) }},
		streamCol[sources.Submission](),
		{name: "kind", typ: colText, content: true, value: func(r *submissionRow) val { return text(r.r.Kind) }},
		str("form_id", false, func(s *sources.Submission) string { return s.FormID }),
		str("form_name", false, func(s *sources.Submission) string { return s.FormName }),
		str("contact_id", false, func(s *sources.Submission) string { return s.ContactID }),
		str("name", true, func(s *sources.Submission) string { return s.Name }),
		str("email", true, func(s *sources.Submission) string { return s.Email }),
		str("phone", true, func(s *sources.Submission) string { return s.Phone }),
		str("attribution_source", false, func(s *sources.Submission) string { return s.Source }),
		str("medium", false, func(s *sources.Submission) string { return s.Medium }),
		str("campaign", false, func(s *sources.Submission) string { return s.Campaign }),
		str("utm_source", false, func(s *sources.Submission) string { return s.UTMSource }),
		str("utm_medium", false, func(s *sources.Submission) string { return s.UTMMedium }),
		str("utm_campaign", false, func(s *sources.Submission) string { return s.UTMCampaign }),
		str("utm_term", false, func(s *sources.Submission) string { return s.UTMTerm }),
		str("utm_content", false, func(s *sources.Submission) string { return s.UTMContent }),
		str("gclid", false, func(s *sources.Submission) string { return s.GCLID }),
		str("fbclid", false, func(s *sources.Submission) string { return s.FBCLID }),
		str("referrer", false, func(s *sources.Submission) string { return s.Referrer }),
		str("page_url", false, func(s *sources.Submission) string { return s.PageURL }),
		js("answers", true, func(s *sources.Submission) json.RawMessage { return s.Answers }),
		tm("submitted_at", func(s *sources.Submission) time.Time { return s.SubmittedAt }),
		{name: "hipaa", typ: colBool, content: true, value: func(r *submissionRow) val { return val{b: r.r.HIPAA} }},
		js("raw", true, func(s *sources.Submission) json.RawMessage { return s.Raw }),
	}, stamps[sources.Submission]("first_seen_at", "last_synced_at")),
})

// cyclesTable is campaign_cycles: PII-free, each cycle overwritten by the vendor's latest.
var cyclesTable = newTable(table[cycleRow]{
	name: sources.TableCampaignCycles,
	key:  []string{"source", "account_id", "campaign_id", "cycle_id"},
	columns: []column[cycleRow]{
		sourceCol[sources.CampaignCycle](), accountCol[sources.CampaignCycle](),
		{name: "campaign_id", typ: colText, value: func(r *cycleRow) val { return text(r.r.CampaignID) }},
		{name: "cycle_id", typ: colText, value: func(r *cycleRow) val { return text(r.r.CycleID) }},
		str("campaign_name", false, func(c *sources.CampaignCycle) string { return c.CampaignName }),
		str("campaign_type", false, func(c *sources.CampaignCycle) string { return c.CampaignType }),
		str("channel", false, func(c *sources.CampaignCycle) string { return c.Channel }),
		str("status", false, func(c *sources.CampaignCycle) string { return c.Status }),
		str("currency", false, func(c *sources.CampaignCycle) string { return c.Currency }),
		{name: "start_day", typ: colDay, null: true, content: true, value: func(r *cycleRow) val { return val{t: r.r.Start} }},
		{name: "end_day", typ: colDay, null: true, content: true, value: func(r *cycleRow) val { return val{t: r.r.End} }},
		num("spend", func(c *sources.CampaignCycle) float64 { return c.Spend }),
		num("budget", func(c *sources.CampaignCycle) float64 { return c.Budget }),
		whole("impressions", func(c *sources.CampaignCycle) int64 { return c.Impressions }),
		whole("clicks", func(c *sources.CampaignCycle) int64 { return c.Clicks }),
		whole("leads", func(c *sources.CampaignCycle) int64 { return c.Leads }),
		whole("calls", func(c *sources.CampaignCycle) int64 { return c.Calls }),
		{name: "synced_at", typ: colTime, role: stamp, shared: true, value: func(r *cycleRow) val { return val{t: r.now} }},
		{name: "sync_run_id", typ: colInt, null: true, role: stamp, shared: true, value: func(r *cycleRow) val { return val{i: int64(r.w.Run)} }},
	},
})

// rowBatch is a page's rows of one lifecycle table, storable and unique by key: what each
// page path (SQLite's chunks, PostgreSQL's batch, the row-by-row fallback) writes.
type rowBatch interface {
	tableName() string
	len() int
	// seenID is row i's id as full_pass_seen records it (softDeletes tables only).
	seenID(i int) string
	// rejectInfo is row i's id and raw bytes, for the quarantine when the database refuses it.
	rejectInfo(i int) (id string, raw []byte)
	// returnsRevision: the upsert returns each written row's revision.
	returnsRevision() bool
	sqliteChunk() int
	sqliteSQL(n int) string
	sqliteArgs(args []any, from, to int) []any
	pgSQL() string
	pgArgs() []any
	oneSQL() string
	oneArgs(dialect string, i int) []any
}

type batch[T any] struct {
	t    *table[rowOf[T]]
	rows []rowOf[T]
	seen func(*T) string
	raw  func(*T) []byte
}

func (b *batch[T]) tableName() string     { return b.t.name }
func (b *batch[T]) len() int              { return len(b.rows) }
func (b *batch[T]) seenID(i int) string   { return b.seen(b.rows[i].r) }
func (b *batch[T]) returnsRevision() bool { return strings.Contains(b.t.tail, "RETURNING") }
func (b *batch[T]) sqliteChunk() int      { return b.t.sqliteChunk }
func (b *batch[T]) sqliteSQL(n int) string {
	return b.t.sqliteSQL(n)
}
func (b *batch[T]) sqliteArgs(args []any, from, to int) []any {
	return b.t.sqliteArgs(args, b.rows[from:to])
}
func (b *batch[T]) pgSQL() string  { return b.t.pgSQL }
func (b *batch[T]) pgArgs() []any  { return b.t.pgArgs(b.rows) }
func (b *batch[T]) oneSQL() string { return b.t.oneSQL }
func (b *batch[T]) oneArgs(dialect string, i int) []any {
	return b.t.oneArgs(dialect, &b.rows[i])
}
func (b *batch[T]) rejectInfo(i int) (string, []byte) {
	var raw []byte
	if b.raw != nil {
		raw = b.raw(b.rows[i].r)
	}
	return b.seen(b.rows[i].r), raw
}

// pageBatches prepares a page's lifecycle rows: text made storable, JSON repaired (a row
// whose raw JSON cannot be is quarantined), a key repeated within the page written once
// (the last copy wins), rows without an id quarantined.
func pageBatches(w *PageWrite, now time.Time) ([]rowBatch, []rejection) {
	var out []rowBatch
	var rejects []rejection
	if deals := prepare(w.Deals, func(d *sources.Deal) string { return d.ID }, cleanDeal, &rejects); len(deals) > 0 {
		out = append(out, &batch[sources.Deal]{t: dealsTable, rows: rowsOf(w, now, deals),
			seen: func(d *sources.Deal) string { return d.ID }, raw: func(d *sources.Deal) []byte { return d.Raw }})
	}
	if dict := prepare(w.Dictionary, dictKey, cleanDict, &rejects); len(dict) > 0 {
		out = append(out, &batch[sources.DictEntry]{t: dictionaryTable, rows: rowsOf(w, now, dict), seen: dictKey})
	}
	if subs := prepare(w.Submissions, func(s *sources.Submission) string { return s.ID }, cleanSubmission, &rejects); len(subs) > 0 {
		out = append(out, &batch[sources.Submission]{t: submissionsTable, rows: rowsOf(w, now, subs),
			seen: func(s *sources.Submission) string { return s.ID }, raw: func(s *sources.Submission) []byte { return s.Raw }})
	}
	if cycles := prepare(w.Cycles, cycleKey, cleanCycle, &rejects); len(cycles) > 0 {
		out = append(out, &batch[sources.CampaignCycle]{t: cyclesTable, rows: rowsOf(w, now, cycles), seen: cycleKey})
	}
	return out, rejects
}

// dictKey is a dictionary entry's id as full_pass_seen and testenv read it: kind:id.
func dictKey(e *sources.DictEntry) string { return e.Kind + ":" + e.ID }

func cycleKey(c *sources.CampaignCycle) string { return c.CampaignID + "/" + c.CycleID }

// prepare cleans items (clean returns a reason to quarantine, "" to keep; it checks the
// parts of a composite key), drops those without an id, and keeps the last copy of a
// repeated key.
func prepare[T any](items []T, key func(*T) string, clean func(*T) (reason string, raw []byte), rejects *[]rejection) []T {
	if len(items) == 0 {
		return nil
	}
	out := make([]T, 0, len(items))
	seen := make(map[string]int, len(items))
	for _, it := range items {
		reason, raw := clean(&it)
		k := key(&it)
		if reason == "" && k == "" {
			reason = "no id"
		}
		if reason != "" {
			*rejects = append(*rejects, rejection{id: k, reason: reason, raw: raw})
			continue
		}
		if i, ok := seen[k]; ok {
			out[i] = it
			continue
		}
		seen[k] = len(out)
		out = append(out, it)
	}
	return out
}

// cleanStrings makes text fields storable (see validText).
func cleanStrings(fields ...*string) {
	for _, f := range fields {
		*f = validText(*f)
	}
}

// repairField repairs a JSON field in place; false when it cannot be.
func repairField(f *json.RawMessage) bool {
	if len(*f) == 0 {
		return true
	}
	fixed, err := repairJSON(*f)
	if err != nil {
		return false
	}
	*f = fixed
	return true
}

func cleanDeal(d *sources.Deal) (string, []byte) {
	cleanStrings(&d.ID, &d.ContactID, &d.Name, &d.PipelineID, &d.StageID, &d.Status, &d.StatusCategory,
		&d.AssignedTo, &d.LeadSource, &d.LostReasonID)
	if !repairField(&d.Raw) {
		return "raw: not repairable JSON", d.Raw
	}
	if len(d.CustomValues) > 0 {
		vals := make(map[string]json.RawMessage, len(d.CustomValues))
		for k, v := range d.CustomValues {
			if !repairField(&v) || len(v) == 0 {
				continue // an unreadable custom value is left out; raw keeps it
			}
			vals[validText(k)] = v
		}
		d.CustomValues = vals
	}
	return "", nil
}

func cleanDict(e *sources.DictEntry) (string, []byte) {
	cleanStrings(&e.Kind, &e.ID, &e.ParentID, &e.Name, &e.DataType, &e.Category)
	if e.ID == "" {
		return "no id", nil
	}
	switch e.Kind {
	case sources.DictPipeline, sources.DictStage, sources.DictLostReason, sources.DictCustomField, sources.DictUser:
	default:
		return "unknown dictionary kind", nil
	}
	if !repairField(&e.Detail) {
		e.Detail = nil
	}
	return "", nil
}

func cleanSubmission(s *sources.Submission) (string, []byte) {
	a := &s.Attribution
	cleanStrings(&s.ID, &s.Kind, &s.FormID, &s.FormName, &s.ContactID, &s.Name, &s.Email, &s.Phone,
		&a.Source, &a.Medium, &a.Campaign, &a.UTMSource, &a.UTMMedium, &a.UTMCampaign, &a.UTMTerm, &a.UTMContent,
		&a.GCLID, &a.FBCLID, &a.Referrer, &a.PageURL)
	if s.Kind != sources.SubmissionForm && s.Kind != sources.SubmissionSurvey {
		return "unknown submission kind", s.Raw
	}
	if !repairField(&s.Raw) {
		return "raw: not repairable JSON", s.Raw
	}
	if !repairField(&s.Answers) {
		s.Answers = nil // raw keeps them
	}
	return "", nil
}

func cleanCycle(c *sources.CampaignCycle) (string, []byte) {
	cleanStrings(&c.CampaignID, &c.CycleID, &c.CampaignName, &c.CampaignType, &c.Channel, &c.Status, &c.Currency)
	if c.CampaignID == "" || c.CycleID == "" {
		return "no campaign or cycle id", nil
	}
	return "", nil
}

// softDeleted are the lifecycle tables a full pass soft-deletes from: the table, and its
// row id as full_pass_seen records it.
var softDeleted = []struct{ table, id, synced, updated string }{
	{sources.TableDeals, "deal_id", "last_synced_at", "updated_at"},
	{sources.TableDictionary, "kind || ':' || entry_id", "synced_at", ""},
	{sources.TableSubmissions, "submission_id", "last_synced_at", ""},
}

// writeRowByRow is the fallback's write of a batch: each row in a savepoint, a row the
// database refuses quarantined with its error code. It returns how many rows it wrote
// (inserted or updated) and the refused ones; the written and unchanged rows are recorded as
// seen by a full pass.
func (c *core) writeRowByRow(ctx context.Context, tx *sqlx.Tx, w PageWrite, b rowBatch) (int, []rejection, error) {
	written := 0
	var refused []rejection
	for i := range b.len() {
		wrote := false
		err := c.savepoint(ctx, tx, true, func() error {
			if !b.returnsRevision() {
				_, err := tx.ExecContext(ctx, c.q(b.oneSQL()), b.oneArgs(c.dialect, i)...)
				wrote = err == nil
				return err
			}
			var rev int64
			err := tx.QueryRowxContext(ctx, c.q(b.oneSQL()), b.oneArgs(c.dialect, i)...).Scan(&rev)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			wrote = err == nil
			return err
		})
		switch {
		case isDataError(err):
			id, raw := b.rejectInfo(i)
			r := rejection{id: id, reason: fmt.Sprintf("the database refused a %s row (%s)", b.tableName(), errorCode(err)), raw: raw}
			c.logRejects(w, []rejection{r})
			refused = append(refused, r)
			continue
		case err != nil:
			return 0, nil, err
		}
		if wrote {
			written++
		}
		if !softDeletes(b) {
			continue
		}
		if err := c.markSeen(ctx, tx, w, []string{b.seenID(i)}); err != nil {
			return 0, nil, err
		}
	}
	return written, refused, nil
}

// seenIDs are a batch's ids as full_pass_seen records them.
func batchSeenIDs(b rowBatch, from, to int) []string {
	ids := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		ids = append(ids, b.seenID(i))
	}
	return ids
}

// softDeletes reports whether a full pass soft-deletes from the batch's table.
func softDeletes(b rowBatch) bool { return sources.SoftDeletes(b.tableName()) }

// lifecycleMissing is fullPassMissing for a lifecycle table (the same arguments, less the
// skewed start when the table has no vendor's updated time): its live rows
// of the stream that the run's pass did not see and that nobody wrote since the run began
// (nor the vendor updated, when the table has the vendor's updated time).
func lifecycleMissing(table, id, synced, updated string) string {
	cond := `source = ? AND account_id = ? AND stream = ? AND deleted_at IS NULL AND ` + synced + ` < ?`
	if updated != "" {
		cond += ` AND (` + updated + ` IS NULL OR ` + updated + ` < ?)`
	}
	return cond + `
  AND NOT EXISTS (SELECT 1 FROM full_pass_seen s
                  WHERE s.source = ` + table + `.source AND s.account_id = ` + table + `.account_id
                    AND s.stream = ` + table + `.stream AND s.run_id = ? AND s.lead_id = ` + qualify(table, id) + `)`
}

// qualify prefixes the columns of an id expression with table.
func qualify(table, expr string) string {
	if expr == "deal_id" || expr == "submission_id" {
		return table + "." + expr
	}
	return table + ".kind || ':' || " + table + ".entry_id"
}
