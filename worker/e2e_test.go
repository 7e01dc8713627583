package worker_test

// End-to-end tests of issue 6: the real sources, sink and token store against the sandbox
// CRMs (crmsim in-process), compared with the sandbox's ground truth.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
	"github.com/leadsync/leadsync/worker"
)

// e2eBundle is one sandbox, one authorized leadsync wired from its config, and everything
// leadsync logged.
type e2eBundle struct {
	env  *testenv.Env
	app  *app.App
	db   *sql.DB
	logs *testenv.Buffer
}

func e2eSetup(t *testing.T, opts testenv.Options, dialect string) *e2eBundle {
	t.Helper()
	env := testenv.New(t, opts, dialect)
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.Open(context.Background(), env.Config(t), log, app.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("leadsync logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.AuthorizeAll(ctx, sandbox.Browser, io.Discard); err != nil {
		t.Fatal(err)
	}
	return &e2eBundle{env: env, app: a, db: env.OpenDB(t), logs: logs}
}

// run syncs once and fails the test on an error or a failed account.
func (b *e2eBundle) run(t *testing.T, opts worker.RunOptions) worker.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b.app.Worker.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("run %d: status %s: %v", res.Run, res.Status, res.Failures)
	}
	return res
}

// e2eTruthIndex maps "source/account/lead" to the lead's vendor update time over the accounts
// whose leads can be read.
func e2eTruthIndex(s *testenv.Sandbox) map[string]time.Time {
	out := map[string]time.Time{}
	for _, at := range s.GroundTruth() {
		if at.Restricted {
			continue
		}
		for _, l := range at.Leads {
			out[at.Source+"/"+at.AccountID+"/"+l.ID] = l.UpdatedAt
		}
	}
	return out
}

// e2eDealIndex is the ground truth's deals (LeadConnector opportunities, LACRM pipeline
// items) of readable accounts: their update time by source/account/id.
func e2eDealIndex(s *testenv.Sandbox) map[string]time.Time {
	out := map[string]time.Time{}
	for _, at := range s.GroundTruth() {
		for _, r := range at.Records {
			if r.Table == sources.TableDeals {
				out[at.Source+"/"+at.AccountID+"/"+r.ID] = r.Updated
			}
		}
	}
	return out
}

// e2eLeadRequests counts the lead-listing requests each vendor answered: LeadConnector's
// contact searches, LocaliQ's interaction listings, LACRM's GetContacts and GetPipelineItems.
func e2eLeadRequests(s *testenv.Sandbox) map[string]int64 {
	return map[string]int64{
		sources.LeadConnector: s.LC.Counters().Requests("contacts/search", 0),
		sources.LocaliQ:       s.LIQ.Counters().Requests("crm/contact_interactions", 0),
		sources.LACRM: s.LACRM.Counters().Requests("v2/GetContacts", 0) +
			s.LACRM.Counters().Requests("v2/GetPipelineItems", 0),
	}
}

// accountsBySource counts the sandbox's accounts per vendor.
func (b *e2eBundle) accountsBySource() map[string]int {
	out := map[string]int{}
	for _, at := range b.env.Sandbox.GroundTruth() {
		out[at.Source]++
	}
	return out
}

// queryStrings runs a query returning one text column.
func (b *e2eBundle) queryStrings(t *testing.T, q string, args ...any) []string {
	t.Helper()
	rows, err := b.db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// placeholder is the dialect's n-th bind parameter.
func (b *e2eBundle) ph(n int) string {
	if b.env.Dialect == testenv.Postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// dump renders every row of the warehouse's tables as text, for secret scans on either
// dialect.
func (b *e2eBundle) dump(t *testing.T) string {
	t.Helper()
	var out strings.Builder
	for _, table := range []string{"leads", "accounts", "restricted_fields", "lead_daily_counts", "sync_runs", "sync_state"} {
		rows, err := b.db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				t.Fatal(err)
			}
			for _, v := range vals {
				out.Write(v)
				out.WriteByte('\t')
			}
			out.WriteByte('\n')
		}
		rows.Close()
	}
	return out.String()
}

// requireNoSecrets checks invariant 3 on everything the test's runs left behind: no token
// value in the logs, the warehouse or the token store's files (encrypted at rest), and no
// lead email in the logs.
func (b *e2eBundle) requireNoSecrets(t *testing.T) {
	t.Helper()
	logs := b.logs.String()
	if logs == "" {
		t.Fatal("no log output captured: the secret scan would prove nothing")
	}
	places := map[string]string{"logs": logs, "warehouse tables": b.dump(t)}
	stateFiles, err := filepath.Glob(filepath.Join(b.env.Dir, "state", "*"))
	if err != nil || len(stateFiles) == 0 {
		t.Fatalf("no token store files under %s/state (%v)", b.env.Dir, err)
	}
	files := stateFiles
	if b.env.Dialect == testenv.SQLite {
		wh := strings.TrimPrefix(b.env.WarehouseURL, "sqlite://")
		files = append(files, wh, wh+"-wal")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		places["file "+filepath.Base(f)] = string(data)
	}
	for where, text := range places {
		for _, p := range testenv.TokenPrefixes {
			if strings.Contains(text, p) {
				t.Errorf("a token (%s…) appears in the %s", p, where)
			}
		}
	}
	emails := b.queryStrings(t, `SELECT DISTINCT email FROM leads WHERE email <> ''`)
	if len(emails) < 10 {
		t.Fatalf("only %d lead emails stored: the PII scan would prove little", len(emails))
	}
	for _, e := range emails {
		if strings.Contains(logs, e) {
			t.Errorf("a lead's email appears in the logs")
			break
		}
	}
}

// TestBackfillEqualsGroundTruth is the full backfill of the three vendors on both warehouse
// dialects, then a second run that finds nothing new and stays cheap.
func TestBackfillEqualsGroundTruth(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			// Three pages per location: a second run that re-read them would show.
			opts := testenv.Small(7)
			opts.ContactsPerLocation = 300
			b := e2eSetup(t, opts, dialect)
			res := b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
			if res.Stats.AccountsRestricted == 0 {
				t.Fatalf("the sandbox has restricted accounts; none reported: %+v", res.Stats)
			}
			b.env.RequireTruth(t)
			total := len(e2eTruthIndex(b.env.Sandbox))
			if res.Stats.LeadsWritten != int64(total) {
				t.Errorf("backfill wrote %d leads, the sandbox has %d", res.Stats.LeadsWritten, total)
			}
			accounts := b.accountsBySource()
			if got, want := res.Stats.AccountsOK+res.Stats.AccountsRestricted, accounts[sources.LeadConnector]+
				accounts[sources.LocaliQ]+accounts[sources.LACRM]; got != want {
				t.Errorf("%d accounts ok or restricted, the sandbox has %d", got, want)
			}
			b.requireLedger(t, res, sink.RunOK)

			// A second run with no changes: nothing written, and at most two lead requests
			// per account, except LACRM (see below).
			before := e2eLeadRequests(b.env.Sandbox)
			res2 := b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
			after := e2eLeadRequests(b.env.Sandbox)
			if res2.Stats.LeadsWritten != 0 {
				t.Errorf("a run with no changes wrote %d leads", res2.Stats.LeadsWritten)
			}
			b.env.RequireTruth(t)
			for _, src := range []string{sources.LeadConnector, sources.LocaliQ} {
				n := after[src] - before[src]
				t.Logf("%s: %d lead requests for %d accounts on a run with no changes", src, n, accounts[src])
				if n > int64(2*accounts[src]) {
					t.Errorf("%s: %d lead requests for %d accounts on a run with no changes, want at most 2 per account",
						src, n, accounts[src])
				}
			}
			// LACRM has no modified-since filter and keeps its leads in several lists: the
			// contacts and one list of items per pipeline (GetPipelineItems needs a
			// PipelineId). Each list costs exactly one newest-first page to learn that
			// nothing changed, so the floor is 1 + pipelines for the one account; more would
			// be waste.
			pipelines := len(b.env.Sandbox.LACRM.PipelineIDs(""))
			if n := after[sources.LACRM] - before[sources.LACRM]; n != int64(1+pipelines) {
				t.Errorf("lacrm: %d lead requests on a run with no changes, want 1 (contacts) + %d (one per pipeline)", n, pipelines)
			}
			b.requireNoSecrets(t)
		})
	}
}

// requireLedger checks the run's sync_runs row against its result.
func (b *e2eBundle) requireLedger(t *testing.T, res worker.Result, status string) {
	t.Helper()
	var gotStatus string
	var ok, restricted, failed int
	var written int64
	var finished sql.NullString
	err := b.db.QueryRow(`SELECT status, accounts_ok, accounts_restricted, accounts_failed, leads_written, `+
		castText(b.env.Dialect, "finished_at")+` FROM sync_runs WHERE id = `+b.ph(1), int64(res.Run)).
		Scan(&gotStatus, &ok, &restricted, &failed, &written, &finished)
	if err != nil {
		t.Fatal(err)
	}
	if gotStatus != status || ok != res.Stats.AccountsOK || restricted != res.Stats.AccountsRestricted ||
		failed != res.Stats.AccountsFailed || written != res.Stats.LeadsWritten || !finished.Valid {
		t.Errorf("sync_runs %d: status %s, %d ok, %d restricted, %d failed, %d written, finished %v; the run reported %s %+v",
			res.Run, gotStatus, ok, restricted, failed, written, finished.Valid, res.Status, res.Stats)
	}
}

func castText(dialect, col string) string {
	if dialect == testenv.Postgres {
		return col + "::text"
	}
	return col
}

// TestE2EIncrementalBringsExactlyTheChanges mutates every vendor's data after a backfill: the
// next incremental run writes exactly the created and updated leads and deletes nothing; a
// full pass then soft-deletes the deleted ones and rewrites nothing.
func TestE2EIncrementalBringsExactlyTheChanges(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			e2eIncremental(t, dialect)
		})
	}
}

func e2eIncremental(t *testing.T, dialect string) {
	b := e2eSetup(t, testenv.Small(11), dialect)
	sb := b.env.Sandbox
	// LocaliQ reads by creation date and re-reads the last 3 days, so only recent
	// interactions can change visibly between full passes: seed two from yesterday.
	liqAcct := e2eReadableAccount(t, sb, sources.LocaliQ)
	recent, err := sb.LIQ.AddInteractions(liqtest.NewInteraction{GMAID: liqAcct, EventType: "form",
		CreatedAt: time.Now().Add(-24 * time.Hour)}, 2)
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
	b.env.RequireTruth(t)
	truth0, deals0 := e2eTruthIndex(sb), e2eDealIndex(sb)

	// LeadConnector: 2 new, 2 updated, 1 deleted contact.
	loc := e2eReadableAccount(t, sb, sources.LeadConnector)
	ids := sb.LC.ContactIDs(loc)
	for range 2 {
		if _, err := sb.LC.CreateContact(loc); err != nil {
			t.Fatal(err)
		}
	}
	e2eNoErr(t, sb.LC.UpdateContact(loc, ids[0]), sb.LC.UpdateContact(loc, ids[1]), sb.LC.DeleteContact(loc, ids[2]))
	// LocaliQ: 3 new interactions, one recent one edited.
	if _, err := sb.LIQ.AddInteractions(liqtest.NewInteraction{GMAID: liqAcct, EventType: "call"}, 3); err != nil {
		t.Fatal(err)
	}
	e2eNoErr(t, sb.LIQ.EditInteraction(recent[0], "qualified"))
	// LACRM: a new contact and item, an updated contact and item, a deleted item and a
	// deleted contact (with its items, as LACRM does).
	lacrmContacts, lacrmItems := sb.LACRMIDs()
	if _, err := sb.LACRM.CreateContact(""); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.LACRM.CreatePipelineItem("", "", ""); err != nil {
		t.Fatal(err)
	}
	e2eNoErr(t, sb.LACRM.UpdateContact(lacrmContacts[0]), sb.LACRM.UpdatePipelineItem(lacrmItems[0]),
		sb.LACRM.DeletePipelineItem(lacrmItems[1]), sb.LACRM.DeleteContact(lacrmContacts[1]))

	truth1, deals1 := e2eTruthIndex(sb), e2eDealIndex(sb)
	var changed, deleted, goneDeals []string
	for k, upd := range truth1 {
		if old, ok := truth0[k]; !ok || !old.Equal(upd) {
			changed = append(changed, k)
		}
	}
	for k := range truth0 {
		if _, ok := truth1[k]; !ok {
			deleted = append(deleted, k)
		}
	}
	for k := range deals0 {
		if _, ok := deals1[k]; !ok {
			goneDeals = append(goneDeals, k)
		}
	}
	sort.Strings(changed)
	sort.Strings(deleted)
	// 2+2 LeadConnector, 3+1 LocaliQ (less any non-lead chat: none for calls), 2 LACRM
	// contacts (its pipeline items are deals).
	if len(changed) != 10 || len(deleted) < 2 || len(goneDeals) < 1 {
		t.Fatalf("the mutations changed %d leads (%v) and deleted %d (%v): the test's premise is off",
			len(changed), changed, len(deleted), deleted)
	}

	res := b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
	if res.Stats.LeadsWritten != int64(len(changed)) {
		t.Errorf("the incremental run wrote %d leads; %d were created or updated: %v", res.Stats.LeadsWritten, len(changed), changed)
	}
	// Incremental runs never delete: the warehouse is the truth plus the deleted leads,
	// still live.
	var wantDiff []string
	for _, k := range deleted {
		i := strings.LastIndex(k, "/")
		wantDiff = append(wantDiff, fmt.Sprintf("%s: extra lead %s", k[:i], k[i+1:]))
	}
	for _, k := range goneDeals {
		i := strings.LastIndex(k, "/")
		wantDiff = append(wantDiff, fmt.Sprintf("%s: extra deals row %s", k[:i], k[i+1:]))
	}
	sort.Strings(wantDiff)
	if got := b.env.Diff(t); !slices.Equal(got, wantDiff) {
		t.Fatalf("after the incremental run the warehouse differs from the truth by\n%s\nwant only the deleted leads:\n%s",
			strings.Join(got, "\n"), strings.Join(wantDiff, "\n"))
	}
	if n := e2eCount(t, b.db, `SELECT COUNT(*) FROM leads WHERE deleted_at IS NOT NULL`); n != 0 {
		t.Errorf("an incremental run soft-deleted %d leads", n)
	}

	full := b.run(t, worker.RunOptions{Trigger: sink.TriggerBackfill, Full: true})
	if full.Stats.LeadsWritten != 0 {
		t.Errorf("a full pass over unchanged leads rewrote %d", full.Stats.LeadsWritten)
	}
	b.env.RequireTruth(t)
	gone := b.queryStrings(t, `SELECT source || '/' || account_id || '/' || lead_id FROM leads WHERE deleted_at IS NOT NULL ORDER BY 1`)
	if !slices.Equal(gone, deleted) {
		t.Errorf("the full pass soft-deleted %v, want %v", gone, deleted)
	}
	b.requireNoSecrets(t)
}

// e2eReadableAccount is the first account of src whose leads can be read and that has some.
func e2eReadableAccount(t *testing.T, s *testenv.Sandbox, src string) string {
	t.Helper()
	for _, at := range s.GroundTruth() {
		if at.Source == src && !at.Restricted && len(at.Leads) > 3 {
			return at.AccountID
		}
	}
	t.Fatalf("the sandbox has no readable %s account", src)
	return ""
}

func e2eNoErr(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func e2eCount(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestE2EHIPAARestrictedThenGranted: a HIPAA-protected advertiser answers 403 to a user without
// the Agency Customer role. It is tagged (access, restricted_fields, PII-free daily counts)
// while the rest syncs; once the role is granted the next run backfills it and clears the
// tags, and its rows carry hipaa = true.
func TestE2EHIPAARestrictedThenGranted(t *testing.T) {
	t.Parallel()
	opts := testenv.Small(5)
	opts.LocaliQ.RestrictAllHIPAA = true // no default role on one HIPAA advertiser
	b := e2eSetup(t, opts, testenv.SQLite)
	sb := b.env.Sandbox
	var hipaa []string
	for _, a := range sb.LIQ.Advertisers() {
		if a.HIPAAProtected && a.ActiveState != 0 {
			hipaa = append(hipaa, a.GMAID)
		}
	}
	if len(hipaa) == 0 {
		t.Fatal("the sandbox has no active HIPAA-protected advertiser")
	}
	res := b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
	if res.Stats.AccountsRestricted < len(hipaa) {
		t.Errorf("%d accounts restricted, want at least the %d HIPAA ones", res.Stats.AccountsRestricted, len(hipaa))
	}
	b.env.RequireTruth(t) // the restricted accounts have no leads, the others all of theirs
	for _, g := range hipaa {
		access := b.queryStrings(t, `SELECT access FROM accounts WHERE source = 'localiq' AND account_id = ?`, g)
		if !slices.Equal(access, []string{sources.AccessHIPAARestricted}) {
			t.Errorf("advertiser %s: access %v, want %s", g, access, sources.AccessHIPAARestricted)
		}
		fields := b.queryStrings(t, `SELECT field FROM restricted_fields WHERE source = 'localiq' AND account_id = ? ORDER BY field`, g)
		if want := slices.Sorted(slices.Values(sources.PIIFields)); !slices.Equal(fields, want) {
			t.Errorf("advertiser %s: restricted_fields %v, want %v", g, fields, want)
		}
		if n := e2eCount(t, b.db, `SELECT COALESCE(SUM(count), 0) FROM lead_daily_counts WHERE source = 'localiq' AND account_id = ?`, g); n == 0 {
			t.Errorf("advertiser %s: no PII-free daily counts synced for the restricted account", g)
		}
	}

	sb.LIQ.SetAgencyCustomer(liqtest.DefaultSandboxUser, true)
	res = b.run(t, worker.RunOptions{Trigger: sink.TriggerOnce})
	b.env.RequireTruth(t) // now including the HIPAA advertisers' leads
	for _, g := range hipaa {
		access := b.queryStrings(t, `SELECT access FROM accounts WHERE source = 'localiq' AND account_id = ?`, g)
		if !slices.Equal(access, []string{sources.AccessOK}) {
			t.Errorf("advertiser %s after the grant: access %v, want ok", g, access)
		}
		if n := e2eCount(t, b.db, `SELECT COUNT(*) FROM restricted_fields WHERE source = 'localiq' AND account_id = ?`, g); n != 0 {
			t.Errorf("advertiser %s after the grant: %d restricted_fields tags left", g, n)
		}
		all := e2eCount(t, b.db, `SELECT COUNT(*) FROM leads WHERE source = 'localiq' AND account_id = ?`, g)
		flagged := e2eCount(t, b.db, `SELECT COUNT(*) FROM leads WHERE source = 'localiq' AND account_id = ? AND hipaa = 1`, g)
		if all == 0 || flagged != all {
			t.Errorf("advertiser %s after the grant: %d of %d leads flagged hipaa", g, flagged, all)
		}
		// The de-identified view withholds their PII.
		if n := e2eCount(t, b.db, `SELECT COUNT(*) FROM leads_deidentified WHERE source = 'localiq' AND account_id = ? AND (email IS NOT NULL OR raw IS NOT NULL)`, g); n != 0 {
			t.Errorf("advertiser %s: %d de-identified rows still show PII", g, n)
		}
	}
	if n := e2eCount(t, b.db, `SELECT COUNT(*) FROM leads WHERE hipaa = 1 AND source <> 'localiq'`); n != 0 {
		t.Errorf("%d leads of accounts that are not HIPAA-protected are flagged hipaa", n)
	}
	b.requireNoSecrets(t)
}
