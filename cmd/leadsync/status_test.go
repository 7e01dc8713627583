package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
)

// Two connections, one failing every run (its grant revoked at the vendor) while the other
// succeeds: `status` shows the failing one's error in its connections section, and --json
// too; sync_run_connections has its failed runs next to the other's ok ones. The bug of
// issue #17: every account looked ok and nothing said the connection failed.
func TestStatusShowsFailingConnection(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(41), testenv.SQLite)
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	two := strings.Replace(string(cfg), "  - name: sandbox-leadconnector\n", "  - name: sandbox-leadconnector\n    enabled: false\n", 1)
	if two == string(cfg) {
		t.Fatal("the sandbox configuration has no sandbox-leadconnector connection to disable")
	}
	if err := os.WriteFile(env.ConfigPath, []byte(two), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Authorized(t)
	run := func(want int) {
		t.Helper()
		if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath); code != want {
			t.Fatalf("run --once: exit %d, want %d\nstdout: %s\nstderr: %s", code, want, stdout, proofTail(stderr))
		}
	}
	run(exitOK)
	for _, g := range env.Sandbox.LACRM.Tokens().Grants() {
		env.Sandbox.LACRM.RevokeGrant(g.ID)
	}
	run(exitFailed)
	run(exitFailed)

	code, out, errOut := runCLI(t, "status", "--config", env.ConfigPath)
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	t.Logf("status:\n%s", out)
	requireWidth(t, out)
	conns, _, _ := strings.Cut(out, "\n\n")
	failing := regexp.MustCompile(`(?m)^sandbox-lacrm\s+lacrm\s+needs re-auth\s+\d+s ago\s+failed, last ok \d+s ago\s+in \d+[smh]\n` +
		`  error: list accounts: lacrm: .*\n  fix: leadsync auth login sandbox-lacrm$`)
	if !failing.MatchString(conns) {
		t.Errorf("the connections section does not show sandbox-lacrm failing with its error and fix:\n%s", conns)
	}
	if !regexp.MustCompile(`(?m)^sandbox-localiq\s+localiq\s+ok\s+\d+s ago\s+ok\s+in \d+[smh]$`).MatchString(conns) ||
		strings.Count(conns, "error:") != 1 {
		t.Errorf("the connections section does not show sandbox-localiq ok, without an error:\n%s", conns)
	}
	if strings.Contains(conns, "sandbox-leadconnector") {
		t.Errorf("the disabled connection is listed:\n%s", conns)
	}

	code, out, errOut = runCLI(t, "status", "--json", "--config", env.ConfigPath)
	if code != exitOK {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	var doc struct {
		Connections []struct {
			Connection string `json:"connection"`
			Grant      string `json:"grant"`
			Fix        string `json:"fix"`
			LastRun    *struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"last_run"`
			LastOKAt time.Time `json:"last_ok_at"`
		} `json:"connections"`
		Attention []struct {
			Source  string `json:"source"`
			Problem string `json:"problem"`
		} `json:"attention"`
		Summary struct {
			AccountsOK int `json:"accounts_ok"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, c := range doc.Connections {
		if c.LastRun == nil || c.LastOKAt.IsZero() {
			t.Errorf("--json: %s has no last run or no last ok run: %+v", c.Connection, c)
			continue
		}
		got[c.Connection] = c.Grant + " " + c.LastRun.Status
		if failed := c.LastRun.Status == sink.RunFailed; failed != strings.Contains(c.LastRun.Error, "re-authoriz") {
			t.Errorf("--json: %s's last run %s with error %q", c.Connection, c.LastRun.Status, c.LastRun.Error)
		}
	}
	if len(got) != 2 || got["sandbox-lacrm"] != "needs_reauth failed" || got["sandbox-localiq"] != "ok ok" {
		t.Errorf("--json connections: %v, want sandbox-lacrm needs_reauth failed, sandbox-localiq ok ok", got)
	}
	if len(doc.Attention) == 0 || doc.Summary.AccountsOK == 0 {
		t.Errorf("--json: attention %+v, summary %+v; want the LACRM account and ok LocaliQ ones", doc.Attention, doc.Summary)
	}
	for _, a := range doc.Attention {
		if a.Source == sources.LACRM && a.Problem != problemReauth {
			t.Errorf("--json: the LACRM account's problem is %q, want %q", a.Problem, problemReauth)
		}
	}

	rows, err := env.OpenDB(t).Query(`SELECT connection, status, count(*), max(error) FROM sync_run_connections
GROUP BY connection, status ORDER BY connection, status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ledger []string
	for rows.Next() {
		var conn, status string
		var n int
		var errText *string
		if err := rows.Scan(&conn, &status, &n, &errText); err != nil {
			t.Fatal(err)
		}
		ledger = append(ledger, conn+" "+status+" "+strings.Repeat("x", n))
		if (status == sink.RunFailed) != (errText != nil) {
			t.Errorf("sync_run_connections: %s %s with error %v", conn, status, errText)
		}
	}
	if want := []string{"sandbox-lacrm failed xx", "sandbox-lacrm ok x", "sandbox-localiq ok xxx"}; strings.Join(ledger, "|") != strings.Join(want, "|") {
		t.Errorf("sync_run_connections rows (one x a run) = %q, want %q", ledger, want)
	}
}

// requireWidth fails when a line of out is wider than statusWidth.
func requireWidth(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > statusWidth {
			t.Errorf("a line of %d runes (want at most %d):\n%s", n, statusWidth, l)
		}
	}
}

// statusFixture is a warehouse's state as the status view gets it: connections with long
// names and long errors (one whose every listing answers 502, one whose grant is gone), and
// accounts in each state.
func statusFixture(now time.Time) (*config.Config, []sink.AccountStatus, []ops.GrantState, []sink.ConnectionStatus) {
	long := "agency-" + strings.Repeat("west-coast-", 6) + "locations"
	cfg := &config.Config{Schedule: "*/15 * * * *", FullSchedule: "0 3 * * 0", Connections: []config.Connection{
		{Name: long, Source: sources.LeadConnector, Schedule: "@every 1h"},
		{Name: "liq", Source: sources.LocaliQ},
		{Name: "crm", Source: sources.LACRM, Schedule: "off"},
	}}
	cfg.FullSchedule = config.Off
	grants := []ops.GrantState{
		{Connection: long, Source: sources.LeadConnector},
		{Connection: "liq", Source: sources.LocaliQ},
		{Connection: "crm", Source: sources.LACRM, NeedsReauth: true},
	}
	bad := "connection liq: list accounts: localiq: GET /advertisers: 502 Bad Gateway:\n<html>" + strings.Repeat("Ошибка шлюза ", 300) + "</html>"
	runs := []sink.ConnectionStatus{
		{Connection: long, Source: sources.LeadConnector, Run: 7, Trigger: sink.TriggerCron, Mode: sink.ModeFull, Status: sink.RunCancelled,
			StartedAt: now.Add(-40 * time.Minute), FinishedAt: now.Add(-30 * time.Minute), LastOKAt: now.Add(-100 * 24 * time.Hour)},
		{Connection: "liq", Source: sources.LocaliQ, Run: 8, Trigger: sink.TriggerCron, Mode: sink.ModeIncremental, Status: sink.RunFailed,
			StartedAt: now.Add(-4 * time.Minute), FinishedAt: now.Add(-3 * time.Minute), Error: bad, Stats: sink.RunStats{AccountsFailed: 1}},
	}
	name := strings.Repeat("Ristorante Pizzeria da Giovanni e Figli ", 4)
	var st []sink.AccountStatus
	for i := range 1234 { // synced 3 to 12 minutes ago
		st = append(st, sink.AccountStatus{Source: sources.LocaliQ, AccountID: "USA_" + string(rune('A'+i%26)) + strings.Repeat("9", i%7),
			Name: name, Access: sources.AccessOK, LastSyncedAt: now.Add(-3*time.Minute - time.Duration(i%10)*time.Minute)})
	}
	st = append(st,
		sink.AccountStatus{Source: sources.LeadConnector, AccountID: strings.Repeat("loc", 20), Name: name, Access: sources.AccessOK,
			LastSyncedAt: now.Add(-3 * time.Hour)}, // stale: more than two hours behind its hourly schedule
		sink.AccountStatus{Source: sources.LeadConnector, AccountID: "LOC2", Name: "Fresh", Access: sources.AccessOK,
			LastSyncedAt: now.Add(-90 * time.Minute)}, // not stale yet
		sink.AccountStatus{Source: sources.LeadConnector, AccountID: "LOC3", Name: name, Access: sources.AccessOK,
			LastError: strings.Repeat("stream contacts: 500 Internal Server Error ", 40)},
		sink.AccountStatus{Source: sources.LeadConnector, AccountID: "LOC4", Name: "Never", Access: sources.AccessOK},
		sink.AccountStatus{Source: sources.LocaliQ, AccountID: "USA_HIPAA", Name: "Clinic", Access: sources.AccessHIPAARestricted,
			AccessReason: "You are not permitted to perform this action."},
		sink.AccountStatus{Source: sources.LACRM, AccountID: "1234567890123456789", Name: "CRM", Access: sources.AccessOK,
			LastSyncedAt: now.Add(-time.Hour)},
	)
	return cfg, st, grants, runs
}

// The default view fits 120 columns whatever the names and errors, and still shows each
// connection's error and the accounts needing attention, worst first; --wide prints them whole.
func TestStatusViewFitsWidth(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 10, 7, 30, 0, time.Local)
	cfg, st, grants, runs := statusFixture(now)
	doc := statusJSON(cfg, st, grants, runs, now)

	var out bytes.Buffer
	printConnections(&out, doc, now, false)
	out.WriteString("\n")
	printAttention(&out, doc, now)
	out.WriteString("\n" + summaryLine(doc.Summary, now) + "\n")
	t.Logf("status:\n%s", out.String())
	requireWidth(t, out.String())
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^agency-west-coast-\S*…\s+leadconnector\s+ok\s+\d+m ago\s+cancelled \(full\), last ok \d+d ago\s+in \d+m$`),
		regexp.MustCompile(`(?m)^liq\s+localiq\s+ok\s+\d+m ago\s+failed, never ok\s+in \d+m\n  error: list accounts: localiq: GET /advertisers: 502 Bad Gateway: <html>Ошибка.*…$`),
		regexp.MustCompile(`(?m)^crm\s+lacrm\s+needs re-auth\s+never\s+-\s+manual\n  fix: leadsync auth login crm$`),
		regexp.MustCompile(`(?m)^1,235 accounts ok, last synced 3m ago \.\. 1h ago$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("status does not match %s", want)
		}
	}
	var problems []string
	for _, a := range doc.Attention {
		problems = append(problems, a.AccountID+" "+a.Problem)
	}
	want := []string{"1234567890123456789 needs_reauth", "LOC3 failed", "USA_HIPAA restricted", "LOC4 never_synced",
		strings.Repeat("loc", 20) + " stale"}
	if strings.Join(problems, "|") != strings.Join(want, "|") {
		t.Errorf("attention = %q, want %q", problems, want)
	}
	if doc.Summary.Accounts != 1240 || doc.Summary.AccountsOK != 1235 || doc.Summary.AccountsAttention != 5 {
		t.Errorf("summary = %+v", doc.Summary)
	}

	out.Reset()
	printConnections(&out, doc, now, true)
	printAccounts(&out, doc, st, grants)
	if wide := out.String(); !strings.Contains(wide, strings.TrimPrefix(oneLine(runs[1].Error), "connection liq: ")) || !strings.Contains(wide, oneLine(st[1236].LastError)) ||
		!strings.Contains(wide, cfg.Connections[0].Name) {
		t.Errorf("--wide cuts the names or errors")
	}
}

func TestStatusTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 10, 7, 30, 0, time.UTC)
	for d, want := range map[time.Duration]string{-time.Second: "0s", 59 * time.Second: "59s", 12 * time.Minute: "12m",
		47 * time.Hour: "47h", 50 * time.Hour: "2d"} {
		if got := ops.Span(d); got != want {
			t.Errorf("ops.Span(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	// "@every" runs on the scheduler's grid, cron specs at their next match.
	for spec, want := range map[string][2]time.Duration{
		"@every 15m":   {7*time.Minute + 30*time.Second, 15 * time.Minute},
		"*/15 * * * *": {7*time.Minute + 30*time.Second, 15 * time.Minute},
		"0 3 * * *":    {16*time.Hour + 52*time.Minute + 30*time.Second, 24 * time.Hour},
	} {
		s, interval := parseSchedule(spec, now)
		if s == nil {
			t.Errorf("%s: no schedule", spec)
			continue
		}
		if s.Next(now).Sub(now) != want[0] || interval != want[1] {
			t.Errorf("%s: next in %v, every %v; want %v, %v", spec, s.Next(now).Sub(now), interval, want[0], want[1])
		}
	}
	if s, _ := parseSchedule(config.Off, now); s != nil {
		t.Error("an off schedule has a next run")
	}
	// An outage failing every account: the section still fits a screen.
	doc := statusDoc{}
	for i := range maxAttention + 12 {
		doc.Attention = append(doc.Attention, attentionDoc{Source: sources.LACRM, AccountID: strings.Repeat("1", i+1), Problem: problemFailed})
	}
	var out bytes.Buffer
	printAttention(&out, doc, now)
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != maxAttention+3 ||
		lines[len(lines)-1] != "… and 12 more (leadsync status --wide lists every account)" {
		t.Errorf("attention with %d accounts: %d lines ending %q", len(doc.Attention), len(lines), lines[len(lines)-1])
	}
	if got := summaryLine(summaryDoc{Accounts: 2, AccountsOK: 1, NewestSyncedAt: now.Add(-time.Minute), OldestSyncedAt: now.Add(-time.Minute)}, now); got != "1 account ok, last synced 1m ago" {
		t.Errorf("summary of one account: %q", got)
	}
}
