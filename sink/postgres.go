package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// Postgres is the shared warehouse: the tables live in the first schema of the URL's
// search_path (the user's default schema without one). Page writes use pgx directly (one
// array-bound upsert per table per page, pipelined with the cursor); the rest goes through
// sqlx.
type Postgres struct {
	*core
	pool  *pgxpool.Pool
	sqlDB *sql.DB
	live  liveness
}

var _ Sink = (*Postgres)(nil)

func openPostgres(ctx context.Context, dsn string, opts Options, mode migrateMode) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("sink: invalid PostgreSQL URL")
	}
	// The migration lock holds one connection while goose uses another.
	cfg.MaxConns = max(opts.MaxConns, 2)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sink: connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sink: connect to PostgreSQL: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	db := sqlx.NewDb(sqlDB, "pgx")
	p := &Postgres{
		core: &core{
			dialect: DialectPostgres,
			w:       db,
			r:       db,
			now:     opts.Now,
			log:     opts.Logger,
			ts:      postgresTS,
			worker:  opts.Worker,
			lease:   opts.LeaseDuration,
		},
		pool:  pool,
		sqlDB: sqlDB,
		live:  liveness{cfg: cfg.ConnConfig.Copy(), worker: opts.Worker, log: opts.Logger},
	}
	if mode == modeMigrate {
		if err := createSchema(ctx, pool, SchemaOf(dsn)); err != nil {
			p.Close()
			return nil, err
		}
	}
	if p.migrations, err = newMigrations(DialectPostgres, sqlDB, "", opts.Logger); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.migrations.Prepare(ctx, mode); err != nil {
		p.Close()
		return nil, err
	}
	if opts.Worker != "" && mode != modeNone {
		if err := p.live.hold(ctx); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Close implements Sink.
func (p *Postgres) Close() error {
	err := p.sqlDB.Close()
	p.pool.Close()
	p.live.close()
	return err
}

// A worker's liveness is a session advisory lock that its process holds on a connection of
// its own: PostgreSQL frees it when the process (or its connection) dies, so a run whose
// worker holds no such lock cannot still be running. A worker whose connection dropped
// takes the lock again at its next run; in between, it may look dead, and a run it closes
// later overwrites the "abandoned" mark.
type liveness struct {
	cfg    *pgx.ConnConfig
	worker string
	log    *slog.Logger

	mu   sync.Mutex
	conn *pgx.Conn
	held bool // false when another live process uses the same worker id
}

// workerLockSpace is the first key of the liveness locks; the second hashes the schema and
// the worker id.
const workerLockSpace = 1280527191

// hold makes sure the liveness lock is held, reconnecting if its connection is gone.
func (l *liveness) hold(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		if l.conn.Ping(ctx) == nil {
			return nil
		}
		l.conn.Close(ctx) //nolint:errcheck // the connection is already broken
		l.conn, l.held = nil, false
	}
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return fmt.Errorf("sink: worker liveness: %w", err)
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema() || '/' || $2))`,
		int32(workerLockSpace), l.worker).Scan(&held); err != nil {
		conn.Close(ctx) //nolint:errcheck // the error above says why
		return fmt.Errorf("sink: worker liveness: %w", err)
	}
	if !held {
		l.log.Warn("sink: another live process uses this worker id; worker ids must be unique",
			slog.String("worker", l.worker))
	}
	l.conn, l.held = conn, held
	return nil
}

func (l *liveness) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.conn.Close(ctx) //nolint:errcheck // closing the session frees the lock
		l.conn = nil
	}
}

// BeginRun implements Sink, first taking back the worker's liveness lock if its connection
// dropped.
func (p *Postgres) BeginRun(ctx context.Context, trigger, connection, mode string) (RunID, error) {
	if p.worker != "" {
		if err := p.live.hold(ctx); err != nil {
			return 0, fmt.Errorf("sink: begin run: %w", err)
		}
	}
	return p.core.BeginRun(ctx, trigger, connection, mode)
}

// CloseAbandonedRuns implements Sink: a running run is abandoned when its worker's liveness
// lock is free, when it has no worker (a single writer's), or when it is this worker's own
// (its process has just started, as the only live one with its id).
func (p *Postgres) CloseAbandonedRuns(ctx context.Context) (int64, error) {
	mine := ""
	if p.worker != "" {
		if err := p.live.hold(ctx); err != nil {
			return 0, fmt.Errorf("sink: close abandoned runs: %w", err)
		}
		p.live.mu.Lock()
		if p.live.held {
			mine = p.worker
		}
		p.live.mu.Unlock()
	}
	return p.closeRuns(ctx, `worker IS NULL OR worker = ? OR NOT EXISTS (SELECT 1 FROM pg_locks k
    WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
      AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND k.classid = `+strconv.Itoa(workerLockSpace)+`
      AND k.objid = hashtext(current_schema() || '/' || sync_runs.worker)::oid)`, mine)
}

// Pool is the underlying pgx pool, for callers that share the connection (tests, tools).
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

const pgSeenSQL = `INSERT INTO full_pass_seen (source, account_id, stream, run_id, lead_id)
SELECT $1, $2, $3, $4, unnest($5::text[])
ON CONFLICT DO NOTHING`

// WritePage implements Sink: BEGIN, one pipelined batch (fence, account, the leads' upsert
// bound as one array per column, seen ids, quarantined records, the counts' upsert, cursor),
// COMMIT.
func (p *Postgres) WritePage(ctx context.Context, w PageWrite) (WriteResult, error) {
	return p.commitPage(ctx, w, p.writePage)
}

func (p *Postgres) writePage(ctx context.Context, pg page) (WriteResult, error) {
	w, leads, rejects := pg.w, pg.leads, pg.rejects
	now := storedTime(p.clock())
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return WriteResult{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	b := &pgx.Batch{}
	if p.worker != "" {
		// The lease fence rides first in the batch: no extra round trip.
		b.Queue(sqlFence, w.Source, w.Account)
	}
	b.Queue(p.q(sqlEnsureAccount), w.Source, w.Account, now)
	if len(leads) > 0 {
		b.Queue(leadsTable.pgSQL, leadsTable.pgArgs(leadRows(&w, now, leads))...)
		if w.FullPass {
			ids := make([]string, len(leads))
			for i := range leads {
				ids[i] = leads[i].ID
			}
			b.Queue(pgSeenSQL, w.Source, w.Account, w.Stream, int64(w.Run), ids)
		}
	}
	for _, r := range rejects {
		b.Queue(p.q(sqlInsertRejected), rejectArgs(w, r, now)...)
	}
	rejectedSeen := seenIDs(rejects)
	if w.FullPass && len(rejectedSeen) > 0 {
		b.Queue(pgSeenSQL, w.Source, w.Account, w.Stream, int64(w.Run), rejectedSeen)
	}
	if len(pg.counts) > 0 {
		b.Queue(countsTable.pgSQL, countsTable.pgArgs(countRows(&w, now, pg.counts))...)
	}
	for _, rb := range pg.batches {
		b.Queue(rb.pgSQL(), rb.pgArgs()...)
		if w.FullPass && softDeletes(rb) {
			b.Queue(pgSeenSQL, w.Source, w.Account, w.Stream, int64(w.Run), batchSeenIDs(rb, 0, rb.len()))
		}
	}
	b.Queue(p.q(sqlUpsertCursor), cursorArgs(w, now)...)

	var res WriteResult
	br := tx.SendBatch(ctx, b)
	err = func() error {
		defer br.Close()
		if p.worker != "" {
			var owner string
			var live bool
			err := br.QueryRow().Scan(&owner, &live)
			if err := p.fenceResult(w.Source, w.Account, owner, live, err); err != nil {
				return err
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		if len(leads) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				var rev int32
				if err := rows.Scan(&rev); err != nil {
					rows.Close()
					return err
				}
				if rev == 1 {
					res.Inserted++
				} else {
					res.Updated++
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if w.FullPass {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
		}
		for range rejects {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if w.FullPass && len(rejectedSeen) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if len(pg.counts) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, rb := range pg.batches {
			if rb.returnsRevision() {
				rows, err := br.Query()
				if err != nil {
					return err
				}
				before := res.Rows
				err = countRevisions(&res, rows)
				rows.Close()
				if err != nil {
					return err
				}
				res.RowsUnchanged += rb.len() - (res.Rows - before)
			} else {
				if _, err := br.Exec(); err != nil {
					return err
				}
				res.Rows += rb.len()
			}
			if w.FullPass && softDeletes(rb) {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return WriteResult{}, err
	}
	if p.afterChunk != nil {
		if err := p.afterChunk(0); err != nil {
			return WriteResult{}, err
		}
	}
	res.Unchanged = len(leads) - res.Inserted - res.Updated
	res.Rejected = len(rejects)
	res.Counts = len(pg.counts)
	if err := tx.Commit(ctx); err != nil {
		return WriteResult{}, err
	}
	return res, nil
}

// GrantAnalyst lets an existing role read what holds no lead PII in this warehouse's schema
// (AnalystRelations), and with opts.PII also leads_pii (AnalystPIIRelations): never leads,
// leads_current, rejected_records or webhook_inbox, so leads.email stays out of reach of a
// role without PII, and HIPAA leads' PII out of reach of every analyst role. It grants, never
// revokes.
// The SQL it runs is AnalystGrantSQL.
func (p *Postgres) GrantAnalyst(ctx context.Context, role string, opts GrantOptions) error {
	var schema string
	if err := p.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("sink: grant analyst: %w", err)
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("sink: grant analyst: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for _, stmt := range AnalystGrantSQL(schema, role, opts) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("sink: grant analyst %q: %w", role, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("sink: grant analyst %q: %w", role, err)
	}
	return nil
}

// GrantOptions says what GrantAnalyst grants beyond the PII-free relations.
type GrantOptions struct {
	// PII also grants leads_pii: the PII of leads that are not HIPAA-protected.
	PII bool
}

// AnalystRelations are the tables and views without lead PII, which every analyst role may
// read. leads_deidentified is deprecated (it reads leads_shareable).
var AnalystRelations = []string{
	"accounts", "restricted_fields", "lead_daily_counts", "sync_runs", "sync_run_streams", "sync_run_connections", "sync_state",
	"leads_shareable", "leads_deidentified", "lead_counts_by_day", "lead_counts_by_week", "stream_freshness",
	"deals_shareable", "opportunity_stage_history", "deal_stage_intervals", "crm_dictionary", "pipeline_stages",
	"custom_fields", "crm_users", "lost_reasons", "submissions_shareable", "campaign_cycles",
	"lead_funnel", "campaign_cost_per_lead", "lead_first_look", "deal_time_in_stage",
}

// AnalystPIIRelations are what an analyst role trusted with PII may read besides.
var AnalystPIIRelations = []string{"leads_pii", "custom_field_values"}

// AnalystGrants are the relations GrantAnalyst grants with opts.
func AnalystGrants(opts GrantOptions) []string {
	if opts.PII {
		return slices.Concat(AnalystRelations, AnalystPIIRelations)
	}
	return slices.Clone(AnalystRelations)
}

// AnalystGrantSQL is the SQL GrantAnalyst runs, for DBAs who prefer to run it themselves.
func AnalystGrantSQL(schema, role string, opts GrantOptions) []string {
	s, r := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{role}.Sanitize()
	out := []string{fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", s, r)}
	for _, v := range AnalystGrants(opts) {
		out = append(out, fmt.Sprintf("GRANT SELECT ON %s.%s TO %s", s, v, r))
	}
	return out
}

// SchemaOf is the schema a PostgreSQL URL puts the warehouse in: the first of its
// search_path, else public (the role's usual default).
func SchemaOf(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		if sp := u.Query().Get("search_path"); sp != "" {
			first, _, _ := strings.Cut(sp, ",")
			return strings.Trim(strings.TrimSpace(first), `"`)
		}
	}
	return "public"
}

// createSchema creates the warehouse's schema when it does not exist (warehouse.schema, or a
// search_path naming a new one), so that the first migration has somewhere to go. An existing
// schema needs no CREATE privilege on the database.
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("sink: look for schema %s: %w", schema, err)
	}
	if exists {
		return nil
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("sink: create schema %s: %w", schema, err)
	}
	return nil
}
