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

// stmtKey names a cached multi-row statement.
type stmtKey struct {
	kind string // stmtSeen, or the upserted table's name
	rows int
}

const stmtSeen = "full_pass_seen"

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
	switch k.kind {
	case stmtSeen:
		q = sqliteSeenSQL(k.rows)
	case leadsTable.name:
		q = leadsTable.sqliteSQL(k.rows)
	case countsTable.name:
		q = countsTable.sqliteSQL(k.rows)
	default:
		return nil, fmt.Errorf("sink: no statement %q", k.kind)
	}
	st, err := s.w.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[k] = st
	return st, nil
}

// sqliteSeenSQL records n lead ids as seen by a full pass: ?1..?4 are source, account,
// stream, run.
func sqliteSeenSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO full_pass_seen (source, account_id, stream, run_id, lead_id) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?1,?2,?3,?4,?")
		b.WriteString(strconv.Itoa(5 + i))
		b.WriteByte(')')
	}
	b.WriteString(` ON CONFLICT DO NOTHING`)
	return b.String()
}

// chunkSizes are the row counts of the statements that write n rows in chunks of size.
func chunkSizes(n, size int) []int {
	if n == 0 {
		return nil
	}
	if n%size == 0 || n < size {
		return []int{min(n, size)}
	}
	return []int{size, n % size}
}

// WritePage implements Sink: one IMMEDIATE transaction with multi-row upserts of the leads
// (and the seen ids of a full pass), the quarantined records, the counts, and the cursor.
func (s *SQLite) WritePage(ctx context.Context, w PageWrite) (WriteResult, error) {
	return s.commitPage(ctx, w, s.writePage)
}

func (s *SQLite) writePage(ctx context.Context, p page) (WriteResult, error) {
	w, leads := p.w, p.leads
	now := s.clock()
	// Prepare first: the one connection is the transaction's once it begins.
	leadChunk, countChunk := leadsTable.sqliteChunk, countsTable.sqliteChunk
	stmts := make(map[stmtKey]*sql.Stmt, 6)
	var keys []stmtKey
	for _, n := range chunkSizes(len(leads), leadChunk) {
		keys = append(keys, stmtKey{leadsTable.name, n})
		if w.FullPass {
			keys = append(keys, stmtKey{stmtSeen, n})
		}
	}
	for _, n := range chunkSizes(len(p.counts), countChunk) {
		keys = append(keys, stmtKey{countsTable.name, n})
	}
	for _, k := range keys {
		st, err := s.stmt(ctx, k)
		if err != nil {
			return WriteResult{}, err
		}
		stmts[k] = st
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return WriteResult{}, err
	}
	// No lease fence: SQLite has one writer process, held by its writer lock (LockWriter).
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, sqlEnsureAccount, w.Source, w.Account, sqliteTS(now)); err != nil {
		return WriteResult{}, err
	}

	var res WriteResult
	chunk := 0
	afterChunk := func() error {
		chunk++
		if s.afterChunk != nil {
			return s.afterChunk(chunk - 1)
		}
		return nil
	}
	rows := leadRows(&w, now, leads)
	var args []any
	for start := 0; start < len(rows); start += leadChunk {
		part := rows[start:min(start+leadChunk, len(rows))]
		args = leadsTable.sqliteArgs(args[:0], part)
		ins, upd, err := scanRevisions(tx.StmtContext(ctx, stmts[stmtKey{leadsTable.name, len(part)}]).QueryContext(ctx, args...))
		if err != nil {
			return WriteResult{}, err
		}
		res.Inserted += ins
		res.Updated += upd
		if w.FullPass {
			args = append(args[:0], w.Source, w.Account, w.Stream, int64(w.Run))
			for i := range part {
				args = append(args, part[i].l.ID)
			}
			if _, err := tx.StmtContext(ctx, stmts[stmtKey{stmtSeen, len(part)}]).ExecContext(ctx, args...); err != nil {
				return WriteResult{}, err
			}
		}
		if err := afterChunk(); err != nil {
			return WriteResult{}, err
		}
	}
	res.Unchanged = len(leads) - res.Inserted - res.Updated
	for _, b := range p.batches {
		if err := s.writeBatch(ctx, tx, w, b, &res, afterChunk); err != nil {
			return WriteResult{}, err
		}
	}
	if err := s.writeRejects(ctx, tx, w, p.rejects, sqliteTS(now)); err != nil {
		return WriteResult{}, err
	}
	res.Rejected = len(p.rejects)
	counts := countRows(&w, now, p.counts)
	for start := 0; start < len(counts); start += countChunk {
		part := counts[start:min(start+countChunk, len(counts))]
		args = countsTable.sqliteArgs(args[:0], part)
		if _, err := tx.StmtContext(ctx, stmts[stmtKey{countsTable.name, len(part)}]).ExecContext(ctx, args...); err != nil {
			return WriteResult{}, err
		}
		if err := afterChunk(); err != nil {
			return WriteResult{}, err
		}
	}
	res.Counts = len(counts)
	if _, err := tx.ExecContext(ctx, sqlUpsertCursor, cursorArgs(w, sqliteTS(now))...); err != nil {
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

// writeBatch upserts a page's lifecycle rows in multi-row statements (and records them as
// seen by a full pass), in the page's transaction.
func (s *SQLite) writeBatch(ctx context.Context, tx *sql.Tx, w PageWrite, b rowBatch, res *WriteResult, afterChunk func() error) error {
	size := b.sqliteChunk()
	var args []any
	for start := 0; start < b.len(); start += size {
		end := min(start+size, b.len())
		args = b.sqliteArgs(args[:0], start, end)
		before := res.Rows
		if b.returnsRevision() {
			rows, err := tx.QueryContext(ctx, b.sqliteSQL(end-start), args...)
			if err != nil {
				return err
			}
			err = countRevisions(res, rows)
			rows.Close()
			if err != nil {
				return err
			}
		} else {
			if _, err := tx.ExecContext(ctx, b.sqliteSQL(end-start), args...); err != nil {
				return err
			}
			res.Rows += end - start
		}
		res.RowsUnchanged += end - start - (res.Rows - before)
		if w.FullPass && softDeletes(b) {
			args = append(args[:0], w.Source, w.Account, w.Stream, int64(w.Run))
			for _, id := range batchSeenIDs(b, start, end) {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, sqliteSeenSQL(end-start), args...); err != nil {
				return err
			}
		}
		if err := afterChunk(); err != nil {
			return err
		}
	}
	return nil
}
