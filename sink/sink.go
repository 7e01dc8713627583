// Package sink is the warehouse: the leads, the daily counts, the accounts, the run ledger
// (per run, and per stream of each account in each run) and the cursor of each stream of each
// account, on SQLite (the embedded default) or PostgreSQL. A page of a stream (its leads, its
// counts, its quarantined records) and the stream's cursor are committed in one transaction,
// so a crash at any instant loses and duplicates nothing. Each stream's leads carry its name:
// a full pass of one stream never deletes another's. The tables the pages upsert are
// described once (tables.go), and both dialects' statements are built from that.
package sink

import (
	"context"
	"time"

	"github.com/leadsync/leadsync/sources"
)

// RunID identifies a row of sync_runs.
type RunID int64

// Run triggers (the sync_runs.trigger column).
const (
	TriggerCron     = "cron"
	TriggerOnce     = "once"
	TriggerBackfill = "backfill"
)

// Run statuses (the sync_runs.status column).
const (
	RunRunning   = "running"
	RunOK        = "ok"
	RunFailed    = "failed"    // at least one account failed
	RunCancelled = "cancelled" // stopped by a signal
	// RunAbandoned is a run left running by a process that ended before it could close it
	// (a crash, or a database outage at the close); see CloseAbandonedRuns.
	RunAbandoned = "abandoned"
)

// Run modes (the sync_runs.mode and sync_run_connections.mode columns).
const (
	ModeIncremental = "incremental"
	ModeFull        = "full" // a full pass: everything re-read, then what was not seen soft-deleted
)

// Stream outcomes (StreamResult.Outcome, the sync_run_streams.outcome column).
const (
	OutcomeOK         = "ok"
	OutcomeFailed     = "failed"
	OutcomeRestricted = "restricted"
	OutcomeCancelled  = "cancelled"
	// OutcomeMissingScope: the grant lacks the OAuth scope of the stream's endpoint
	// (*sources.MissingScopeError); the error names the fix.
	OutcomeMissingScope = "missing_scope"
)

// PageWrite is one page of a stream to commit: its rows and the cursor that resumes after
// it, stored under (Source, Account, Stream).
type PageWrite struct {
	Run     RunID
	Source  string
	Account string
	// Stream names the stream (required); its leads are stored with it, and only a full
	// pass of the same stream can delete them.
	Stream string
	Leads  []sources.Lead
	// Rejected are quarantined in rejected_records in the same transaction.
	Rejected []sources.Rejected
	// Counts are upserted into lead_daily_counts in the same transaction.
	Counts []sources.DailyCount
	// The lifecycle rows (deals, crm_dictionary, submissions, campaign_cycles), upserted in
	// the same transaction; the deals' stage history is appended by the database.
	Deals       []sources.Deal
	Dictionary  []sources.DictEntry
	Submissions []sources.Submission
	Cycles      []sources.CampaignCycle
	Next        sources.Cursor
	// FullPass records the leads (and the deals, dictionary entries and submissions) as
	// seen by this run, so FinishFullPass can soft-delete the ones a complete full pass of
	// the stream did not see.
	FullPass bool
}

// StreamResult is how one stream of an account ended in a run, for the ledger
// (sync_run_streams) and the stream's row of sync_state.
type StreamResult struct {
	Source, Account, Stream string
	// Outcome is the worker's: "ok", "failed", "restricted" or "cancelled".
	Outcome string
	Written int64 // rows inserted or updated
	Err     error // the failure, or the *sources.RestrictedError; nil when ok
	Started time.Time
}

// StreamStatus is one stream of an account in `leadsync status`.
type StreamStatus struct {
	Name         string
	Cursor       sources.Cursor
	LastOutcome  string    // "" when never synced
	LastError    string    `json:",omitempty"`
	LastSyncedAt time.Time `json:",omitzero"` // last ok sync
}

// WriteResult says what a page commit changed. A lead repeated within one page is written
// once (the last copy wins) and counted once.
type WriteResult struct {
	Inserted  int // new leads
	Updated   int // leads whose content changed
	Unchanged int // leads already stored as they are
	Rejected  int // records quarantined in rejected_records
	Counts    int // daily counts upserted
	// Rows are the lifecycle rows inserted or updated (campaign cycles: upserted), and
	// RowsUnchanged those already stored as they are.
	Rows, RowsUnchanged int
}

// RunStats are the per-run counts of the ledger.
type RunStats struct {
	AccountsOK         int
	AccountsFailed     int
	AccountsRestricted int
	LeadsWritten       int64 // inserted + updated
	Requests           int64
	Throttled          int64 // 429 answers
	RecordsRejected    int64 // records quarantined in rejected_records
}

// ConnectionRun is how one connection's part of a run ended: its sync_run_connections row.
type ConnectionRun struct {
	Connection string
	Source     string
	Mode       string // ModeIncremental or ModeFull
	// Status is RunOK, RunFailed (its account listing or one of its accounts failed) or
	// RunCancelled.
	Status  string
	Started time.Time
	// Stats: the accounts by outcome and the leads written (the rest is the run's).
	Stats RunStats
	Err   error // the connection's first failure; nil when none
}

// ConnectionStatus is a connection's last run and its last ok one, for `leadsync status`.
type ConnectionStatus struct {
	Connection string
	Source     string
	Run        RunID // the last run
	Trigger    string
	Mode       string
	Status     string
	StartedAt  time.Time
	FinishedAt time.Time
	Stats      RunStats // AccountsOK, AccountsFailed, AccountsRestricted, LeadsWritten
	Error      string
	// LastOKAt is when its last ok run finished (zero if none).
	LastOKAt time.Time
}

// AccountStatus is one line of `leadsync status`.
type AccountStatus struct {
	Source       string
	AccountID    string
	Name         string
	Access       string
	AccessReason string
	LastSyncedAt time.Time // zero if never
	LastError    string
	Leads        int64 // not deleted
	// Streams are the account's streams that have a row in sync_state, by name.
	Streams []StreamStatus
	// LeaseOwner is the worker syncing the account now ("" if none; multi-worker
	// PostgreSQL only), until LeaseExpiresAt unless it heartbeats.
	LeaseOwner     string    `json:",omitempty"`
	LeaseExpiresAt time.Time `json:",omitzero"`
	// LastSyncedBy is the worker whose sync of the account ended last.
	LastSyncedBy string `json:",omitempty"`
}

// Sink is the warehouse. Implementations are safe for concurrent use.
type Sink interface {
	// Cursor returns the stored cursor of an account's stream ("" if none).
	Cursor(ctx context.Context, source, account, stream string) (sources.Cursor, error)
	// WritePage upserts the leads on (source, account_id, lead_id), rewriting only rows
	// whose content changed, upserts the counts, and advances the stream's cursor: all in
	// one transaction.
	WritePage(ctx context.Context, w PageWrite) (WriteResult, error)
	// FinishFullPass soft-deletes the stream's leads that the full pass of run did not
	// see. Call it only after the pass completed without error.
	FinishFullPass(ctx context.Context, run RunID, source, account, stream string) (deleted int64, err error)
	// FullPassMissing lists, sorted, the leads FinishFullPass would soft-delete now, for a
	// source that confirms them first (sources.Confirmer).
	FullPassMissing(ctx context.Context, run RunID, source, account, stream string) ([]string, error)
	// StreamSynced records how a stream of an account ended in run: a sync_run_streams
	// row, and the outcome on the stream's sync_state row (its cursor is left alone).
	StreamSynced(ctx context.Context, run RunID, r StreamResult) error

	// UpsertAccount records an account as listed by its source.
	UpsertAccount(ctx context.Context, acct sources.Account) error
	// MarkRestricted records a 403: the account's access state and its restricted_fields
	// tags. The cursors are left where they are.
	MarkRestricted(ctx context.Context, run RunID, r *sources.RestrictedError) error
	// AccountSynced records the outcome of an account's sync: on success it sets access
	// to ok, clears restricted_fields and last_error and stamps last_synced_at; on failure
	// it records last_error only.
	AccountSynced(ctx context.Context, run RunID, source, account string, syncErr error) error

	// BeginRun opens a sync_runs row: connection is the one connection the run covers (""
	// when it covers several), mode ModeIncremental or ModeFull.
	BeginRun(ctx context.Context, trigger, connection, mode string) (RunID, error)
	// FinishConnection records how one connection's part of run ended (a
	// sync_run_connections row); a second result of the same connection replaces the first.
	FinishConnection(ctx context.Context, run RunID, r ConnectionRun) error
	// FinishRun closes it with its counts, its status, and the first error if any.
	FinishRun(ctx context.Context, run RunID, status string, stats RunStats, runErr error) error
	// CloseAbandonedRuns marks RunAbandoned the runs still "running" that no live process
	// can be running, and returns how many. Call it at start, before this process begins a
	// run: its own earlier runs count as abandoned. On SQLite it takes the writer lock
	// (ErrSingleWriter if another process holds it) and closes every running run; on
	// PostgreSQL it closes the runs of this worker and of workers whose process is gone.
	CloseAbandonedRuns(ctx context.Context) (int64, error)

	// Status lists every account with its freshness, for `leadsync status`.
	Status(ctx context.Context) ([]AccountStatus, error)
	// ConnectionRuns is, per connection that ever finished a run, its last run and when its
	// last ok run finished, by connection name.
	ConnectionRuns(ctx context.Context) ([]ConnectionStatus, error)

	Close() error
}
