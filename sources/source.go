// Package sources defines what every CRM source gives the worker: the accounts a grant can
// see, and each account's leads as pages with a resumable cursor. One package per vendor
// implements it (leadconnector, localiq, lacrm); the worker knows none of them by name.
package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"golang.org/x/oauth2"
)

// Vendor names, used as the `source` column in the warehouse and in config.
const (
	LeadConnector = "leadconnector"
	LocaliQ       = "localiq"
	LACRM         = "lacrm"
)

// Lead kinds (the `kind` column).
const (
	KindContact      = "contact"
	KindCall         = "call"
	KindForm         = "form"
	KindEmail        = "email"
	KindChat         = "chat"
	KindPipelineItem = "pipeline_item"
)

// Source is one vendor connection: a grant and the options it was configured with.
type Source interface {
	// Name is the vendor name (LeadConnector, LocaliQ or LACRM).
	Name() string
	// Accounts lists the accounts the grant can see: installed locations, advertisers, or
	// the single LACRM account.
	Accounts(ctx context.Context) iter.Seq2[Account, error]
	// Streams are what the source reads of each account, in the order the worker syncs
	// them. The list is fixed for the life of the Source.
	Streams() []Stream
	// Read pages one stream of an account from cur (the zero Cursor starts a backfill, or
	// a full pass when opts.Full is set). Each Page carries the cursor to resume after it.
	// A 403 ends the sequence with a *RestrictedError, which restricts this stream only.
	Read(ctx context.Context, acct Account, stream string, cur Cursor, opts ReadOptions) iter.Seq2[Page, error]
}

// Stream modes.
const (
	// Incremental streams resume from their cursor and read only what changed; a full pass
	// (ReadOptions.Full) re-reads everything and soft-deletes what it did not see.
	Incremental Mode = "incremental"
	// FullRefresh streams are read whole on every run, from an empty cursor. A stream
	// writing leads soft-deletes what a complete read did not see; one writing counts
	// overwrites the days it read.
	FullRefresh Mode = "full_refresh"
)

// Mode is how a stream is read from run to run.
type Mode string

// Warehouse tables a stream can write.
const (
	TableLeads       = "leads"             // Page.Leads (and Page.Rejected)
	TableDailyCounts = "lead_daily_counts" // Page.Counts
)

// Stream is one named listing of an account (e.g. LeadConnector "contacts", LocaliQ
// "daily_counts"), with its own cursor in sync_state.
type Stream struct {
	Name  string
	Mode  Mode
	Table string // TableLeads, TableDailyCounts, or a lifecycle table (TableDeals…)
}

// Confirmer is implemented by sources whose full pass alone cannot prove a lead gone: with
// page-number paging, a record deleted during the pass from a page already read pulls the
// rest one place forward, and the pass can miss a live lead at the next page boundary. Before
// the worker soft-deletes the leads a complete full pass of a stream did not see (missing,
// sorted), it reads Confirm's pages as part of the pass: they must hold every lead of missing
// that the vendor still has (they may hold others). Their Next cursors are ignored.
type Confirmer interface {
	Confirm(ctx context.Context, acct Account, stream string, missing []string) iter.Seq2[Page, error]
}

// ScopeNeeder is implemented by sources whose grant carries OAuth scopes. NeededScopes lists
// the scopes that reading stream needs, what it relies on included (listing the accounts,
// minting per-account tokens); nil when the connection has no grant (static tokens).
// `leadsync doctor` checks them against the scopes the vendor granted.
type ScopeNeeder interface {
	NeededScopes(stream string) []string
}

// ReadOptions tune one pass over a stream of an account.
type ReadOptions struct {
	// Full re-reads everything from the backfill start; the worker soft-deletes what a
	// completed full pass did not see.
	Full bool
	// Since overrides the configured backfill start for an empty cursor.
	Since time.Time
}

// Account is one client account under a grant.
type Account struct {
	Source         string `json:"source"`
	ID             string `json:"id"` // location id, GMAID, or LACRM account id
	Name           string `json:"name"`
	HIPAAProtected bool   `json:"hipaa_protected"`
	// Active is false for accounts the vendor reports inactive (LocaliQ active_state 0).
	Active bool `json:"active"`
	// Meta holds vendor details worth keeping (e.g. "active_state", "company_id").
	Meta map[string]string `json:"meta,omitempty"`
}

// Cursor is an opaque, serialized position in an account's lead stream. Each source defines
// its content (JSON); the sink stores it verbatim. The zero value means "from the start".
type Cursor string

// Page is one batch of a stream's rows and the cursor that resumes right after it. The sink commits
// the leads and Next in one transaction.
type Page struct {
	Leads []Lead
	Next  Cursor
	// Rejected are the page's records that could not be decoded into a Lead (no id, too
	// deeply nested, not an object): quarantined in rejected_records in the same
	// transaction as Leads, and counted, so one bad record never blocks the stream.
	Rejected []Rejected
	// Counts are the page's PII-free daily counts, for a stream writing TableDailyCounts.
	Counts []DailyCount
	// The rows of the lifecycle tables (lifecycle.go), for a stream writing one of them.
	Deals       []Deal
	Dictionary  []DictEntry
	Submissions []Submission
	Cycles      []CampaignCycle
}

// Rejected is one quarantined vendor record. Raw holds lead PII: it goes to the
// rejected_records table only, never to a log line or an error string.
type Rejected struct {
	// ID is the record's id when the source could read one ("" otherwise).
	ID string
	// Reason says why, without PII (e.g. "no id", "nested deeper than 512").
	Reason string
	// Raw is the record's bytes as the vendor sent them (possibly not valid JSON).
	Raw []byte
}

// LogValue keeps the raw record out of logs.
func (r Rejected) LogValue() slog.Value {
	return slog.GroupValue(slog.String("record", r.ID), slog.String("reason", r.Reason))
}

// String keeps the raw record out of %v.
func (r Rejected) String() string { return fmt.Sprintf("rejected record %q (%s)", r.ID, r.Reason) }

// Lead is the common lead model. Raw keeps the vendor JSON untouched.
type Lead struct {
	Source    string          `json:"source"`
	AccountID string          `json:"account_id"`
	ID        string          `json:"lead_id"`
	Kind      string          `json:"kind"`
	Status    string          `json:"status"`
	FirstName string          `json:"first_name"`
	LastName  string          `json:"last_name"`
	Email     string          `json:"email"`
	Phone     string          `json:"phone"`
	Company   string          `json:"company"`
	Channel   string          `json:"channel"`
	Campaign  string          `json:"campaign"`
	Tags      []string        `json:"tags"`
	CreatedAt time.Time       `json:"created_at"` // UTC
	UpdatedAt time.Time       `json:"updated_at"` // UTC
	Raw       json.RawMessage `json:"raw"`
	HIPAA     bool            `json:"hipaa"`
	// ReadAt is when the business first looked at the lead at the vendor (LocaliQ read_at),
	// and ArchivedAt when it archived it there (LocaliQ archived_at, the vendor's own soft
	// delete: the lead stays live in the warehouse). UTC; zero when the vendor has no such
	// time or does not say.
	ReadAt     time.Time `json:"read_at,omitzero"`
	ArchivedAt time.Time `json:"archived_at,omitzero"`
	// DurationSeconds is a call's length in whole seconds; 0 when unknown or not a call.
	DurationSeconds int64 `json:"duration_seconds,omitzero"`
}

// LogValue keeps PII out of logs: a lead logs as its ids only.
func (l Lead) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("source", l.Source),
		slog.String("account", l.AccountID),
		slog.String("lead", l.ID),
	)
}

// String keeps PII out of %v.
func (l Lead) String() string { return fmt.Sprintf("lead %s/%s/%s", l.Source, l.AccountID, l.ID) }

// DailyCount is a PII-free aggregate: how many leads of a kind arrived on a day.
type DailyCount struct {
	Day   time.Time `json:"day"` // midnight UTC
	Kind  string    `json:"kind"`
	Count int       `json:"count"`
}

// Access states of an account (the accounts.access column).
const (
	AccessOK              = "ok"
	AccessHIPAARestricted = "hipaa_restricted"
	AccessForbidden       = "forbidden"
)

// RestrictedError is a 403 from a lead endpoint: an expected state, not a failed sync.
type RestrictedError struct {
	Vendor    string
	AccountID string
	// Stream is the stream the vendor refused ("" when it refused the whole account).
	Stream string
	// HIPAA is true when the account is known to be HIPAA-protected.
	HIPAA bool
	// Message is the vendor's own message.
	Message string
	// Fields are the lead fields withheld (the restricted_fields tags).
	Fields []string
}

func (e *RestrictedError) Error() string {
	if e.Stream != "" {
		return fmt.Sprintf("%s: account %s stream %s restricted (%s): %s", e.Vendor, e.AccountID, e.Stream, e.Access(), e.Message)
	}
	return fmt.Sprintf("%s: account %s restricted (%s): %s", e.Vendor, e.AccountID, e.Access(), e.Message)
}

// Access is the accounts.access value this restriction maps to.
func (e *RestrictedError) Access() string {
	if e.HIPAA {
		return AccessHIPAARestricted
	}
	return AccessForbidden
}

// PIIFields are the lead fields withheld from a restricted account.
var PIIFields = []string{"first_name", "last_name", "email", "phone", "company", "raw"}

// ErrNeedsReauth marks a grant whose refresh token the vendor rejected (invalid_grant): only
// a new authorization (`leadsync auth login`) recovers it.
var ErrNeedsReauth = errors.New("grant needs re-authorization")

// ErrNeedsRotation marks a static token (a HighLevel Private Integration Token, an LACRM
// API key) that the vendor refused, revoked or expired: only a new token in the connection's
// secret recovers it, and the next run after the secret changes picks it up.
var ErrNeedsRotation = errors.New("static token needs rotation")

// Credentials is a token as the token store hands it out, for a grant or a minted account
// token. Token returns a valid access token, refreshing (once, safely) when it is near
// expiry. Invalidate reports that the API rejected tok with a 401: the next Token call
// refreshes unless another caller already did.
type Credentials interface {
	Token(ctx context.Context) (*oauth2.Token, error)
	Invalidate(tok *oauth2.Token)
}

// Minter mints a per-account token from the grant (LeadConnector location tokens).
type Minter func(ctx context.Context) (*oauth2.Token, error)

// Tokens is what a source needs from the token store for its connection.
type Tokens interface {
	// Grant is the connection's own grant (agency, business user, LACRM user).
	Grant() Credentials
	// Account is a per-account token, minted with mint when missing or near expiry and
	// cached in the store.
	Account(accountID string, mint Minter) Credentials
}
