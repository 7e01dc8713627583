package main

// The monitoring files of docs/monitoring/ (issue 17): the dashboard is well-formed and its
// queries parse, and every metric the rules and the dashboard use is exported by a running
// daemon, with the labels they select on and aggregate by.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
)

var (
	monitoringDir       = filepath.Join("..", "..", "docs", "monitoring")
	monitoringRulesFile = filepath.Join(monitoringDir, "leadsync.rules.yml")
	monitoringDashFile  = filepath.Join(monitoringDir, "leadsync-dashboard.json")
)

// monitoringExpr is one PromQL expression of the monitoring files, with where it is.
type monitoringExpr struct{ where, expr string }

// monitoringRules reads the rules file: every expression, and the recording rules' names.
func monitoringRules(t *testing.T) (exprs []monitoringExpr, recorded map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(monitoringRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct{ Record, Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", monitoringRulesFile, err)
	}
	recorded = map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if r.Record != "" {
				name = r.Record
				recorded[r.Record] = true
			}
			exprs = append(exprs, monitoringExpr{"rule " + name, r.Expr})
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s has no rules", monitoringRulesFile)
	}
	return exprs, recorded
}

// monitoringDashboard is the part of the Grafana dashboard the tests read.
type monitoringDashboard struct {
	Inputs []struct {
		Name, Type string
		PluginID   string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int `json:"schemaVersion"`
	UID, Title    string
	Panels        []monitoringPanel
	Templating    struct {
		List []struct {
			Name       string
			Type       string
			Datasource *monitoringDatasource
			Query      json.RawMessage // a string, or {"query": ...}
		}
	}
}

type monitoringPanel struct {
	ID          json.Number
	Type, Title string
	Datasource  *monitoringDatasource
	GridPos     struct{ H, W, X, Y int }
	Targets     []struct {
		RefID      string `json:"refId"`
		Expr       string
		Datasource *monitoringDatasource
	}
	Options struct{ Content string }
	Panels  []monitoringPanel // a collapsed row's
}

type monitoringDatasource struct{ Type, UID string }

func monitoringReadDashboard(t *testing.T) monitoringDashboard {
	t.Helper()
	b, err := os.ReadFile(monitoringDashFile)
	if err != nil {
		t.Fatal(err)
	}
	var d monitoringDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not a dashboard's JSON: %v", monitoringDashFile, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", monitoringDashFile)
	}
	return d
}

// allPanels flattens the rows.
func (d monitoringDashboard) allPanels() []monitoringPanel {
	var out []monitoringPanel
	var walk func(ps []monitoringPanel)
	walk = func(ps []monitoringPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// labelValues is a Grafana variable query label_values(metric{...}, label).
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// exprs are the dashboard's PromQL: the panels' targets and the variables' metrics.
func (d monitoringDashboard) exprs(t *testing.T) []monitoringExpr {
	t.Helper()
	var out []monitoringExpr
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, monitoringExpr{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var o struct{ Query string }
			if err := json.Unmarshal(v.Query, &o); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q = o.Query
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(metric, label)", v.Name, q)
		}
		out = append(out, monitoringExpr{"variable " + v.Name, m[1]})
	}
	return out
}

// grafanaVars are the dashboard's variables as promtool sees them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"$job", ".*", "$connection", ".*")

// The dashboard is what Grafana imports: JSON with the DS_PROMETHEUS input used by every
// panel, schema 39, panels that fit the grid without overlapping, a webhook-lag row that
// says it comes with webhooks, and queries that parse as PromQL (checked by promtool).
func TestMonitoringDashboard(t *testing.T) {
	t.Parallel()
	d := monitoringReadDashboard(t)
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed to import it", d.UID, d.Title)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want the one Prometheus datasource DS_PROMETHEUS", d.Inputs)
	}
	wantDS := func(where string, ds *monitoringDatasource) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != "${DS_PROMETHEUS}" {
			t.Errorf("%s: datasource %+v, want prometheus ${DS_PROMETHEUS}", where, ds)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			wantDS("variable "+v.Name, v.Datasource)
		}
	}
	ids := map[json.Number]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	webhooks := false
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %s used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		switch p.Type {
		case "row":
		case "text":
			if strings.Contains(strings.ToLower(p.Title), "webhook") {
				webhooks = strings.Contains(p.Options.Content, "once webhooks exist")
			}
		default:
			wantDS(fmt.Sprintf("panel %q", p.Title), p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("panel %q (%s) has no query", p.Title, p.Type)
			}
			for _, tg := range p.Targets {
				wantDS(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Datasource)
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s: empty expr", p.Title, tg.RefID)
				}
			}
		}
	}
	if !webhooks {
		t.Errorf("no webhook-lag text panel saying it comes once webhooks exist")
	}

	// The queries parse: promtool checks them as recording rules, the variables replaced.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool (Debian's prometheus package) is missing under CI: %v", err)
		}
		t.Skipf("promtool is not installed (apt-get install prometheus): the dashboard's queries are not checked")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	exprs := d.exprs(t)
	for i, e := range exprs {
		rules = append(rules, rule{fmt.Sprintf("dashboard:query_%d:check", i), grafanaVars.Replace(e.expr)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s", len(rules), err, out)
		for i, e := range exprs {
			t.Logf("query_%d: %s: %s", i, e.where, e.expr)
		}
	}
}

var (
	// recordingName is a recording rule's name (level:metric:operations): the colons set it
	// apart from exported metrics.
	recordingName = regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*[a-zA-Z0-9_]`)
	// exportedName is a metric leadsync exports: its own, and the Go runtime's and
	// process collector's.
	exportedName = regexp.MustCompile(`\b(leadsync|go|process)_[a-z0-9_]+\b`)
	// upName is Prometheus's own series per target: not on /metrics.
	upName = regexp.MustCompile(`\bup\b`)
)

// monitoringUsedNames scans every expression of the rules and the dashboard for metric
// names, checks that each recording rule used is defined, and returns the exported metrics
// used, each with where, and the expressions.
func monitoringUsedNames(t *testing.T) (map[string][]string, []monitoringExpr) {
	t.Helper()
	rules, recorded := monitoringRules(t)
	exprs := append(rules, monitoringReadDashboard(t).exprs(t)...)
	used := map[string][]string{}
	for _, e := range exprs {
		recordings := 0
		rest := recordingName.ReplaceAllStringFunc(e.expr, func(name string) string {
			recordings++
			if !recorded[name] {
				t.Errorf("%s uses recording rule %s, which %s does not define", e.where, name, monitoringRulesFile)
			}
			return " "
		})
		found := exportedName.FindAllString(rest, -1)
		if len(found) == 0 && recordings == 0 && !upName.MatchString(rest) {
			t.Errorf("%s: no metric name found in %q (the scan is out of date?)", e.where, e.expr)
		}
		for _, name := range found {
			used[name] = append(used[name], e.where)
		}
	}
	return used, exprs
}

// monitoringExported reads the metric names of a scrape's samples (a histogram's as its
// _bucket, _sum and _count series, as PromQL names them), with the label names each
// carries, and their # TYPE lines.
func monitoringExported(t *testing.T, body string) (samples map[string]map[string]bool, types map[string]string) {
	t.Helper()
	samples, types = map[string]map[string]bool{}, map[string]string{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.IndexAny(line, "{ ")
		if i <= 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		name := line[:i]
		if samples[name] == nil {
			samples[name] = map[string]bool{}
		}
		if line[i] == '{' {
			for _, l := range monitoringLabelNames(t, line[i+1:]) {
				samples[name][l] = true
			}
		}
	}
	return samples, types
}

// monitoringLabelNames reads the label names of `a="x",b="y\"z"} 1`.
func monitoringLabelNames(t *testing.T, s string) []string {
	t.Helper()
	var names []string
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return names
		}
		eq := strings.Index(s, `="`)
		if eq <= 0 {
			t.Fatalf("bad labels %q", s)
		}
		names = append(names, s[:eq])
		s = s[eq+2:]
		for i := 0; ; i++ {
			if i >= len(s) {
				t.Fatalf("unterminated label value in %q", s)
			}
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				s = s[i+1:]
				break
			}
		}
	}
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	selector   = regexp.MustCompile(`\b((?:leadsync|go|process)_[a-z0-9_]+)\s*\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingBy = regexp.MustCompile(`\b(?:by|on)\s*\(([^)]*)\)`)
	// targetLabels are added by Prometheus to every scraped series.
	targetLabels = map[string]bool{"job": true, "instance": true}
)

// monitoringCheckLabels checks that the labels the expressions select on and aggregate by
// are on the metrics they use: a `max by (connection)` over series without a connection
// label quietly becomes one group for every connection.
func monitoringCheckLabels(t *testing.T, exprs []monitoringExpr, samples map[string]map[string]bool) {
	t.Helper()
	has := func(metric, label string) bool { return samples[metric][label] }
	for _, e := range exprs {
		expr := quoted.ReplaceAllString(recordingName.ReplaceAllString(e.expr, " "), `""`)
		for _, m := range selector.FindAllStringSubmatch(expr, -1) {
			for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
				if !targetLabels[l[1]] && !has(m[1], l[1]) {
					t.Errorf("%s selects %s on label %s, which the daemon does not export", e.where, m[1], l[1])
				}
			}
		}
		metrics := exportedName.FindAllString(expr, -1)
		for _, g := range groupingBy.FindAllStringSubmatch(expr, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				l = strings.TrimSpace(l)
				if l == "" || targetLabels[l] {
					continue
				}
				if !slices.ContainsFunc(metrics, func(m string) bool { return has(m, l) }) {
					t.Errorf("%s aggregates by %s, which none of %v carries", e.where, l, metrics)
				}
			}
		}
	}
}

// monitoringBadID gives the first contact of a LeadConnector page an object for its id: the
// record is quarantined (leadsync_records_rejected_total) and the run goes on.
func monitoringBadID(body []byte) []byte {
	var page map[string]any
	if json.Unmarshal(body, &page) != nil {
		return body
	}
	contacts, _ := page["contacts"].([]any)
	if len(contacts) == 0 {
		return body
	}
	if c, ok := contacts[0].(map[string]any); ok {
		c["id"] = map[string]any{"oid": 1}
	}
	out, err := json.Marshal(page)
	if err != nil {
		return body
	}
	return out
}

// Every metric name the rules and the dashboard use is on a running daemon's /metrics.
// Some series only exist after their event, so the sandbox is made to produce each one:
// 429s (leadsync_http_throttled_total, and the retries they cause), a LACRM token that
// expires in seconds (leadsync_token_refreshes_total), a LeadConnector record without a
// readable id behind a proxy (leadsync_records_rejected_total), and the sandbox's forbidden
// location (leadsync_account_restricted = 1). Only `up` is not checked: Prometheus makes
// it per target, leadsync does not export it. The labels the expressions select on and
// aggregate by must be on those series too (monitoringCheckLabels).
func TestMonitoringMetricsExportedByDaemon(t *testing.T) {
	t.Parallel()
	used, exprs := monitoringUsedNames(t)
	for _, must := range []string{"leadsync_runs_total", "leadsync_run_last_finished_timestamp_seconds", "leadsync_grant_needs_reauth", "leadsync_account_lag_seconds", "leadsync_http_throttled_total"} {
		if used[must] == nil {
			t.Errorf("the monitoring files do not use %s", must)
		}
	}

	opts := testenv.Small(41)
	opts.LACRM.TokenTTL = 4 * time.Second // refreshed half-way: every 2 s
	env := testenv.New(t, opts, testenv.SQLite)
	proxy := &proofVendorProxy{target: env.Sandbox.URL, n: 1, mangle: monitoringBadID, passed: map[string]int{}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("base_url: \"" + env.Sandbox.URL + "/leadconnector\"\n")
	if !bytes.Contains(cfg, old) {
		t.Fatalf("config has no %s", old)
	}
	cfg = bytes.Replace(cfg, old, []byte("base_url: \""+srv.URL+"/leadconnector\"\n"), 1)
	if err := os.WriteFile(env.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Authorized(t)
	env.Sandbox.SetFaults(simkit.FaultSettings{Rate429: 0.1}) // after authorization: token calls are not retried
	daemonConfig(t, env)

	cmd, logs, exited := daemonStart(t, env.ConfigPath)
	url := logs.field(t, "serving metrics and health", "url")

	// The daemon runs every second: wait until every event has happened at least once.
	var samples map[string]map[string]bool
	var types map[string]string
	var missing []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, body := daemonGet(t, url+"/metrics")
		samples, types = monitoringExported(t, body)
		missing = missing[:0]
		for name := range used {
			if samples[name] == nil {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	slices.Sort(missing)
	for _, name := range missing {
		t.Errorf("%s is not exported by the running daemon (TYPE %q), used by %s", name, types[name], strings.Join(used[name], "; "))
	}
	// A histogram's series are asked for by their suffixed names, of a metric typed histogram.
	for name := range used {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && types[base] != "histogram" && samples[name] != nil {
				t.Errorf("%s: %s is a %q, not a histogram", name, base, types[base])
			}
		}
	}
	if len(missing) == 0 {
		t.Logf("the %d metric names the monitoring files use are all exported", len(used))
	}
	monitoringCheckLabels(t, exprs, samples)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v (want status 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop within 30 s of SIGTERM")
	}
}
