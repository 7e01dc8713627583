package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/mattn/go-sqlite3" // the demo reads its SQLite warehouse directly

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/worker"
)

// demoQueries are the example queries the demo prints and runs.
var demoQueries = []struct{ title, sql string }{
	{"Leads per source and kind", `SELECT source, kind, COUNT(*) AS leads
FROM leads_current GROUP BY source, kind ORDER BY source, leads DESC`},
	{"Leads per channel over the last 90 days", `SELECT COALESCE(NULLIF(channel, ''), '(none)') AS channel, COUNT(*) AS leads
FROM leads_current WHERE created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-90 days')
GROUP BY 1 ORDER BY leads DESC LIMIT 8`},
	{"Freshness and access per account", `SELECT source, account_id, access, last_synced_at
FROM accounts ORDER BY source, account_id LIMIT 12`},
	{"Streams per account: a 403 restricts the stream the vendor refused", `SELECT source, stream, last_outcome, COUNT(*) AS accounts
FROM sync_state GROUP BY source, stream, last_outcome ORDER BY source, stream, last_outcome`},
	{"The lead → deal → won funnel by source and channel (deals: opportunities, LACRM pipeline items)", `SELECT l.source,
       COALESCE(NULLIF(l.channel, ''), '(none)') AS channel,
       COUNT(DISTINCT l.account_id || '/' || l.lead_id) AS leads,
       COUNT(DISTINCT d.account_id || '/' || d.contact_id) AS with_deal,
       COUNT(DISTINCT CASE WHEN d.status_category = 'won' THEN d.account_id || '/' || d.contact_id END) AS won
FROM leads_shareable l
LEFT JOIN deals_shareable d ON d.source = l.source AND d.account_id = l.account_id AND d.contact_id = l.lead_id
WHERE l.source IN (SELECT source FROM deals_shareable)
GROUP BY 1, 2 ORDER BY leads DESC LIMIT 8`},
	{"Open and won deal value per pipeline stage (opportunity_stage_history keeps each change from now on)", `SELECT d.source, p.pipeline_name, p.stage_name, d.status_category,
       COUNT(*) AS deals, ROUND(SUM(d.monetary_value), 2) AS value
FROM deals_shareable d
JOIN pipeline_stages p ON p.source = d.source AND p.account_id = d.account_id AND p.stage_id = d.stage_id
WHERE d.status_category IN ('open', 'won')
GROUP BY 1, 2, 3, 4 ORDER BY value DESC LIMIT 8`},
	{"Cost per lead by campaign (LocaliQ spend ÷ its leads in the warehouse)", `WITH spend AS (
  SELECT source, account_id, campaign_name, SUM(spend) AS spend FROM campaign_cycles GROUP BY 1, 2, 3),
synced AS (SELECT source, account_id, campaign, COUNT(*) AS leads FROM leads_shareable GROUP BY 1, 2, 3)
SELECT s.campaign_name, ROUND(SUM(s.spend), 2) AS spend, SUM(l.leads) AS leads,
       ROUND(SUM(s.spend) / NULLIF(SUM(l.leads), 0), 2) AS cost_per_lead
FROM spend s JOIN synced l ON l.source = s.source AND l.account_id = s.account_id AND l.campaign = s.campaign_name
GROUP BY 1 ORDER BY spend DESC LIMIT 6`},
}

// demoOptions are demo's flags.
type demoOptions struct {
	db    string
	fresh bool
	seed  uint64
}

func cmdDemo(ctx context.Context, f *flags, o demoOptions, stdout, stderr io.Writer) (int, error) {
	dbPath, err := filepath.Abs(o.db)
	if err != nil {
		return exitUsage, err
	}
	if o.fresh {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(dbPath + suffix)
		}
	}
	// Tokens and their key live in a scratch state directory: the sandbox grants are new
	// each time.
	state, err := os.MkdirTemp("", "leadsync-demo-")
	if err != nil {
		return exitFailed, err
	}
	defer os.RemoveAll(state)

	fmt.Fprintln(stdout, "leadsync demo: starting the sandbox CRMs (crmsim) on loopback…")
	demoData := map[string]any{}
	for _, v := range vendors.All() {
		if v.Fake != nil && v.Fake.Demo != nil {
			demoData[v.Name] = v.Fake.Demo()
		}
	}
	sb := sandbox.New(sandbox.Options{Seed: o.seed, Vendor: demoData})
	srv, err := sb.Start("127.0.0.1:0")
	if err != nil {
		return exitFailed, err
	}
	defer srv.Close()
	cfgPath, err := sb.WriteConfig(state, srv.URL, "sqlite://"+dbPath)
	if err != nil {
		return exitFailed, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return exitFailed, fmt.Errorf("demo config: %w", err)
	}
	// The demo's own output is the point: its log says only errors, unless asked for more.
	quiet := config.Log{Level: "error", Format: "text"}
	if err := f.overrideLog(&quiet); err != nil {
		return exitUsage, err
	}
	prog, log := runProgress("auto", runConnections(cfg, nil), quiet, stderr)
	a, err := app.Open(ctx, cfg, log, app.Options{Version: buildVersion().String()})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()

	// Authorize every connection through the real flows: the code flow with a loopback
	// callback (the sandbox's pages approve automatically), and LocaliQ's password grant.
	if err := a.AuthorizeAll(ctx, sandbox.Browser, stdout); err != nil {
		return exitFailed, err
	}

	soft, hard, stop := stopContexts(ctx, cfg.ShutdownTimeout.D(), prog)
	defer stop()
	a.Worker.Progress = prog
	prog.Start()
	start := time.Now()
	res, err := a.Worker.Run(soft, worker.RunOptions{Trigger: sink.TriggerOnce, Hard: hard})
	took := time.Since(start)
	prog.Finish(res.Status == sink.RunCancelled)
	if err != nil {
		return exitFailed, err
	}
	fmt.Fprintln(stdout)
	printSummary(stdout, res)
	if err := demoReport(ctx, stdout, dbPath, res, took); err != nil {
		return exitFailed, err
	}
	switch res.Status {
	case sink.RunOK:
		return exitOK, nil
	case sink.RunCancelled:
		return exitInterrupted, nil
	}
	return exitFailed, nil
}

func demoReport(ctx context.Context, w io.Writer, dbPath string, res worker.Result, took time.Duration) error {
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var accounts, leads int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM leads_current)`).Scan(&accounts, &leads); err != nil {
		return fmt.Errorf("demo summary: %w", err)
	}
	rate := float64(res.Stats.LeadsWritten) / took.Seconds()
	fmt.Fprintf(w, "\n%d accounts, %d leads in %s (this run wrote %d leads in %s: %.0f leads/s)\n",
		accounts, leads, dbPath, res.Stats.LeadsWritten, took.Round(time.Millisecond), rate)
	rows, err := db.QueryContext(ctx, `SELECT source, account_id, access, COALESCE(access_reason, '') FROM accounts WHERE access <> 'ok' ORDER BY 1, 2`)
	if err != nil {
		return err
	}
	var restricted []string
	for rows.Next() {
		var src, acct, access, reason string
		if err := rows.Scan(&src, &acct, &access, &reason); err != nil {
			rows.Close()
			return err
		}
		restricted = append(restricted, fmt.Sprintf("  %s %s: %s (%s)", src, acct, access, reason))
	}
	rows.Close()
	if len(restricted) > 0 {
		fmt.Fprintf(w, "restricted accounts (an expected state: their fields are tagged in restricted_fields):\n%s\n", strings.Join(restricted, "\n"))
	}
	fmt.Fprintf(w, "\nTry it yourself: sqlite3 %s\n", dbPath)
	for _, q := range demoQueries {
		fmt.Fprintf(w, "\n-- %s\n%s;\n", q.title, q.sql)
		if err := printQuery(ctx, w, db, q.sql); err != nil {
			return fmt.Errorf("demo query %q: %w", q.title, err)
		}
	}
	if err := demoHIPAARow(ctx, w, db); err != nil {
		return fmt.Errorf("demo HIPAA row: %w", err)
	}
	return nil
}

// hipaaView is the view the demo shows a HIPAA lead in: the one for analysts trusted with
// PII, which still withholds the PII of HIPAA-protected leads (docs/analysts.md, Views).
const hipaaView = "leads_pii"

// demoHIPAARow prints one HIPAA-protected lead as hipaaView shows it, and the columns the
// view withholds on it: those NULL in the view but not in leads. Of the HIPAA leads it picks
// the one with the most withheld columns. It prints none of their values, and nothing when
// no HIPAA lead was synced.
func demoHIPAARow(ctx context.Context, w io.Writer, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT * FROM `+hipaaView+` LIMIT 0`)
	if err != nil {
		return err
	}
	cols, err := rows.Columns()
	rows.Close()
	if err != nil {
		return err
	}
	withheld := make([]string, len(cols))
	for i, c := range cols {
		withheld[i] = fmt.Sprintf("v.%[1]s IS NULL AND l.%[1]s IS NOT NULL", quoteIdent(c))
	}
	rows, err = db.QueryContext(ctx, `SELECT v.source, v.account_id, v.lead_id, `+strings.Join(withheld, ", ")+`
FROM `+hipaaView+` AS v JOIN leads AS l ON l.source = v.source AND l.account_id = v.account_id AND l.lead_id = v.lead_id
WHERE v.hipaa ORDER BY v.source, v.account_id, v.lead_id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var key [3]string
	var hidden []string
	for rows.Next() {
		var k [3]string
		flags := make([]bool, len(cols))
		dest := []any{&k[0], &k[1], &k[2]}
		for i := range flags {
			dest = append(dest, &flags[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		var h []string
		for i, f := range flags {
			if f {
				h = append(h, cols[i])
			}
		}
		if len(h) > len(hidden) {
			key, hidden = k, h
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(hidden) == 0 {
		return nil
	}
	q := fmt.Sprintf(`SELECT source, account_id, lead_id, kind, status, channel, campaign, created_at, hipaa
FROM %s WHERE source = %s AND account_id = %s AND lead_id = %s`, hipaaView, quoteLiteral(key[0]), quoteLiteral(key[1]), quoteLiteral(key[2]))
	fmt.Fprintf(w, "\n-- A HIPAA-protected lead in %s, the view for analysts trusted with PII\n%s;\n", hipaaView, q)
	if err := printQuery(ctx, w, db, q); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: withheld (HIPAA); leads_shareable withholds them on every lead\n", strings.Join(hidden, ", "))
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func printQuery(ctx context.Context, w io.Writer, db *sql.DB, q string) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		cells := make([]string, len(cols))
		for i, v := range vals {
			cells[i] = v.String
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tw.Flush()
}
