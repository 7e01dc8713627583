// Package testenv sets up end-to-end tests: crmsim on loopback, a leadsync configuration
// pointing at it (SQLite or PostgreSQL warehouse), every connection authorized through the
// real flows, and a comparison of the warehouse with the sandbox's ground truth.
package testenv

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to read a PostgreSQL warehouse
	_ "github.com/mattn/go-sqlite3"    // database/sql driver "sqlite3"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	_ "github.com/leadsync/leadsync/sources/all" // the vendors the sandbox serves
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
	"github.com/leadsync/leadsync/store"
)

// Dialects of the warehouse.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Env is one sandbox and one leadsync configuration.
type Env struct {
	Sandbox      *Sandbox
	Dir          string // holds config.yaml, secrets/ and state/
	ConfigPath   string
	WarehouseURL string
	Dialect      string
}

// Options size a test sandbox, with each vendor's knobs by name (the tests know the
// vendors; crmsim and the sandbox do not). Zero values take each fake's defaults.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock
	TokenTTL time.Duration
	Faults   simkit.FaultSettings

	Locations           int // LeadConnector installed locations
	ContactsPerLocation int
	ForbiddenLocations  int
	Advertisers         int // LocaliQ advertisers
	InteractionsPerAdv  int
	LACRMContacts       int
	LACRMPipelineItems  int

	// StaticAuth writes static-token connections for the vendors that have them (HighLevel
	// Private Integration Tokens, an LACRM API key) instead of their OAuth ones.
	StaticAuth bool

	// LeadConnector, LocaliQ and LACRM set any option of one fake; the fields above
	// override theirs when set.
	LeadConnector lctest.Options
	LocaliQ       liqtest.Options
	LACRM         lacrmtest.Options
}

// Sandbox is the sandbox, with each vendor's fake at hand for the vendor's own admin calls.
type Sandbox struct {
	*sandbox.Server
	LC    *lctest.Fake
	LIQ   *liqtest.Fake
	LACRM *lacrmtest.Fake
}

// LACRMIDs are the LACRM fake's contact and pipeline-item ids, from its ground truth.
func (s *Sandbox) LACRMIDs() (contacts, items []string) {
	return s.LACRM.ContactIDs(""), s.LACRM.PipelineItemIDs("")
}

// sandboxOptions turns o into the vendor-neutral options of package sandbox.
func (o Options) sandboxOptions() sandbox.Options {
	lo, qo, ao := o.LeadConnector, o.LocaliQ, o.LACRM
	lo.Locations = cmp.Or(o.Locations, lo.Locations)
	lo.ContactsPerLocation = cmp.Or(o.ContactsPerLocation, lo.ContactsPerLocation)
	lo.ForbiddenLocations = cmp.Or(o.ForbiddenLocations, lo.ForbiddenLocations)
	qo.Advertisers = cmp.Or(o.Advertisers, qo.Advertisers)
	qo.InteractionsPerAdvertiser = cmp.Or(o.InteractionsPerAdv, qo.InteractionsPerAdvertiser)
	ao.Contacts = cmp.Or(o.LACRMContacts, ao.Contacts)
	ao.PipelineItems = cmp.Or(o.LACRMPipelineItems, ao.PipelineItems)
	return sandbox.Options{Seed: o.Seed, Clock: o.Clock, TokenTTL: o.TokenTTL, Faults: o.Faults,
		Vendor: map[string]any{sources.LeadConnector: lo, sources.LocaliQ: qo, sources.LACRM: ao}}
}

// StartSandbox serves a sandbox sized by opts on loopback until the test ends.
func StartSandbox(t testing.TB, opts Options) *Sandbox {
	t.Helper()
	srv, err := sandbox.New(opts.sandboxOptions()).Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &Sandbox{Server: srv, LC: srv.Fake(sources.LeadConnector).(*lctest.Fake),
		LIQ: srv.Fake(sources.LocaliQ).(*liqtest.Fake), LACRM: srv.Fake(sources.LACRM).(*lacrmtest.Fake)}
}

// Small is a sandbox small enough for unit-test speed that still has every feature: a
// forbidden LeadConnector location, a HIPAA LocaliQ advertiser (readable: the sandbox user's
// default role is on it; set LocaliQ.RestrictAllHIPAA for a 403) and an inactive one, LACRM
// pipelines.
func Small(seed uint64) Options {
	return Options{Seed: seed, Locations: 3, ContactsPerLocation: 150, ForbiddenLocations: 1,
		Advertisers: 5, InteractionsPerAdv: 60, LACRMContacts: 80, LACRMPipelineItems: 30}
}

// New starts a sandbox with opts and writes a configuration using a warehouse of dialect
// (PostgreSQL: a fresh schema; unreachable server: skipped locally, failed under CI).
func New(t testing.TB, opts Options, dialect string) *Env {
	t.Helper()
	dir := t.TempDir()
	var wh string
	switch dialect {
	case SQLite:
		wh = "sqlite://" + filepath.Join(dir, "leads.db")
	case Postgres:
		wh, _ = pgtest.Schema(t)
	default:
		t.Fatalf("testenv: unknown dialect %q", dialect)
	}
	srv := StartSandbox(t, opts)
	path, err := srv.WriteConfigWith(dir, srv.URL, wh, sandbox.WriteOptions{Static: opts.StaticAuth})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Sandbox: srv, Dir: dir, ConfigPath: path, WarehouseURL: wh, Dialect: dialect}
}

// Config loads the environment's configuration.
func (e *Env) Config(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// App wires leadsync from the configuration (closed when the test ends). Logs go to the
// test log.
func (e *Env) App(t testing.TB) *app.App {
	t.Helper()
	return e.AppWith(t, e.Config(t), app.Options{})
}

// AppWith is App with a configuration the test changed, and options (Version defaults to
// "test").
func (e *Env) AppWith(t testing.TB, cfg *config.Config, opts app.Options) *app.App {
	t.Helper()
	opts.Version = cmp.Or(opts.Version, "test")
	a, err := app.Open(context.Background(), cfg, Logger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// Authorized is App with every connection authorized through the real flows.
func (e *Env) Authorized(t testing.TB) *app.App {
	t.Helper()
	return Authorize(t, e.App(t))
}

// Authorize authorizes every connection of a through the real flows, and returns a.
func Authorize(t testing.TB, a *app.App) *app.App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.AuthorizeAll(ctx, sandbox.Browser, io.Discard); err != nil {
		t.Fatal(err)
	}
	return a
}

// Logger logs to t.Log at debug level (PII and tokens never reach logs anyway).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// OpenDB opens the warehouse with database/sql for assertions.
func (e *Env) OpenDB(t testing.TB) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if e.Dialect == Postgres {
		db, err = sql.Open("pgx", e.WarehouseURL)
	} else {
		db, err = sql.Open("sqlite3", "file:"+strings.TrimPrefix(e.WarehouseURL, "sqlite://"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Stored reads the warehouse's live leads as AccountTruth, sorted like the ground truth.
func (e *Env) Stored(t testing.TB) map[string][]simkit.LeadTruth {
	t.Helper()
	db := e.OpenDB(t)
	defer db.Close() // called in loops: a handle left to the test's end holds a connection
	rows, err := db.Query(`SELECT source, account_id, lead_id, kind, updated_at FROM leads WHERE deleted_at IS NULL ORDER BY source, account_id, lead_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]simkit.LeadTruth{}
	for rows.Next() {
		var src, acct, id, kind string
		var upd any
		if err := rows.Scan(&src, &acct, &id, &kind, &upd); err != nil {
			t.Fatal(err)
		}
		ut, err := asTime(upd)
		if err != nil {
			t.Fatalf("updated_at of %s/%s/%s: %v", src, acct, id, err)
		}
		k := src + "/" + acct
		out[k] = append(out[k], simkit.LeadTruth{ID: id, Kind: kind, UpdatedAt: ut})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recordQueries read each lifecycle table's live rows as simkit.RecordTruth: source,
// account, id, updated (NULL where the truth has none).
var recordQueries = map[string]string{
	"deals":           `SELECT source, account_id, deal_id, updated_at FROM deals WHERE deleted_at IS NULL`,
	"crm_dictionary":  `SELECT source, account_id, kind || ':' || entry_id, NULL FROM crm_dictionary WHERE deleted_at IS NULL`,
	"submissions":     `SELECT source, account_id, submission_id, submitted_at FROM submissions WHERE deleted_at IS NULL`,
	"campaign_cycles": `SELECT source, account_id, campaign_id || '/' || cycle_id, NULL FROM campaign_cycles`,
}

// StoredRecords are the warehouse's live lifecycle rows, by "source/account", sorted by
// table and id.
func (e *Env) StoredRecords(t testing.TB) map[string][]simkit.RecordTruth {
	t.Helper()
	db := e.OpenDB(t)
	defer db.Close()
	out := map[string][]simkit.RecordTruth{}
	for _, table := range slices.Sorted(maps.Keys(recordQueries)) {
		rows, err := db.Query(recordQueries[table])
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var src, acct, id string
			var upd any
			if err := rows.Scan(&src, &acct, &id, &upd); err != nil {
				t.Fatal(err)
			}
			ut, err := asTime(upd)
			if err != nil {
				t.Fatalf("%s %s/%s/%s: %v", table, src, acct, id, err)
			}
			k := src + "/" + acct
			out[k] = append(out[k], simkit.RecordTruth{Table: table, ID: id, Updated: ut})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, recs := range out {
		slices.SortFunc(recs, compareRecords)
	}
	return out
}

func compareRecords(a, b simkit.RecordTruth) int {
	return cmp.Or(strings.Compare(a.Table, b.Table), strings.Compare(a.ID, b.ID))
}

// diffRecords compares an account's stored lifecycle rows with its truth.
func diffRecords(k string, got, want []simkit.RecordTruth) []string {
	want = slices.Clone(want)
	slices.SortFunc(want, compareRecords)
	var diffs []string
	gi, wi := 0, 0
	for gi < len(got) || wi < len(want) {
		switch {
		case wi == len(want) || (gi < len(got) && compareRecords(got[gi], want[wi]) < 0):
			diffs = append(diffs, fmt.Sprintf("%s: extra %s row %s", k, got[gi].Table, got[gi].ID))
			gi++
		case gi == len(got) || compareRecords(want[wi], got[gi]) < 0:
			diffs = append(diffs, fmt.Sprintf("%s: missing %s row %s", k, want[wi].Table, want[wi].ID))
			wi++
		default:
			if !want[wi].Updated.IsZero() && !got[gi].Updated.Equal(want[wi].Updated) {
				diffs = append(diffs, fmt.Sprintf("%s: %s row %s updated %s, vendor has %s", k, got[gi].Table, got[gi].ID,
					got[gi].Updated.Format(time.RFC3339Nano), want[wi].Updated.Format(time.RFC3339Nano)))
			}
			gi++
			wi++
		}
	}
	return diffs
}

func asTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case string:
		return time.Parse(time.RFC3339Nano, x)
	case []byte:
		return time.Parse(time.RFC3339Nano, string(x))
	case nil:
		return time.Time{}, nil
	}
	return time.Time{}, fmt.Errorf("unexpected type %T", v)
}

// Diff compares the warehouse with the sandbox's ground truth: every lead of every
// unrestricted account present once with the vendor's update time, nothing else. It
// returns one line per difference (empty when equal).
func (e *Env) Diff(t testing.TB) []string {
	t.Helper()
	stored := e.Stored(t)
	records := e.StoredRecords(t)
	var diffs []string
	seen := map[string]bool{}
	for _, at := range e.Sandbox.GroundTruth() {
		k := at.Source + "/" + at.AccountID
		seen[k] = true
		diffs = append(diffs, diffRecords(k, records[k], at.Records)...)
		got := stored[k]
		if at.Restricted {
			if len(got) > 0 {
				diffs = append(diffs, fmt.Sprintf("%s: restricted account has %d leads stored", k, len(got)))
			}
			continue
		}
		want := append([]simkit.LeadTruth(nil), at.Leads...)
		sort.Slice(want, func(i, j int) bool { return want[i].ID < want[j].ID })
		gi, wi := 0, 0
		for gi < len(got) || wi < len(want) {
			switch {
			case wi == len(want) || (gi < len(got) && got[gi].ID < want[wi].ID):
				diffs = append(diffs, fmt.Sprintf("%s: extra lead %s", k, got[gi].ID))
				gi++
			case gi == len(got) || want[wi].ID < got[gi].ID:
				diffs = append(diffs, fmt.Sprintf("%s: missing lead %s", k, want[wi].ID))
				wi++
			default:
				if !got[gi].UpdatedAt.Equal(want[wi].UpdatedAt) {
					diffs = append(diffs, fmt.Sprintf("%s: lead %s updated_at %s, vendor has %s", k, got[gi].ID,
						got[gi].UpdatedAt.Format(time.RFC3339Nano), want[wi].UpdatedAt.Format(time.RFC3339Nano)))
				}
				gi++
				wi++
			}
		}
	}
	for k, got := range stored {
		if !seen[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %d leads of an account the sandbox does not have", k, len(got)))
		}
	}
	for k, got := range records {
		if !seen[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %d lifecycle rows of an account the sandbox does not have", k, len(got)))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// RequireTruth fails t unless the warehouse equals the ground truth.
func (e *Env) RequireTruth(t testing.TB) {
	t.Helper()
	d := e.Diff(t)
	if len(d) > 0 {
		if len(d) > 20 {
			d = append(d[:20], fmt.Sprintf("... and %d more", len(d)-20))
		}
		t.Fatalf("warehouse differs from the sandbox's ground truth:\n%s", strings.Join(d, "\n"))
	}
}

// LeadCount is the number of live leads in the warehouse.
func (e *Env) LeadCount(t testing.TB) int {
	t.Helper()
	var n int
	db := e.OpenDB(t)
	defer db.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM leads WHERE deleted_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TokenPrefixes are how the sandbox's token registries name access and refresh tokens
// (simkit.NewRegistry "lc", "liq", "lacrm"), and how its static tokens begin (HighLevel
// Private Integration Tokens, LACRM API keys): no log, output or warehouse may contain one.
var TokenPrefixes = []string{"lc_at_", "lc_rt_", "liq_at_", "liq_rt_", "lacrm_at_", "lacrm_rt_",
	lctest.PITPrefix, lacrmtest.APIKeyPrefix}

// Buffer collects output (logs, a child process's stdout) and is safe to read while it is
// being written.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// AwaitRefreshDue waits (polling, with a deadline) until every grant of st (or of the
// connections named) is due for a refresh (past its RefreshAt), so the next run's first calls
// refresh each one. Use it with a token lifetime of a few seconds (the store refreshes
// half-way through a token's life).
func AwaitRefreshDue(t testing.TB, st *store.Store, conns ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		gs, err := st.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		due := len(gs) > 0
		for _, g := range gs {
			if len(conns) == 0 || slices.Contains(conns, g.Connection) {
				due = due && !time.Now().Before(g.RefreshAt)
			}
		}
		if due {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the grants never came due for a refresh")
		}
		<-tick.C
	}
}
