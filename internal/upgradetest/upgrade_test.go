package upgradetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/pgtest"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
	"github.com/leadsync/leadsync/worker"
)

// baseCommit is the leadsync whose warehouse and token store the new code must upgrade:
// main before the streams refactor (one cursor per account, leads without a stream).
const baseCommit = "ff725b051189ef2e305a4a782a9945bc9387f50d"

// binDir holds the old binary, built once for every test of this package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "leadsync-upgradetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	oldBin    string
	buildErr  error
)

// oldLeadsync is leadsync as of baseCommit, built from the clone's history the first time
// a test asks for it.
func oldLeadsync(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { oldBin, buildErr = buildAt(baseCommit, binDir) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return oldBin
}

// buildAt extracts commit with git archive into dir and builds its cmd/leadsync there,
// with this process's Go settings (module cache, GOFLAGS, proxy).
func buildAt(commit, dir string) (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("upgradetest: this test builds the old leadsync from the repository's git history, but finding the repository failed (git rev-parse --show-toplevel): %v", err)
	}
	root := strings.TrimSpace(string(out))
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("upgradetest: commit %s (the leadsync whose data the upgrade must keep) is not in the history of the clone at %s: fetch it (git fetch origin main, or git fetch --unshallow in a shallow clone): %v %s",
			commit, root, err, bytes.TrimSpace(out))
	}
	src := filepath.Join(dir, "src-"+commit[:12])
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	tarball := src + ".tar"
	if out, err := exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, commit).CombinedOutput(); err != nil {
		return "", fmt.Errorf("upgradetest: git archive %s: %v\n%s", commit, err, out)
	}
	if out, err := exec.Command("tar", "-xf", tarball, "-C", src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("upgradetest: extract %s: %v\n%s", tarball, err, out)
	}
	bin := filepath.Join(dir, "leadsync-"+commit[:12])
	build := exec.Command("go", "build", "-o", bin, "./cmd/leadsync")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("upgradetest: build leadsync at %s: %v\n%s", commit, err, out)
	}
	return bin, nil
}

// oldCLI runs the old binary on one configuration.
type oldCLI struct {
	bin, config string
}

// env is the environment of the old binary: this one without the variables that would
// point it elsewhere than its configuration (systemd's directories, another config file).
func (c oldCLI) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "LEADSYNC_CONFIG" && name != "CREDENTIALS_DIRECTORY" && name != "STATE_DIRECTORY" {
			env = append(env, kv)
		}
	}
	return env
}

func (c oldCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append(args, "--config", c.config)...)
	cmd.Env = c.env()
	return cmd
}

// run runs one command to completion and returns its stdout; a non-zero exit fails t.
func (c oldCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("old leadsync %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

// authorize runs one of the sandbox's login commands ("leadsync auth login|password <conn>
// --config <file>") with the old binary. For the code flow it plays the browser: it reads
// the authorization URL the command prints and follows it to the command's loopback
// callback (the sandbox's authorization pages approve on their own).
func (c oldCLI) authorize(t *testing.T, line string) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "leadsync" || f[1] != "auth" {
		t.Fatalf("unexpected sandbox login command %q", line)
	}
	args := []string{"auth", f[2], f[3]} // the configuration is ours anyway
	if f[2] != "login" {
		c.run(t, args...)
		return
	}
	args = append(args, "--no-browser", "--timeout", "1m")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	sc := bufio.NewScanner(pipe)
	authURL := ""
	for authURL == "" && sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") {
			authURL = l
		}
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&stderr, pipe); close(copied) }()
	var browserErr error
	if authURL == "" {
		browserErr = errors.New("the command printed no authorization URL")
	} else {
		browserErr = browse(ctx, authURL)
	}
	<-copied
	if err := cmd.Wait(); err != nil || browserErr != nil {
		t.Fatalf("old leadsync %s: %v (browser: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, browserErr, &stdout, &stderr)
	}
}

// browse follows url through its redirects and wants the last page (the login's own
// callback page) to say 200.
func browse(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", resp.Request.URL.Redacted(), resp.Status, body)
	}
	return nil
}

// sandboxOptions are big enough for a backfill to take many pages of every vendor, so that
// an incremental run is told from a backfill by its request count.
func sandboxOptions() testenv.Options {
	o := testenv.Small(20260101)
	o.ContactsPerLocation = 600 // LeadConnector: 100 a page
	o.LACRMContacts = 2000      // LACRM: 500 a page
	return o
}

// lead is one row of the leads table.
type lead struct {
	source, account, id string
	deleted             bool
	firstSeen           string
	kind                string
}

func (l lead) key() string { return l.source + "/" + l.account + "/" + l.id }

// leads reads the leads table (every row, deleted ones too).
func leads(t *testing.T, env *testenv.Env) []lead {
	t.Helper()
	db := env.OpenDB(t)
	defer db.Close()
	return leadRows(t, env, `SELECT source, account_id, lead_id, deleted_at IS NOT NULL, CAST(first_seen_at AS TEXT), kind
FROM leads ORDER BY source, account_id, lead_id`)
}

// dealRows reads the deals table as leads (kind pipeline_item), to find the LACRM pipeline
// items the upgrade moved.
func dealRows(t *testing.T, env *testenv.Env) []lead {
	t.Helper()
	return leadRows(t, env, `SELECT source, account_id, deal_id, deleted_at IS NOT NULL, CAST(first_seen_at AS TEXT), 'pipeline_item'
FROM deals WHERE source = 'lacrm' ORDER BY source, account_id, deal_id`)
}

func leadRows(t *testing.T, env *testenv.Env, query string) []lead {
	t.Helper()
	db := env.OpenDB(t)
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []lead
	for rows.Next() {
		var l lead
		if err := rows.Scan(&l.source, &l.account, &l.id, &l.deleted, &l.firstSeen, &l.kind); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fullRefresh are the streams read whole on every run: their cursor is empty between runs.
var fullRefresh = []string{"pipelines", "custom_fields", "users", "opportunities", "campaign_cycles"}

// cursors reads sync_state: every cursor by source/account (several per account once
// cursors are kept per stream); perStream leaves out the full-refresh streams, and those
// the grant lacks the scope for (never read).
func cursors(t *testing.T, env *testenv.Env, perStream bool) map[string][]string {
	t.Helper()
	db := env.OpenDB(t)
	defer db.Close()
	q := `SELECT source, account_id, cursor FROM sync_state ORDER BY source, account_id, cursor`
	if perStream {
		q = `SELECT source, account_id, cursor FROM sync_state WHERE stream NOT IN ('` + strings.Join(fullRefresh, "', '") +
			`') AND (last_outcome IS NULL OR last_outcome <> 'missing_scope') ORDER BY source, account_id, cursor`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var src, acct, cur string
		if err := rows.Scan(&src, &acct, &cur); err != nil {
			t.Fatal(err)
		}
		out[src+"/"+acct] = append(out[src+"/"+acct], cur)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// syncable are the ground truth's accounts whose leads are synced, by source/account.
func syncable(s *testenv.Sandbox) map[string]simkit.AccountTruth {
	out := map[string]simkit.AccountTruth{}
	for _, at := range s.GroundTruth() {
		if !at.Restricted {
			out[at.Source+"/"+at.AccountID] = at
		}
	}
	return out
}

// firstAccount is the first syncable account of source that has leads.
func firstAccount(t *testing.T, s *testenv.Sandbox, source string) string {
	t.Helper()
	for _, at := range s.GroundTruth() {
		if at.Source == source && !at.Restricted && len(at.Leads) > 0 {
			return at.AccountID
		}
	}
	t.Fatalf("the sandbox has no syncable %s account with leads", source)
	return ""
}

// mutate adds and updates leads at every vendor, as the conformance suite's incremental
// case does. It returns how many leads it added, and how many it added or changed.
func mutate(t *testing.T, s *testenv.Sandbox) (added, changed int, lacrmUpdated string) {
	t.Helper()
	loc := firstAccount(t, s, sources.LeadConnector)
	adv := firstAccount(t, s, sources.LocaliQ)
	lacrmContacts, lacrmItems := s.LACRMIDs()
	step := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("mutating the sandbox: %v", err)
		}
	}
	_, err := s.LC.CreateContact(loc)
	step(err)
	step(s.LC.UpdateContact(loc, s.LC.ContactIDs(loc)[0]))
	recent, err := s.LIQ.AddInteractions(liqtest.NewInteraction{GMAID: adv, EventType: "form", CreatedAt: time.Now().Add(-time.Hour)}, 2)
	step(err)
	step(s.LIQ.EditInteraction(recent[0], "qualified")) // one of the new ones
	_, err = s.LACRM.CreateContact("")
	step(err)
	step(s.LACRM.UpdateContact(lacrmContacts[0]))
	step(s.LACRM.UpdatePipelineItem(lacrmItems[0]))
	added = 1 + len(recent) + 1
	return added, added + 1 + 1, lacrmContacts[0] // the updated pipeline item is a deal: not a lead written
}

// requests counts requests the vendors' fakes answered, by vendor.
type requests map[string]int64

// listingsOf counts the requests of the lead listings the base commit's streams make, those
// an upgrade must resume rather than repeat: LeadConnector's contact searches, LocaliQ's
// interaction listings and daily reports, LACRM's GetContacts. (LACRM's pipeline items are
// deals now: the upgrade resets their cursor, and they are read again.)
func listingsOf(s *testenv.Sandbox) requests {
	return requests{
		sources.LeadConnector: s.LC.Counters().Requests("contacts/search", 0),
		sources.LocaliQ: s.LIQ.Counters().Requests("crm/contact_interactions", 0) +
			s.LIQ.Counters().Requests("client_reports/lead_detail", 0),
		sources.LACRM: s.LACRM.Counters().Requests("v2/GetContacts", 0),
	}
}

// since is r minus an earlier count.
func (r requests) since(before requests) requests {
	out := requests{}
	for v, n := range r {
		out[v] = n - before[v]
	}
	return out
}

func (r requests) total() int64 {
	var n int64
	for _, v := range r {
		n += v
	}
	return n
}

func (r requests) String() string {
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(r)) {
		parts = append(parts, fmt.Sprintf("%s %d", v, r[v]))
	}
	return strings.Join(parts, ", ")
}

// syncOnce runs every connection once with the new code and returns the run and the
// requests the vendors answered for it.
func syncOnce(t *testing.T, env *testenv.Env, a *app.App) (worker.Result, requests) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := listingsOf(env.Sandbox)
	res, err := a.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce})
	n := listingsOf(env.Sandbox).since(before)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Stats.AccountsFailed > 0 {
		t.Fatalf("run %d after the upgrade: %s, %d accounts failed: %v", res.Run, res.Status, res.Stats.AccountsFailed, res.Failures)
	}
	return res, n
}

func TestUpgradeFromBaseCommit(t *testing.T) {
	for _, dialect := range []string{testenv.SQLite, testenv.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			testUpgrade(t, dialect)
		})
	}
}

func testUpgrade(t *testing.T, dialect string) {
	bin := oldLeadsync(t)
	env := testenv.New(t, sandboxOptions(), dialect)
	if dialect == testenv.Postgres {
		// The token store too, in a schema of its own (the default would be SQLite).
		url, schema := pgtest.Schema(t)
		f, err := os.OpenFile(env.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(f, "token_store:\n  url: %q\n  schema: %s\n", url, schema)
		if err2 := f.Close(); err == nil {
			err = err2
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	old := oldCLI{bin: bin, config: env.ConfigPath}

	// Before the upgrade: the old binary authorizes every connection and backfills.
	for _, line := range env.Sandbox.LoginCommands(env.ConfigPath) {
		old.authorize(t, line)
	}
	before := listingsOf(env.Sandbox)
	out := old.run(t, "run", "--once", "--progress", "off")
	backfill := listingsOf(env.Sandbox).since(before)
	t.Logf("old leadsync run --once: %s", strings.TrimSpace(out))
	requireOldTruth(t, env) // what the upgrade must keep is complete
	oldLeads := leads(t, env)
	oldCursors := cursors(t, env, false)
	accounts := syncable(env.Sandbox)
	for k := range accounts {
		if !slices.ContainsFunc(oldCursors[k], func(c string) bool { return c != "" }) {
			t.Fatalf("the old backfill left account %s without a cursor: nothing for the upgrade to carry over", k)
		}
	}
	added, changed, lacrmUpdated := mutate(t, env.Sandbox)

	// The upgrade: the new code opens the same configuration, warehouse and token store.
	a := env.App(t)
	grants, err := a.Store.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var granted []string
	for _, g := range grants {
		if g.NeedsReauth {
			t.Errorf("grant of %s needs re-authorization after the upgrade (%s)", g.Connection, g.Reason)
		}
		granted = append(granted, g.Connection)
	}
	var conns []string
	for _, c := range a.Conns {
		conns = append(conns, c.Config.Name)
	}
	slices.Sort(granted)
	slices.Sort(conns)
	if !slices.Equal(granted, conns) {
		t.Fatalf("after the upgrade the token store has grants for %v, want one for each connection %v", granted, conns)
	}

	first, firstN := syncOnce(t, env, a)
	_, steadyN := syncOnce(t, env, a)
	t.Logf("upgrade (%s): backfill %d requests, first run after upgrade %d, steady incremental %d (first run wrote %d leads)",
		dialect, backfill.total(), firstN.total(), steadyN.total(), first.Stats.LeadsWritten)
	t.Logf("upgrade (%s) by vendor: backfill %v; first run after upgrade %v; steady incremental %v", dialect, backfill, firstN, steadyN)

	// Incremental from the old cursors: a lost cursor backfills its account again, and a
	// backfill reads every page. Vendor by vendor, the first run may differ from a steady
	// one only by the pages the changes add: at most one, in the one account changed at
	// each vendor. Altogether it is a fraction of the backfill.
	for v, b := range backfill {
		if f, s := firstN[v], steadyN[v]; f > s+1 || f >= b {
			t.Errorf("%s: the first run after the upgrade took %d requests, a steady incremental run %d, the backfill %d: it re-read what the old cursors covered",
				v, f, s, b)
		}
	}
	if f, b := firstN.total(), backfill.total(); f*3 > b {
		t.Errorf("the first run after the upgrade took %d requests, the backfill %d: not an incremental run", f, b)
	}
	// The rows from before the upgrade compare equal to what the vendors send: only the
	// leads changed at the vendors are written.
	// And the LACRM contacts it re-read (its lookback) gain the channel their Lead Source
	// now gives: rewritten once.
	channeled := count(t, env, `SELECT count(*) FROM leads WHERE source = 'lacrm' AND kind = 'contact' AND revision > 1
AND channel IS NOT NULL AND lead_id <> '`+lacrmUpdated+`' AND sync_run_id = `+fmt.Sprint(first.Run))
	// And the LocaliQ leads it re-read (its re-read window) that have a first look, an archive
	// time or a call length, which the base commit did not keep (migration 00008): rewritten
	// once. How many depends on the hour: the window is recent days, the sandbox's leads are
	// spread over the past.
	timed := count(t, env, `SELECT count(*) FROM leads WHERE source = 'localiq' AND revision > 1
AND (read_at IS NOT NULL OR archived_at IS NOT NULL OR call_seconds > 0) AND sync_run_id = `+fmt.Sprint(first.Run))
	if first.Stats.LeadsWritten != int64(changed+channeled+timed) {
		t.Errorf("the first run after the upgrade wrote %d leads, want the %d added or changed at the vendors, the %d LACRM contacts given a channel and the %d LocaliQ leads given their times",
			first.Stats.LeadsWritten, changed, channeled, timed)
	}
	// The grants the old leadsync authorized lack the scopes of LeadConnector's new streams:
	// those are marked missing_scope, and the others carry on.
	if n := count(t, env, `SELECT count(*) FROM sync_state WHERE source = 'leadconnector' AND stream <> 'contacts'
AND last_outcome NOT IN ('missing_scope', 'restricted')`); n != 0 {
		t.Errorf("%d LeadConnector lifecycle streams synced with a grant that lacks their scopes", n)
	}

	// Nothing lost or duplicated, the changes present, every old row kept as it was (LACRM's
	// pipeline items moved to deals). LeadConnector's lifecycle rows wait for a grant with
	// their scopes.
	missingScope := regexp.MustCompile(`^leadconnector/[^:]+: missing (crm_dictionary|deals|submissions) row `)
	var diffs []string
	for _, d := range env.Diff(t) {
		if !missingScope.MatchString(d) {
			diffs = append(diffs, d)
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("after the upgrade the warehouse differs from the ground truth:\n%s", strings.Join(diffs[:min(20, len(diffs))], "\n"))
	}
	newLeads := leads(t, env)
	items := 0
	for _, o := range oldLeads {
		if o.kind == sources.KindPipelineItem {
			items++
		}
	}
	if got, want := len(newLeads), len(oldLeads)-items+added; got != want || items == 0 {
		t.Errorf("the warehouse holds %d lead rows after the upgrade, want %d (%d before, %d of them pipeline items moved to deals, %d added at the vendors)",
			got, want, len(oldLeads), items, added)
	}
	byKey := map[string]lead{}
	for _, l := range slices.Concat(newLeads, dealRows(t, env)) {
		if _, dup := byKey[l.key()]; dup {
			t.Errorf("lead %s stored twice after the upgrade", l.key())
		}
		byKey[l.key()] = l
	}
	for _, o := range oldLeads {
		n, ok := byKey[o.key()]
		switch {
		case !ok:
			t.Errorf("lead %s lost in the upgrade", o.key())
		case n.deleted != o.deleted:
			t.Errorf("lead %s: deleted %v before the upgrade, %v after", o.key(), o.deleted, n.deleted)
		case n.firstSeen != o.firstSeen:
			t.Errorf("lead %s: first seen %s before the upgrade, %s after: stored anew", o.key(), o.firstSeen, n.firstSeen)
		}
	}
	newCursors := cursors(t, env, true)
	for k := range accounts {
		cs := newCursors[k]
		if len(cs) == 0 || slices.Contains(cs, "") {
			t.Errorf("account %s after the upgrade has cursors %q: want each of its incremental streams to have one", k, cs)
		}
	}

	refreshAll(t, env, a)
}

// refreshAll makes every connection's stored grant refresh at its vendor, through the
// token store, and checks that the new token is what an API call then uses.
func refreshAll(t *testing.T, env *testenv.Env, a *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range a.Conns {
		name := c.Config.Name
		counters := env.Sandbox.Fake(c.Config.Source).Counters()
		creds := a.Store.Tokens(name, c.Refresher).Grant()
		tok, err := creds.Token(ctx)
		if err != nil {
			t.Errorf("%s: the stored grant after the upgrade: %v", name, err)
			continue
		}
		// As after a 401: the next Token must refresh.
		creds.Invalidate(tok)
		refreshes := counters.Get(simkit.CountRefreshes)
		fresh, err := creds.Token(ctx)
		if err != nil {
			t.Errorf("%s: refreshing the grant stored before the upgrade: %v", name, err)
			continue
		}
		if n := counters.Get(simkit.CountRefreshes) - refreshes; n != 1 || fresh.AccessToken == tok.AccessToken {
			t.Errorf("%s: %d refreshes at the vendor, access token changed %v: want one refresh and a new token", name, n, fresh.AccessToken != tok.AccessToken)
			continue
		}
		var accounts int
		for _, err := range c.Source.Accounts(ctx) {
			if err != nil {
				t.Errorf("%s: listing accounts with the refreshed grant: %v", name, err)
				break
			}
			accounts++
		}
		if accounts == 0 {
			t.Errorf("%s: the refreshed grant lists no accounts", name)
		}
		t.Logf("%s: grant refreshed once at the vendor; %d accounts listed with it", name, accounts)
	}
	// The refreshed tokens are the stored ones: a later start uses them.
	st, err := a.Store.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st {
		if g.NeedsReauth || time.Since(g.LastRefreshAt) > time.Minute {
			t.Errorf("grant of %s after the forced refresh: needs re-auth %v, last refreshed %s", g.Connection, g.NeedsReauth, g.LastRefreshAt)
		}
	}
}

// requireOldTruth checks the warehouse the base commit wrote against the ground truth as
// that leadsync stored it: every lead, with LACRM's pipeline items among the leads (they are
// deals now), and none of the lifecycle tables.
func requireOldTruth(t *testing.T, env *testenv.Env) {
	t.Helper()
	stored := env.Stored(t)
	var diffs []string
	for _, at := range env.Sandbox.GroundTruth() {
		if at.Restricted {
			continue
		}
		k := at.Source + "/" + at.AccountID
		want := map[string]time.Time{}
		for _, l := range at.Leads {
			want[l.ID] = l.UpdatedAt
		}
		if at.Source == sources.LACRM {
			for _, r := range at.Records {
				if r.Table == sources.TableDeals {
					want[r.ID] = r.Updated
				}
			}
		}
		got := map[string]time.Time{}
		for _, l := range stored[k] {
			got[l.ID] = l.UpdatedAt
		}
		for id, upd := range want {
			if g, ok := got[id]; !ok || !g.Equal(upd) {
				diffs = append(diffs, fmt.Sprintf("%s: lead %s missing or stale (%v, want %v)", k, id, g, upd))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: extra lead %s", k, id))
			}
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("the base commit's warehouse differs from the ground truth:\n%s", strings.Join(diffs[:min(20, len(diffs))], "\n"))
	}
}

// count runs a count query on the warehouse.
func count(t *testing.T, env *testenv.Env, query string) int {
	t.Helper()
	db := env.OpenDB(t)
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
