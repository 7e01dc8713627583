package sink

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/leadsync/leadsync/internal/migrate"
	"github.com/leadsync/leadsync/sources"
)

// core is what both dialects share: everything but the page write, over database/sql. Its
// SQL is written once with ? placeholders and rebound for PostgreSQL.
type core struct {
	dialect    string
	w          *sqlx.DB // writes (on SQLite, the one writer connection)
	r          *sqlx.DB // reads
	now        func() time.Time
	log        *slog.Logger
	migrations *migrate.Migrator
	// ts encodes a time for a parameter: fixed-width UTC text on SQLite, time.Time on
	// PostgreSQL; NULL for the zero time.
	ts func(time.Time) any
	// afterChunk, when set (by tests), runs inside WritePage's transaction after each batch
	// of rows; an error aborts the page.
	afterChunk func(chunk int) error
	// worker and lease: see Options.Worker. With a worker set, writes are fenced.
	worker string
	lease  time.Duration
}

func (c *core) base() *core { return c }

// clock returns now in UTC.
func (c *core) clock() time.Time { return c.now().UTC() }

// tsLayout is the SQLite time format: fixed width, so text order is time order.
const tsLayout = "2006-01-02T15:04:05.000000Z"

// Times are stored to the microsecond on both dialects (PostgreSQL's precision), truncated
// rather than rounded so a re-read lead compares equal to what was stored.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func sqliteTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return storedTime(t).Format(tsLayout)
}

func postgresTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return storedTime(t)
}

// nullTime scans a time from either dialect: SQLite text or a PostgreSQL timestamptz.
type nullTime struct{ time.Time }

func (n *nullTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		n.Time = time.Time{}
	case time.Time:
		n.Time = v.UTC()
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	default:
		return fmt.Errorf("sink: cannot scan %T as a time", src)
	}
	return nil
}

func (n *nullTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && len(s) == len(time.DateOnly) {
		t, err = time.Parse(time.DateOnly, s) // a day column
	}
	if err != nil {
		return fmt.Errorf("sink: bad stored time %q: %w", s, err)
	}
	n.Time = t.UTC()
	return nil
}

// tx runs fn in a write transaction, committing when fn returns nil.
func (c *core) tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := c.w.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (c *core) q(query string) string { return c.w.Rebind(query) }

// Statements shared by both dialects.
const (
	sqlEnsureAccount = `INSERT INTO accounts (source, account_id, first_seen_at) VALUES (?, ?, ?)
ON CONFLICT (source, account_id) DO NOTHING`

	// sqlUpsertCursor stores a stream's cursor (source, account, stream, cursor, now, run).
	sqlUpsertCursor = `INSERT INTO sync_state (source, account_id, stream, cursor, updated_at, sync_run_id)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (source, account_id, stream) DO UPDATE SET
    cursor = excluded.cursor, updated_at = excluded.updated_at, sync_run_id = excluded.sync_run_id`
)

// cursorArgs are sqlUpsertCursor's parameters for a page; now is encoded for the dialect.
func cursorArgs(w PageWrite, now any) []any {
	return []any{w.Source, w.Account, w.Stream, string(w.Next), now, int64(w.Run)}
}

// rejection is a record quarantined in rejected_records rather than stored.
type rejection struct {
	id, reason string
	raw        []byte // the vendor's bytes, possibly not JSON
}

// pageLeads validates a page, makes its leads storable, and collapses repeated lead ids (the
// last copy wins): one statement may not upsert the same key twice. A lead whose raw JSON
// cannot be repaired is quarantined, with the page's rejected records.
func pageLeads(w PageWrite) ([]sources.Lead, []rejection, error) {
	if w.Source == "" || w.Account == "" {
		return nil, nil, errors.New("sink: page without source or account")
	}
	if w.Stream == "" {
		return nil, nil, fmt.Errorf("sink: page of %s/%s without a stream", w.Source, w.Account)
	}
	out := make([]sources.Lead, 0, len(w.Leads))
	var seen map[string]int
	for _, l := range w.Leads {
		if l.Source != "" && l.Source != w.Source || l.AccountID != "" && l.AccountID != w.Account {
			return nil, nil, fmt.Errorf("sink: %v in a page for %s/%s", l, w.Source, w.Account)
		}
		l = cleanText(l)
		if seen == nil {
			seen = make(map[string]int, len(w.Leads))
		}
		if i, ok := seen[l.ID]; ok {
			out[i] = l
			continue
		}
		seen[l.ID] = len(out)
		out = append(out, l)
	}
	var rejects []rejection
	leads := out[:0]
	for _, l := range out {
		if len(l.Raw) > 0 {
			raw, err := repairJSON(l.Raw)
			if err != nil {
				rejects = append(rejects, rejection{id: l.ID, reason: "raw: " + err.Error(), raw: l.Raw})
				continue
			}
			l.Raw = raw
		}
		leads = append(leads, l)
	}
	for _, r := range w.Rejected {
		rejects = append(rejects, rejection{id: r.ID, reason: r.Reason, raw: r.Raw})
	}
	return leads, rejects, nil
}

// pageCounts collapses the counts of a page repeating a day and kind (the last copy wins):
// one statement may not upsert the same key twice.
func pageCounts(counts []sources.DailyCount) []sources.DailyCount {
	if len(counts) == 0 {
		return nil
	}
	type key struct {
		day  string
		kind string
	}
	out := make([]sources.DailyCount, 0, len(counts))
	seen := make(map[key]int, len(counts))
	for _, dc := range counts {
		dc.Kind = validText(dc.Kind)
		k := key{dc.Day.UTC().Format(time.DateOnly), dc.Kind}
		if i, ok := seen[k]; ok {
			out[i] = dc
			continue
		}
		seen[k] = len(out)
		out = append(out, dc)
	}
	return out
}

// cleanText makes a lead's text storable in both dialects: vendors send invalid UTF-8 and
// NULs now and then, which PostgreSQL's text refuses — and one bad lead must not block its
// account on every run. Invalid bytes become U+FFFD, as in any lenient decoder. Raw JSON is
// repairJSON's.
func cleanText(l sources.Lead) sources.Lead {
	for _, f := range []*string{&l.ID, &l.Kind, &l.Status, &l.FirstName, &l.LastName, &l.Email, &l.Phone,
		&l.Company, &l.Channel, &l.Campaign} {
		*f = validText(*f)
	}
	if len(l.Tags) > 0 {
		tags := make([]string, len(l.Tags))
		for i, t := range l.Tags {
			tags[i] = validText(t)
		}
		l.Tags = tags
	}
	return l
}

// validText is s as valid UTF-8 without NULs.
func validText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Statements of the quarantine and of the lead-by-lead fallback, shared by both dialects.
const (
	sqlInsertRejected = `INSERT INTO rejected_records
    (source, account_id, stream, record_id, reason, raw, rejected_at, sync_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlSeenOne = `INSERT INTO full_pass_seen (source, account_id, stream, run_id, lead_id) VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`
)

// maxReasonLen bounds rejected_records.reason.
const maxReasonLen = 500

// rejectArgs are sqlInsertRejected's parameters; now is already encoded for the dialect.
func rejectArgs(w PageWrite, r rejection, now any) []any {
	reason := validText(r.reason)
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "") + "…"
	}
	var raw any
	if len(r.raw) > 0 {
		raw = validText(string(r.raw))
	}
	return []any{w.Source, w.Account, w.Stream, nullString(validText(r.id)), reason, raw, now, int64(w.Run)}
}

// seenIDs are the ids of quarantined records: the vendor still has them, so a full pass must
// not delete their stored copies.
func seenIDs(rejects []rejection) []string {
	var ids []string
	for _, r := range rejects {
		if id := validText(r.id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// writeRejects quarantines records in a page's transaction.
func (c *core) writeRejects(ctx context.Context, tx execer, w PageWrite, rejects []rejection, now any) error {
	for _, r := range rejects {
		if _, err := tx.ExecContext(ctx, c.q(sqlInsertRejected), rejectArgs(w, r, now)...); err != nil {
			return err
		}
	}
	return c.markSeen(ctx, tx, w, seenIDs(rejects))
}

// markSeen records ids as seen by the page's full pass, if it is one.
func (c *core) markSeen(ctx context.Context, tx execer, w PageWrite, ids []string) error {
	if !w.FullPass {
		return nil
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, c.q(sqlSeenOne), w.Source, w.Account, w.Stream, int64(w.Run), id); err != nil {
			return err
		}
	}
	return nil
}

// logRejects names the quarantined records (ids and reasons only: no PII).
func (c *core) logRejects(w PageWrite, rejects []rejection) {
	for _, r := range rejects {
		c.log.Warn("sink: record quarantined in rejected_records", slog.String("source", w.Source),
			slog.String("account", w.Account), slog.String("record", validText(r.id)), slog.String("reason", validText(r.reason)))
	}
}

// isDataError reports whether the database refused a value (PostgreSQL's class 22 "data
// exception", or a too-deep jsonb; SQLite's few value errors) rather than the statement.
func isDataError(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return strings.HasPrefix(pgErr.Code, "22") || pgErr.Code == "54001" // statement_too_complex: jsonb nested too deep
	}
	if se, ok := errors.AsType[sqlite3.Error](err); ok {
		return se.Code == sqlite3.ErrTooBig || se.Code == sqlite3.ErrMismatch || se.Code == sqlite3.ErrRange
	}
	return false
}

// errorCode names a data error without its message, which may quote the value.
func errorCode(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return "SQLSTATE " + pgErr.Code
	}
	if se, ok := errors.AsType[sqlite3.Error](err); ok {
		return fmt.Sprintf("SQLite error %d: %s", int(se.Code), se.Code.Error())
	}
	return "unknown error"
}

// commitPage commits a page with the dialect's fast write and, when the database refuses
// a value in it, again lead by lead: one bad lead is quarantined, never the page.
func (c *core) commitPage(ctx context.Context, w PageWrite, fast func(ctx context.Context, p page) (WriteResult, error)) (WriteResult, error) {
	leads, rejects, err := pageLeads(w)
	if err != nil {
		return WriteResult{}, err
	}
	batches, refused := pageBatches(&w, c.clock())
	rejects = slices.Concat(rejects, refused)
	c.logRejects(w, rejects[:len(rejects)-len(w.Rejected)-len(refused)])
	c.logRejects(w, refused)
	p := page{w: w, leads: leads, rejects: rejects, counts: pageCounts(w.Counts), batches: batches}
	res, err := fast(ctx, p)
	if isDataError(err) {
		res, err = c.writeByLead(ctx, p)
	}
	if err != nil {
		return WriteResult{}, fmt.Errorf("sink: write page of %s/%s: %w", w.Source, w.Account, err)
	}
	return res, nil
}

// page is a page ready to write: its leads storable and unique, its rejections (the page's
// and the leads whose raw JSON could not be repaired), its counts unique.
type page struct {
	w       PageWrite
	leads   []sources.Lead
	rejects []rejection
	counts  []sources.DailyCount
	// batches are the lifecycle rows, by table; their times are the page's write time,
	// stamped when they were prepared.
	batches []rowBatch
}

// countRevisions adds the rows an upsert returning revisions wrote to res.Rows.
func countRevisions(res *WriteResult, rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) error {
	for rows.Next() {
		var rev int64
		if err := rows.Scan(&rev); err != nil {
			return err
		}
		res.Rows++
	}
	return rows.Err()
}

// writeByLead is the page's transaction again, each lead in a savepoint: a lead the database
// refuses is quarantined with the field and the error code, and the rest commits with the
// counts and the cursor as usual.
func (c *core) writeByLead(ctx context.Context, p page) (WriteResult, error) {
	w, leads, rejects := p.w, p.leads, p.rejects
	now := c.clock()
	var res WriteResult
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		res = WriteResult{}
		if err := c.fence(ctx, tx, w.Source, w.Account); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, c.q(sqlEnsureAccount), w.Source, w.Account, c.ts(now)); err != nil {
			return err
		}
		refused := slices.Clip(rejects)
		for i := range leads {
			l := &leads[i]
			var rev int64
			err := c.savepoint(ctx, tx, true, func() error { return c.upsertOne(ctx, tx, w, l, now, &rev) })
			switch {
			case isDataError(err):
				r := rejection{id: l.ID, reason: c.refusal(ctx, tx, w, *l, now, err), raw: l.Raw}
				c.logRejects(w, []rejection{r})
				refused = append(refused, r)
				continue
			case err != nil:
				return err
			case rev == 0:
				res.Unchanged++
			case rev == 1:
				res.Inserted++
			default:
				res.Updated++
			}
			if err := c.markSeen(ctx, tx, w, []string{l.ID}); err != nil {
				return err
			}
		}
		for _, b := range p.batches {
			n, bad, err := c.writeRowByRow(ctx, tx, w, b)
			if err != nil {
				return err
			}
			res.Rows += n
			res.RowsUnchanged += b.len() - n - len(bad)
			refused = append(refused, bad...)
		}
		for _, r := range refused {
			insert := func() error {
				_, err := tx.ExecContext(ctx, c.q(sqlInsertRejected), rejectArgs(w, r, c.ts(now))...)
				return err
			}
			err := c.savepoint(ctx, tx, true, insert)
			if isDataError(err) { // what the leads table refused, rejected_records may too
				r.reason += fmt.Sprintf("; its raw was refused too (%s)", errorCode(err))
				r.raw = nil
				err = insert()
			}
			if err != nil {
				return err
			}
		}
		if err := c.markSeen(ctx, tx, w, seenIDs(refused)); err != nil {
			return err
		}
		res.Rejected = len(refused)
		for _, r := range countRows(&w, now, p.counts) {
			if _, err := tx.ExecContext(ctx, c.q(countsTable.oneSQL), countsTable.oneArgs(c.dialect, &r)...); err != nil {
				return err
			}
		}
		res.Counts = len(p.counts)
		_, err := tx.ExecContext(ctx, c.q(sqlUpsertCursor), cursorArgs(w, c.ts(now))...)
		return err
	})
	return res, err
}

// upsertOne writes one lead; rev is its revision, 0 when it was already stored as it is.
func (c *core) upsertOne(ctx context.Context, tx *sqlx.Tx, w PageWrite, l *sources.Lead, now time.Time, rev *int64) error {
	row := leadRow{w: &w, now: now, l: l}
	err := tx.QueryRowxContext(ctx, c.q(leadsTable.oneSQL), leadsTable.oneArgs(c.dialect, &row)...).Scan(rev)
	if errors.Is(err, sql.ErrNoRows) {
		*rev = 0
		return nil
	}
	return err
}

// savepoint runs fn in a savepoint, rolled back when fn fails or keep is false.
func (c *core) savepoint(ctx context.Context, tx *sqlx.Tx, keep bool, fn func() error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT lead"); err != nil {
		return err
	}
	err := fn()
	if err != nil || !keep {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT lead"); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE SAVEPOINT lead"); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// probeFields clear one lead field each, to find the one the database refuses.
var probeFields = []struct {
	name  string
	clear func(*sources.Lead)
}{
	{"raw", func(l *sources.Lead) { l.Raw = nil }},
	{"tags", func(l *sources.Lead) { l.Tags = nil }},
	{"created_at", func(l *sources.Lead) { l.CreatedAt = time.Time{} }},
	{"updated_at", func(l *sources.Lead) { l.UpdatedAt = time.Time{} }},
	{"read_at", func(l *sources.Lead) { l.ReadAt = time.Time{} }},
	{"archived_at", func(l *sources.Lead) { l.ArchivedAt = time.Time{} }},
	{"call_seconds", func(l *sources.Lead) { l.DurationSeconds = 0 }},
	{"first_name", func(l *sources.Lead) { l.FirstName = "" }},
	{"last_name", func(l *sources.Lead) { l.LastName = "" }},
	{"email", func(l *sources.Lead) { l.Email = "" }},
	{"phone", func(l *sources.Lead) { l.Phone = "" }},
	{"company", func(l *sources.Lead) { l.Company = "" }},
	{"channel", func(l *sources.Lead) { l.Channel = "" }},
	{"campaign", func(l *sources.Lead) { l.Campaign = "" }},
	{"status", func(l *sources.Lead) { l.Status = "" }},
	{"kind", func(l *sources.Lead) { l.Kind = "" }},
}

// refusal says which field of a refused lead the database refused, and its error code: the
// first field whose absence lets the lead in (tried in savepoints that are rolled back).
func (c *core) refusal(ctx context.Context, tx *sqlx.Tx, w PageWrite, l sources.Lead, now time.Time, refused error) string {
	field := "an unknown field"
	for _, p := range probeFields {
		probe := l
		p.clear(&probe)
		var rev int64
		if c.savepoint(ctx, tx, false, func() error { return c.upsertOne(ctx, tx, w, &probe, now, &rev) }) == nil {
			field = p.name
			break
		}
	}
	return fmt.Sprintf("the database refused %s (%s)", field, errorCode(refused))
}

// Cursor implements Sink.
func (c *core) Cursor(ctx context.Context, source, account, stream string) (sources.Cursor, error) {
	var cur string
	err := c.r.GetContext(ctx, &cur, c.q(`SELECT cursor FROM sync_state WHERE source = ? AND account_id = ? AND stream = ?`),
		source, account, stream)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sink: read cursor of %s/%s/%s: %w", source, account, stream, err)
	}
	return sources.Cursor(cur), nil
}

// fullPassSkew is how far behind ours a vendor's clock may be: a lead the vendor updated
// this close to the pass's start may have moved to a page the pass had already read.
const fullPassSkew = time.Minute

// fullPassMissing is the condition on leads of the stream's live leads that the full pass
// of a run did not see and that nobody changed since the run began (args: source, account,
// stream, the run's start, the start less fullPassSkew, run): the ones a completed pass may
// soft-delete. Another stream's leads are never among them.
const fullPassMissing = `source = ? AND account_id = ? AND stream = ? AND deleted_at IS NULL
  AND last_synced_at < ? AND (updated_at IS NULL OR updated_at < ?)
  AND NOT EXISTS (SELECT 1 FROM full_pass_seen s
                  WHERE s.source = leads.source AND s.account_id = leads.account_id
                    AND s.stream = leads.stream AND s.run_id = ? AND s.lead_id = leads.lead_id)`

// fullPassRun reads the run of a full pass, which must still be running, and its start.
func (c *core) fullPassRun(ctx context.Context, q sqlx.QueryerContext, run RunID) (time.Time, error) {
	var r struct {
		Status  string   `db:"status"`
		Started nullTime `db:"started_at"`
	}
	err := sqlx.GetContext(ctx, q, &r, c.q(`SELECT status, started_at FROM sync_runs WHERE id = ?`), run)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("run %d: %w", run, ErrUnknownRun)
	}
	if err != nil {
		return time.Time{}, err
	}
	if r.Status != RunRunning {
		return time.Time{}, fmt.Errorf("run %d is %s, not running: its full pass cannot delete", run, r.Status)
	}
	return r.Started.Time, nil
}

// FullPassMissing implements Sink.
func (c *core) FullPassMissing(ctx context.Context, run RunID, source, account, stream string) ([]string, error) {
	started, err := c.fullPassRun(ctx, c.w, run)
	if err != nil {
		return nil, fmt.Errorf("sink: full pass of %s/%s/%s: %w", source, account, stream, err)
	}
	var ids []string
	if err := c.w.SelectContext(ctx, &ids, c.q(`SELECT lead_id FROM leads WHERE `+fullPassMissing+` ORDER BY lead_id`),
		source, account, stream, c.ts(started), c.ts(started.Add(-fullPassSkew)), run); err != nil {
		return nil, fmt.Errorf("sink: full pass of %s/%s/%s: %w", source, account, stream, err)
	}
	for _, t := range softDeleted { // a stream writes one table: the lifecycle table's, if any
		args := []any{source, account, stream, c.ts(started)}
		if t.updated != "" {
			args = append(args, c.ts(started.Add(-fullPassSkew)))
		}
		var more []string
		if err := c.w.SelectContext(ctx, &more, c.q(`SELECT `+qualify(t.table, t.id)+` FROM `+t.table+` WHERE `+
			lifecycleMissing(t.table, t.id, t.synced, t.updated)), append(args, run)...); err != nil {
			return nil, fmt.Errorf("sink: full pass of %s/%s/%s: %w", source, account, stream, err)
		}
		ids = append(ids, more...)
	}
	slices.Sort(ids) // in byte order, whatever the database's collation
	return ids, nil
}

// FinishFullPass implements Sink. It deletes (softly) only when the run is still running
// and its pass saw at least one lead: an empty "complete" pass is far more likely a vendor
// glitch than an account whose every lead was deleted. It spares what another run wrote,
// or the vendor updated, since the run began: a pass cannot prove those gone. The run's own
// seen ids are dropped either way (other runs' belong to passes still under way).
func (c *core) FinishFullPass(ctx context.Context, run RunID, source, account, stream string) (int64, error) {
	var deleted int64
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		if err := c.fence(ctx, tx, source, account); err != nil {
			return err
		}
		started, err := c.fullPassRun(ctx, tx, run)
		if err != nil {
			return err
		}
		var seen int64
		if err := tx.GetContext(ctx, &seen, c.q(`SELECT count(*) FROM full_pass_seen
WHERE source = ? AND account_id = ? AND stream = ? AND run_id = ?`), source, account, stream, run); err != nil {
			return err
		}
		if seen > 0 {
			res, err := tx.ExecContext(ctx, c.q(`UPDATE leads SET deleted_at = ?, sync_run_id = ? WHERE `+fullPassMissing),
				c.ts(c.clock()), run, source, account, stream, c.ts(started), c.ts(started.Add(-fullPassSkew)), run)
			if err != nil {
				return err
			}
			if deleted, err = res.RowsAffected(); err != nil {
				return err
			}
			// A stream writes one table: the lifecycle tables' rows of this stream, if any.
			for _, t := range softDeleted {
				args := []any{c.ts(c.clock()), run, source, account, stream, c.ts(started)}
				if t.updated != "" {
					args = append(args, c.ts(started.Add(-fullPassSkew)))
				}
				res, err := tx.ExecContext(ctx, c.q(`UPDATE `+t.table+` SET deleted_at = ?, sync_run_id = ? WHERE `+
					lifecycleMissing(t.table, t.id, t.synced, t.updated)), append(args, run)...)
				if err != nil {
					return err
				}
				n, err := res.RowsAffected()
				if err != nil {
					return err
				}
				deleted += n
			}
		} else {
			c.log.Warn("sink: full pass saw no leads; deleting nothing",
				slog.String("source", source), slog.String("account", account), slog.String("stream", stream),
				slog.Int64("run", int64(run)))
		}
		_, err = tx.ExecContext(ctx, c.q(`DELETE FROM full_pass_seen
WHERE source = ? AND account_id = ? AND stream = ? AND run_id = ?`), source, account, stream, run)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sink: finish full pass of %s/%s/%s: %w", source, account, stream, err)
	}
	return deleted, nil
}

// UpsertAccount implements Sink. The access state is left alone: only a sync changes it.
func (c *core) UpsertAccount(ctx context.Context, acct sources.Account) error {
	var meta any
	if len(acct.Meta) > 0 {
		b, err := jsonMarshal(acct.Meta)
		if err != nil {
			return fmt.Errorf("sink: account %s/%s meta: %w", acct.Source, acct.ID, err)
		}
		meta = string(b)
	}
	_, err := c.w.ExecContext(ctx, c.q(`INSERT INTO accounts
    (source, account_id, name, hipaa_protected, active, meta, first_seen_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, account_id) DO UPDATE SET
    name = excluded.name, hipaa_protected = excluded.hipaa_protected,
    active = excluded.active, meta = excluded.meta`),
		acct.Source, acct.ID, acct.Name, acct.HIPAAProtected, acct.Active, meta, c.ts(c.clock()))
	if err != nil {
		return fmt.Errorf("sink: upsert account %s/%s: %w", acct.Source, acct.ID, err)
	}
	return nil
}

// MarkRestricted implements Sink. With no Fields in r, every PII field is recorded as
// withheld: a 403 on the lead endpoint withholds them all. A field's since survives
// repeated 403s.
func (c *core) MarkRestricted(ctx context.Context, run RunID, r *sources.RestrictedError) error {
	fields := r.Fields
	if len(fields) == 0 {
		fields = sources.PIIFields
	}
	now := c.ts(c.clock())
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		if err := c.fence(ctx, tx, r.Vendor, r.AccountID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, c.q(`INSERT INTO accounts
    (source, account_id, hipaa_protected, access, access_reason, first_seen_at, last_run_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, account_id) DO UPDATE SET
    access = excluded.access, access_reason = excluded.access_reason,
    hipaa_protected = accounts.hipaa_protected OR excluded.hipaa_protected,
    last_run_id = excluded.last_run_id, last_error = NULL`),
			r.Vendor, r.AccountID, r.HIPAA, r.Access(), r.Message, now, run); err != nil {
			return err
		}
		for _, f := range fields {
			if _, err := tx.ExecContext(ctx, c.q(`INSERT INTO restricted_fields
    (source, account_id, field, reason, since, sync_run_id) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (source, account_id, field) DO UPDATE SET
    reason = excluded.reason, sync_run_id = excluded.sync_run_id`),
				r.Vendor, r.AccountID, f, r.Message, now, run); err != nil {
				return err
			}
		}
		q, args, err := sqlx.In(`DELETE FROM restricted_fields
WHERE source = ? AND account_id = ? AND field NOT IN (?)`, r.Vendor, r.AccountID, fields)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, c.q(q), args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("sink: mark %s/%s restricted: %w", r.Vendor, r.AccountID, err)
	}
	return nil
}

// maxErrorLen bounds the error text kept in accounts.last_error and sync_runs.error.
const maxErrorLen = 2000

func errorText(err error) any {
	if err == nil {
		return nil
	}
	return boundedText(err.Error())
}

// boundedText is s as stored in an error column: at most maxErrorLen bytes, valid UTF-8.
func boundedText(s string) any {
	if len(s) > maxErrorLen {
		s = strings.ToValidUTF8(s[:maxErrorLen], "") + "…"
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return s
}

// AccountSynced implements Sink. A *sources.RestrictedError is recorded as MarkRestricted
// does: a restricted account is an expected state, not a failure.
func (c *core) AccountSynced(ctx context.Context, run RunID, source, account string, syncErr error) error {
	if re, ok := errors.AsType[*sources.RestrictedError](syncErr); ok {
		return c.MarkRestricted(ctx, run, re)
	}
	now := c.ts(c.clock())
	var err error
	if syncErr == nil {
		err = c.tx(ctx, func(tx *sqlx.Tx) error {
			if err := c.fence(ctx, tx, source, account); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, c.q(`INSERT INTO accounts
    (source, account_id, first_seen_at, last_synced_at, last_run_id) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (source, account_id) DO UPDATE SET
    access = 'ok', access_reason = NULL, last_error = NULL,
    last_synced_at = excluded.last_synced_at, last_run_id = excluded.last_run_id`),
				source, account, now, now, run); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, c.q(`DELETE FROM restricted_fields WHERE source = ? AND account_id = ?`), source, account)
			return err
		})
	} else {
		err = c.tx(ctx, func(tx *sqlx.Tx) error {
			if err := c.fence(ctx, tx, source, account); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, c.q(`INSERT INTO accounts
    (source, account_id, first_seen_at, last_error, last_run_id) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (source, account_id) DO UPDATE SET
    last_error = excluded.last_error, last_run_id = excluded.last_run_id`),
				source, account, now, errorText(syncErr), run)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sink: record sync of %s/%s: %w", source, account, err)
	}
	return nil
}

// StreamSynced implements Sink. A *sources.RestrictedError is recorded as the outcome
// restricted, with the vendor's message: a restricted stream is an expected state.
func (c *core) StreamSynced(ctx context.Context, run RunID, r StreamResult) error {
	if r.Source == "" || r.Account == "" || r.Stream == "" {
		return fmt.Errorf("sink: stream result without source, account or stream: %s/%s/%q", r.Source, r.Account, r.Stream)
	}
	outcome, errText := r.Outcome, errorText(r.Err)
	if re, ok := errors.AsType[*sources.RestrictedError](r.Err); ok {
		outcome = OutcomeRestricted
		if re.Message != "" {
			errText = boundedText(re.Message)
		}
	}
	if _, ok := errors.AsType[*sources.MissingScopeError](r.Err); ok {
		outcome = OutcomeMissingScope
	}
	if outcome == "" {
		return fmt.Errorf("sink: stream result of %s/%s/%s without an outcome", r.Source, r.Account, r.Stream)
	}
	now := c.clock()
	var okAt any
	if outcome == OutcomeOK {
		okAt = c.ts(now)
	}
	started := r.Started
	if started.IsZero() {
		started = now
	}
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		if err := c.fence(ctx, tx, r.Source, r.Account); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, c.q(sqlEnsureAccount), r.Source, r.Account, c.ts(now)); err != nil {
			return err
		}
		// A second result of the same stream in one run replaces the first.
		if _, err := tx.ExecContext(ctx, c.q(`INSERT INTO sync_run_streams
    (run_id, source, account_id, stream, outcome, rows_written, error, started_at, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, source, account_id, stream) DO UPDATE SET
    outcome = excluded.outcome, rows_written = excluded.rows_written, error = excluded.error,
    started_at = excluded.started_at, finished_at = excluded.finished_at`),
			run, r.Source, r.Account, r.Stream, outcome, r.Written, errText, c.ts(started), c.ts(now)); err != nil {
			return err
		}
		// The cursor is the page writes' alone: a stream never written gets an empty one.
		_, err := tx.ExecContext(ctx, c.q(`INSERT INTO sync_state
    (source, account_id, stream, cursor, updated_at, last_outcome, last_error, last_run_id, last_ok_at)
VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)
ON CONFLICT (source, account_id, stream) DO UPDATE SET
    last_outcome = excluded.last_outcome, last_error = excluded.last_error,
    last_run_id = excluded.last_run_id, last_ok_at = COALESCE(excluded.last_ok_at, sync_state.last_ok_at)`),
			r.Source, r.Account, r.Stream, c.ts(now), outcome, errText, run, okAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("sink: record sync of %s/%s/%s: %w", r.Source, r.Account, r.Stream, err)
	}
	return nil
}

// BeginRun implements Sink.
func (c *core) BeginRun(ctx context.Context, trigger, connection, mode string) (RunID, error) {
	mode = cmp.Or(mode, ModeIncremental)
	if mode != ModeIncremental && mode != ModeFull {
		return 0, fmt.Errorf("sink: begin run: unknown mode %q", mode)
	}
	var id int64
	err := c.w.QueryRowxContext(ctx, c.q(`INSERT INTO sync_runs (trigger, started_at, status, worker, connection, mode)
VALUES (?, ?, 'running', ?, ?, ?) RETURNING id`), trigger, c.ts(c.clock()), nullString(c.worker), nullString(connection), mode).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("sink: begin run: %w", err)
	}
	return RunID(id), nil
}

// FinishConnection implements Sink.
func (c *core) FinishConnection(ctx context.Context, run RunID, r ConnectionRun) error {
	mode := cmp.Or(r.Mode, ModeIncremental)
	switch {
	case r.Connection == "" || r.Source == "":
		return fmt.Errorf("sink: connection result without connection or source: %q/%q", r.Connection, r.Source)
	case r.Status != RunOK && r.Status != RunFailed && r.Status != RunCancelled:
		return fmt.Errorf("sink: connection %s: status %q is not one a run of it can end with", r.Connection, r.Status)
	case mode != ModeIncremental && mode != ModeFull:
		return fmt.Errorf("sink: connection %s: unknown mode %q", r.Connection, mode)
	}
	now := c.clock()
	started := r.Started
	if started.IsZero() {
		started = now
	}
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, c.q(`SELECT count(*) FROM sync_runs WHERE id = ?`), run); err != nil {
			return err
		}
		if n == 0 {
			return ErrUnknownRun
		}
		_, err := tx.ExecContext(ctx, c.q(`INSERT INTO sync_run_connections
    (run_id, connection, source, mode, status, started_at, finished_at,
     accounts_ok, accounts_failed, accounts_restricted, leads_written, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, connection) DO UPDATE SET
    source = excluded.source, mode = excluded.mode, status = excluded.status,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    accounts_ok = excluded.accounts_ok, accounts_failed = excluded.accounts_failed,
    accounts_restricted = excluded.accounts_restricted, leads_written = excluded.leads_written,
    error = excluded.error`),
			run, r.Connection, r.Source, mode, r.Status, c.ts(started), c.ts(now), r.Stats.AccountsOK,
			r.Stats.AccountsFailed, r.Stats.AccountsRestricted, r.Stats.LeadsWritten, errorText(r.Err))
		return err
	})
	if err != nil {
		return fmt.Errorf("sink: finish connection %s of run %d: %w", r.Connection, run, err)
	}
	return nil
}

// ConnectionRuns implements Sink. The last run is the one that finished last: with several
// workers on one PostgreSQL, each records its own share of a tick.
func (c *core) ConnectionRuns(ctx context.Context) ([]ConnectionStatus, error) {
	var rows []struct {
		Run        int64    `db:"run_id"`
		Connection string   `db:"connection"`
		Source     string   `db:"source"`
		Trigger    string   `db:"trigger"`
		Mode       string   `db:"mode"`
		Status     string   `db:"status"`
		StartedAt  nullTime `db:"started_at"`
		FinishedAt nullTime `db:"finished_at"`
		OK         int      `db:"accounts_ok"`
		Failed     int      `db:"accounts_failed"`
		Restricted int      `db:"accounts_restricted"`
		Leads      int64    `db:"leads_written"`
		Error      string   `db:"error"`
		LastOKAt   nullTime `db:"last_ok_at"`
	}
	err := c.r.SelectContext(ctx, &rows, `SELECT run_id, connection, source, trigger, mode, status, started_at,
    finished_at, accounts_ok, accounts_failed, accounts_restricted, leads_written, error, last_ok_at
FROM (
    SELECT rc.run_id, rc.connection, rc.source, r.trigger, rc.mode, rc.status, rc.started_at, rc.finished_at,
           rc.accounts_ok, rc.accounts_failed, rc.accounts_restricted, rc.leads_written,
           COALESCE(rc.error, '') AS error,
           row_number() OVER (PARTITION BY rc.connection ORDER BY rc.finished_at DESC, rc.run_id DESC) AS k,
           max(CASE WHEN rc.status = 'ok' THEN rc.finished_at END) OVER (PARTITION BY rc.connection) AS last_ok_at
    FROM sync_run_connections rc
    JOIN sync_runs r ON r.id = rc.run_id
) lr
WHERE k = 1
ORDER BY connection`)
	if err != nil {
		return nil, fmt.Errorf("sink: connection runs: %w", err)
	}
	out := make([]ConnectionStatus, len(rows))
	for i, r := range rows {
		out[i] = ConnectionStatus{Connection: r.Connection, Source: r.Source, Run: RunID(r.Run), Trigger: r.Trigger,
			Mode: r.Mode, Status: r.Status, StartedAt: r.StartedAt.Time, FinishedAt: r.FinishedAt.Time,
			Stats: RunStats{AccountsOK: r.OK, AccountsFailed: r.Failed, AccountsRestricted: r.Restricted, LeadsWritten: r.Leads},
			Error: r.Error, LastOKAt: r.LastOKAt.Time}
	}
	return out, nil
}

// FinishRun implements Sink. It also drops the run's full-pass bookkeeping.
func (c *core) FinishRun(ctx context.Context, run RunID, status string, stats RunStats, runErr error) error {
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, c.q(`UPDATE sync_runs SET
    finished_at = ?, status = ?, accounts_ok = ?, accounts_failed = ?, accounts_restricted = ?,
    leads_written = ?, requests = ?, throttled = ?, records_rejected = ?, error = ?
WHERE id = ?`),
			c.ts(c.clock()), status, stats.AccountsOK, stats.AccountsFailed, stats.AccountsRestricted,
			stats.LeadsWritten, stats.Requests, stats.Throttled, stats.RecordsRejected, errorText(runErr), run)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrUnknownRun
		}
		_, err = tx.ExecContext(ctx, c.q(`DELETE FROM full_pass_seen WHERE run_id = ?`), run)
		return err
	})
	if err != nil {
		return fmt.Errorf("sink: finish run %d: %w", run, err)
	}
	return nil
}

// abandonedError is the error of a run closed by CloseAbandonedRuns.
const abandonedError = "abandoned: the process running it ended before it could close the run"

// closeRuns marks as abandoned the running runs that match where, and drops the full-pass
// bookkeeping of every run that is over.
func (c *core) closeRuns(ctx context.Context, where string, args ...any) (int64, error) {
	var n int64
	err := c.tx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, c.q(`UPDATE sync_runs SET status = 'abandoned', error = COALESCE(error, ?)
WHERE status = 'running' AND (`+where+`)`), append([]any{abandonedError}, args...)...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM full_pass_seen
WHERE run_id IN (SELECT id FROM sync_runs WHERE status <> 'running')`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sink: close abandoned runs: %w", err)
	}
	if n > 0 {
		c.log.Warn("sink: closed runs left running by a process that ended", slog.Int64("runs", n))
	}
	return n, nil
}

// Status implements Sink.
func (c *core) Status(ctx context.Context) ([]AccountStatus, error) {
	var rows []struct {
		Source       string   `db:"source"`
		AccountID    string   `db:"account_id"`
		Name         string   `db:"name"`
		Access       string   `db:"access"`
		AccessReason string   `db:"access_reason"`
		LastSyncedAt nullTime `db:"last_synced_at"`
		LastError    string   `db:"last_error"`
		Leads        int64    `db:"leads"`
		LeaseOwner   string   `db:"lease_owner"`
		LeaseExpires nullTime `db:"lease_expires_at"`
		DoneBy       string   `db:"done_by"`
	}
	err := c.r.SelectContext(ctx, &rows, `SELECT a.source, a.account_id, a.name, a.access,
    COALESCE(a.access_reason, '') AS access_reason, a.last_synced_at,
    COALESCE(a.last_error, '') AS last_error,
    (SELECT count(*) FROM leads l
     WHERE l.source = a.source AND l.account_id = a.account_id AND l.deleted_at IS NULL) AS leads,
    COALESCE(al.owner, '') AS lease_owner, al.expires_at AS lease_expires_at,
    COALESCE(al.done_by, '') AS done_by
FROM accounts a
LEFT JOIN account_leases al ON al.source = a.source AND al.account_id = a.account_id
ORDER BY a.source, a.account_id`)
	if err != nil {
		return nil, fmt.Errorf("sink: status: %w", err)
	}
	var streams []struct {
		Source    string   `db:"source"`
		AccountID string   `db:"account_id"`
		Stream    string   `db:"stream"`
		Cursor    string   `db:"cursor"`
		Outcome   string   `db:"last_outcome"`
		Error     string   `db:"last_error"`
		OKAt      nullTime `db:"last_ok_at"`
	}
	if err := c.r.SelectContext(ctx, &streams, `SELECT source, account_id, stream, cursor,
    COALESCE(last_outcome, '') AS last_outcome, COALESCE(last_error, '') AS last_error, last_ok_at
FROM sync_state`); err != nil {
		return nil, fmt.Errorf("sink: status: %w", err)
	}
	type acct struct{ source, id string }
	byAccount := make(map[acct][]StreamStatus)
	for _, s := range streams {
		k := acct{s.Source, s.AccountID}
		byAccount[k] = append(byAccount[k], StreamStatus{Name: s.Stream, Cursor: sources.Cursor(s.Cursor),
			LastOutcome: s.Outcome, LastError: s.Error, LastSyncedAt: s.OKAt.Time})
	}
	out := make([]AccountStatus, len(rows))
	for i, r := range rows {
		st := byAccount[acct{r.Source, r.AccountID}]
		slices.SortFunc(st, func(a, b StreamStatus) int { return strings.Compare(a.Name, b.Name) })
		out[i] = AccountStatus{
			Source: r.Source, AccountID: r.AccountID, Name: r.Name, Access: r.Access,
			AccessReason: r.AccessReason, LastSyncedAt: r.LastSyncedAt.Time, LastError: r.LastError,
			Leads: r.Leads, Streams: st, LastSyncedBy: r.DoneBy,
		}
		// An expired lease is held by nobody.
		if r.LeaseOwner != "" && r.LeaseExpires.After(c.clock()) {
			out[i].LeaseOwner, out[i].LeaseExpiresAt = r.LeaseOwner, r.LeaseExpires.Time
		}
	}
	return out, nil
}
