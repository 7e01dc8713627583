package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // the sqlite3 driver

	"github.com/leadsync/leadsync/internal/dburl"
	"github.com/leadsync/leadsync/internal/migrate"
	"github.com/leadsync/leadsync/sources"
)

// SQLite is the embedded warehouse: one file, WAL, and one writer connection (the process
// is the only writer); reads use a small pool of read-only connections.
type SQLite struct {
	*core
	path string

	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt // multi-row statements by kind and row count

	writer writerLock // see LockWriter
}

type stmtKey struct {
	seen bool // full_pass_seen insert rather than leads upsert
	rows int
}

// sqliteChunk is the most rows one upsert statement carries: 4 shared parameters plus 15
// per row stay well under SQLite's 32766-variable limit, and larger statements gain little.
const sqliteChunk = 200

var _ Sink = (*SQLite)(nil)

func openSQLite(ctx context.Context, u dburl.URL, opts Options, mode migrateMode) (*SQLite, error) {
	path := u.Path
	var file *os.File
	if path != ":memory:" {
		var err error
		if file, err = openDBFile(path, opts.Logger); err != nil {
			return nil, err
		}
	}
	closeFile := func() {
		if file != nil {
			file.Close()
		}
	}
	params := url.Values{}
	params.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	params.Set("_foreign_keys", "on")
	params.Set("_synchronous", "NORMAL")
	params.Set("_query_only", "true")
	rdsn, err := u.SQLiteDSN(params)
	if err != nil {
		closeFile()
		return nil, fmt.Errorf("sink: %w", err)
	}
	params.Del("_query_only")
	params.Set("_journal_mode", "WAL")
	// Writes take the lock at BEGIN, so a transaction never fails half-way to upgrade it.
	params.Set("_txlock", "immediate")
	wdsn, err := u.SQLiteDSN(params)
	if err != nil {
		closeFile()
		return nil, fmt.Errorf("sink: %w", err)
	}

	wdb, err := sql.Open("sqlite3", wdsn)
	if err != nil {
		closeFile()
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		closeFile()
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	rdb, err := sql.Open("sqlite3", rdsn)
	if err != nil {
		wdb.Close()
		closeFile()
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(4)

	s := &SQLite{
		core: &core{
			dialect: DialectSQLite,
			w:       sqlx.NewDb(wdb, "sqlite3"),
			r:       sqlx.NewDb(rdb, "sqlite3"),
			now:     opts.Now,
			log:     opts.Logger,
			ts:      sqliteTS,
		},
		path:   path,
		stmts:  make(map[stmtKey]*sql.Stmt),
		writer: writerLock{f: file},
	}
	if s.migrations, err = newMigrations(DialectSQLite, wdb, migrate.LockFile(path), s.log); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrations.Prepare(ctx, mode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close implements Sink.
func (s *SQLite) Close() error {
	s.mu.Lock()
	for k, st := range s.stmts {
		st.Close()
		delete(s.stmts, k)
	}
	s.mu.Unlock()
	err := errors.Join(s.w.Close(), s.r.Close())
	s.writer.close()
	return err
}

// stmt returns the cached prepared statement for a batch of rows.
func (s *SQLite) stmt(ctx context.Context, k stmtKey) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[k]; ok {
		return st, nil
	}
	var q string
	if k.seen {
		q = sqliteSeenSQL(k.rows)
	} else {
		q = sqliteUpsertSQL(k.rows)
	}
	st, err := s.w.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[k] = st
	return st, nil
}

// leadParams is how many parameters each lead adds to an upsert.
const leadParams = 15

// sqliteUpsertSQL is a multi-row upsert of n leads. ?1..?4 are shared by every row
// (source, account, now, run); numbered parameters let rows reuse them.
func sqliteUpsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO leads AS l (source, account_id, first_seen_at, last_synced_at, sync_run_id,
    lead_id, kind, status, first_name, last_name, email, phone, company, channel, campaign,
    tags, created_at, updated_at, hipaa, raw) VALUES `)
	p := 5
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?1,?2,?3,?3,?4")
		for range leadParams {
			b.WriteString(",?")
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
	}
	b.WriteString(leadUpsertTail)
	return b.String()
}

// sqliteSeenSQL records n lead ids as seen by a full pass: ?1..?3 are source, account, run.
func sqliteSeenSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO full_pass_seen (source, account_id, run_id, lead_id) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?1,?2,?3,?")
		b.WriteString(strconv.Itoa(4 + i))
		b.WriteByte(')')
	}
	b.WriteString(` ON CONFLICT DO NOTHING`)
	return b.String()
}

// WritePage implements Sink: one IMMEDIATE transaction, multi-row upserts of up to
// sqliteChunk leads, the seen ids of a full pass, the quarantined records, and the cursor.
func (s *SQLite) WritePage(ctx context.Context, w PageWrite) (WriteResult, error) {
	return s.commitPage(ctx, w, s.writePage)
}

func (s *SQLite) writePage(ctx context.Context, w PageWrite, leads []sources.Lead, rejects []rejection) (WriteResult, error) {
	now := s.ts(s.clock())
	// Prepare first: the one connection is the transaction's once it begins.
	stmts := make(map[stmtKey]*sql.Stmt, 4)
	for _, n := range []int{min(len(leads), sqliteChunk), len(leads) % sqliteChunk} {
		for _, seen := range []bool{false, w.FullPass} {
			k := stmtKey{seen: seen, rows: n}
			if _, ok := stmts[k]; ok || n == 0 {
				continue
			}
			st, err := s.stmt(ctx, k)
			if err != nil {
				return WriteResult{}, err
			}
			stmts[k] = st
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return WriteResult{}, err
	}
	// No lease fence: SQLite has one writer process, held by its writer lock (LockWriter).
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, sqlEnsureAccount, w.Source, w.Account, now); err != nil {
		return WriteResult{}, err
	}

	var res WriteResult
	args := make([]any, 0, 4+leadParams*min(len(leads), sqliteChunk))
	for chunk := 0; chunk*sqliteChunk < len(leads); chunk++ {
		part := leads[chunk*sqliteChunk : min((chunk+1)*sqliteChunk, len(leads))]
		st := stmts[stmtKey{rows: len(part)}]
		args = append(args[:0], w.Source, w.Account, now, int64(w.Run))
		for i := range part {
			args = appendLeadArgs(args, &part[i])
		}
		ins, upd, err := scanRevisions(tx.StmtContext(ctx, st).QueryContext(ctx, args...))
		if err != nil {
			return WriteResult{}, err
		}
		res.Inserted += ins
		res.Updated += upd
		if w.FullPass {
			st := stmts[stmtKey{seen: true, rows: len(part)}]
			args = append(args[:0], w.Source, w.Account, int64(w.Run))
			for i := range part {
				args = append(args, part[i].ID)
			}
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
				return WriteResult{}, err
			}
		}
		if s.afterChunk != nil {
			if err := s.afterChunk(chunk); err != nil {
				return WriteResult{}, err
			}
		}
	}
	res.Unchanged = len(leads) - res.Inserted - res.Updated
	if err := s.writeRejects(ctx, tx, w, rejects, now); err != nil {
		return WriteResult{}, err
	}
	res.Rejected = len(rejects)
	if _, err := tx.ExecContext(ctx, sqlUpsertCursor, w.Source, w.Account, string(w.Next), now, int64(w.Run)); err != nil {
		return WriteResult{}, err
	}
	if err := tx.Commit(); err != nil {
		return WriteResult{}, err
	}
	return res, nil
}

// scanRevisions counts the rows an upsert wrote: revision 1 is a new lead.
func scanRevisions(rows *sql.Rows, err error) (inserted, updated int, _ error) {
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var rev int64
		if err := rows.Scan(&rev); err != nil {
			return 0, 0, err
		}
		if rev == 1 {
			inserted++
		} else {
			updated++
		}
	}
	return inserted, updated, rows.Err()
}

// appendLeadArgs appends a lead's leadParams parameters, in sqliteUpsertSQL's column order.
func appendLeadArgs(args []any, l *sources.Lead) []any {
	var raw any
	if len(l.Raw) > 0 {
		raw = string(l.Raw)
	}
	return append(args, l.ID, l.Kind, nullString(l.Status),
		nullString(l.FirstName), nullString(l.LastName), nullString(l.Email), nullString(l.Phone),
		nullString(l.Company), nullString(l.Channel), nullString(l.Campaign),
		tagsJSON(l.Tags), sqliteTS(l.CreatedAt), sqliteTS(l.UpdatedAt), l.HIPAA, raw)
}

// nullString stores "" as NULL, so analysts test one thing (IS NULL) for "absent".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// tagsJSON encodes tags as a JSON array; no tags is [] (never NULL).
func tagsJSON(tags []string) string {
	if len(tags) == 0 {
		return "[]"
	}
	b, err := json.Marshal(tags)
	if err != nil { // strings always marshal
		return "[]"
	}
	return string(b)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
