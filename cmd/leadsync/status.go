package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
)

// statusWidth is what the default `status` output fits in: a connection whose every run
// fails must be readable in an ordinary terminal, its error included.
const statusWidth = 120

// statusOptions are status's flags.
type statusOptions struct {
	asJSON bool
	wide   bool // every account, nothing truncated
}

// Account problems, worst first (the attention section's order, and its JSON "problem").
const (
	problemReauth     = "needs_reauth"
	problemFailed     = "failed"
	problemRestricted = "restricted"
	problemNever      = "never_synced"
	problemStale      = "stale"
)

var problemRank = []string{problemReauth, problemFailed, problemRestricted, problemNever, problemStale}

// Grant states of a connection (the JSON "grant").
const (
	grantOK            = "ok"
	grantNeedsReauth   = "needs_reauth"
	grantNeedsRotation = "needs_rotation"
)

func cmdStatus(ctx context.Context, f *flags, o statusOptions, stdout io.Writer) (int, error) {
	a, err := openApp(ctx, f, app.Options{})
	if err != nil {
		return exitFailed, err
	}
	defer a.Close()
	doc, st, grants, now, err := loadStatus(ctx, a)
	if err != nil {
		return exitFailed, err
	}
	switch {
	case o.asJSON:
		return exitOK, writeJSON(stdout, doc)
	case o.wide:
		printConnections(stdout, doc, now, true)
		fmt.Fprintln(stdout)
		printAccounts(stdout, doc, st, grants)
	default:
		printConnections(stdout, doc, now, false)
		fmt.Fprintln(stdout)
		printAttention(stdout, doc, now)
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, summaryLine(doc.Summary, now))
	}
	return exitOK, nil
}

// loadStatus reads what `leadsync status` and the status page show.
func loadStatus(ctx context.Context, a *app.App) (statusDoc, []sink.AccountStatus, []ops.GrantState, time.Time, error) {
	st, err := a.Sink.Status(ctx)
	if err != nil {
		return statusDoc{}, nil, nil, time.Time{}, err
	}
	runs, err := a.Sink.ConnectionRuns(ctx)
	if err != nil {
		return statusDoc{}, nil, nil, time.Time{}, err
	}
	grants, err := a.Grants(ctx)
	if err != nil {
		return statusDoc{}, nil, nil, time.Time{}, err
	}
	now := time.Now()
	return statusJSON(a.CurrentConfig(), st, grants, runs, now), st, grants, now, nil
}

// The `status --json` document: stable snake_case keys.
type (
	statusDoc struct {
		Connections []connectionDoc `json:"connections"`
		Attention   []attentionDoc  `json:"attention"`
		Summary     summaryDoc      `json:"summary"`
		Accounts    []accountDoc    `json:"accounts"`
	}
	connectionDoc struct {
		Connection    string `json:"connection"`
		Source        string `json:"source"`
		NeedsReauth   bool   `json:"needs_reauth"`
		NeedsRotation bool   `json:"needs_rotation"`
		Grant         string `json:"grant"`         // ok, needs_reauth, needs_rotation
		Fix           string `json:"fix,omitempty"` // what to run when the grant is not ok
		Schedule      string `json:"schedule"`
		FullSchedule  string `json:"full_schedule"`
		// NextRunAt is when its schedules next fire (zero when both are off), and NextRunFull
		// whether that run is the full pass.
		NextRunAt   time.Time `json:"next_run_at,omitzero"`
		NextRunFull bool      `json:"next_run_full"`
		LastRun     *runDoc   `json:"last_run"` // null when it never finished a run
		LastOKAt    time.Time `json:"last_ok_at,omitzero"`
		// interval is the time between two runs of Schedule, for staleness; not printed.
		interval time.Duration
	}
	runDoc struct {
		Run                int64     `json:"run_id"`
		Trigger            string    `json:"trigger"`
		Mode               string    `json:"mode"`
		Status             string    `json:"status"`
		StartedAt          time.Time `json:"started_at"`
		FinishedAt         time.Time `json:"finished_at"`
		AccountsOK         int       `json:"accounts_ok"`
		AccountsFailed     int       `json:"accounts_failed"`
		AccountsRestricted int       `json:"accounts_restricted"`
		LeadsWritten       int64     `json:"leads_written"`
		Error              string    `json:"error,omitempty"`
	}
	attentionDoc struct {
		Source       string    `json:"source"`
		AccountID    string    `json:"account_id"`
		Name         string    `json:"name"`
		Connection   string    `json:"connection,omitempty"` // "" when several share the source
		Problem      string    `json:"problem"`              // needs_reauth, failed, restricted, never_synced, stale
		Detail       string    `json:"detail,omitempty"`     // the error, the vendor's reason, or the fix
		LastSyncedAt time.Time `json:"last_synced_at,omitzero"`
	}
	// summaryDoc sums up the accounts that need no attention.
	summaryDoc struct {
		Accounts          int       `json:"accounts"`
		AccountsOK        int       `json:"accounts_ok"`
		AccountsAttention int       `json:"accounts_needing_attention"`
		NewestSyncedAt    time.Time `json:"newest_synced_at,omitzero"`
		OldestSyncedAt    time.Time `json:"oldest_synced_at,omitzero"`
	}
	accountDoc struct {
		Source         string      `json:"source"`
		AccountID      string      `json:"account_id"`
		Name           string      `json:"name"`
		Access         string      `json:"access"`
		AccessReason   string      `json:"access_reason,omitempty"`
		Connection     string      `json:"connection,omitempty"` // "" when several share the source
		NeedsReauth    bool        `json:"needs_reauth"`
		LastSyncedAt   time.Time   `json:"last_synced_at,omitzero"`
		LastError      string      `json:"last_error,omitempty"`
		Leads          int64       `json:"leads"`
		Streams        []streamDoc `json:"streams"`
		LeaseOwner     string      `json:"lease_owner,omitempty"`
		LeaseExpiresAt time.Time   `json:"lease_expires_at,omitzero"`
		LastSyncedBy   string      `json:"last_synced_by,omitempty"`
	}
	streamDoc struct {
		Name         string         `json:"name"`
		LastOutcome  string         `json:"last_outcome,omitempty"`
		LastError    string         `json:"last_error,omitempty"`
		LastSyncedAt time.Time      `json:"last_synced_at,omitzero"`
		Cursor       sources.Cursor `json:"cursor,omitempty"`
	}
)

func statusJSON(cfg *config.Config, st []sink.AccountStatus, grants []ops.GrantState, runs []sink.ConnectionStatus, now time.Time) statusDoc {
	doc := statusDoc{Connections: make([]connectionDoc, len(grants)), Attention: []attentionDoc{},
		Accounts: make([]accountDoc, len(st))}
	for i, g := range grants {
		doc.Connections[i] = connectionJSON(cfg, g, runs, now)
	}
	for i, s := range st {
		conn, reauth := accountGrant(grants, s.Source)
		doc.Accounts[i] = accountDoc{Source: s.Source, AccountID: s.AccountID, Name: s.Name, Access: s.Access,
			AccessReason: s.AccessReason, Connection: conn, NeedsReauth: reauth,
			LastSyncedAt: s.LastSyncedAt, LastError: s.LastError, Leads: s.Leads, Streams: []streamDoc{},
			LeaseOwner: s.LeaseOwner, LeaseExpiresAt: s.LeaseExpiresAt, LastSyncedBy: s.LastSyncedBy}
		for _, ss := range s.Streams {
			doc.Accounts[i].Streams = append(doc.Accounts[i].Streams, streamDoc{Name: ss.Name, LastOutcome: ss.LastOutcome,
				LastError: ss.LastError, LastSyncedAt: ss.LastSyncedAt, Cursor: ss.Cursor})
		}
		doc.Summary.Accounts++
		if a, ok := attention(doc.Accounts[i], doc.Connections, grants, now); ok {
			doc.Attention = append(doc.Attention, a)
			continue
		}
		doc.Summary.AccountsOK++
		if t := s.LastSyncedAt; doc.Summary.NewestSyncedAt.IsZero() || t.After(doc.Summary.NewestSyncedAt) {
			doc.Summary.NewestSyncedAt = t
		}
		if t := s.LastSyncedAt; doc.Summary.OldestSyncedAt.IsZero() || t.Before(doc.Summary.OldestSyncedAt) {
			doc.Summary.OldestSyncedAt = t
		}
	}
	doc.Summary.AccountsAttention = len(doc.Attention)
	slices.SortStableFunc(doc.Attention, func(a, b attentionDoc) int {
		return cmp.Or(cmp.Compare(slices.Index(problemRank, a.Problem), slices.Index(problemRank, b.Problem)),
			strings.Compare(a.Source, b.Source), strings.Compare(a.AccountID, b.AccountID))
	})
	return doc
}

func connectionJSON(cfg *config.Config, g ops.GrantState, runs []sink.ConnectionStatus, now time.Time) connectionDoc {
	d := connectionDoc{Connection: g.Connection, Source: g.Source, NeedsReauth: g.NeedsReauth, NeedsRotation: g.NeedsRotation,
		Grant: grantOK, FullSchedule: cfg.FullSchedule}
	switch {
	case g.NeedsReauth:
		d.Grant, d.Fix = grantNeedsReauth, "leadsync auth login "+g.Connection
	case g.NeedsRotation:
		d.Grant, d.Fix = grantNeedsRotation, "put a new token in its secret (leadsync auth status says which)"
	}
	d.Schedule = cfg.Schedule
	for _, cc := range cfg.Connections {
		if cc.Name == g.Connection {
			d.Schedule = cmp.Or(cc.Schedule, cfg.Schedule)
		}
	}
	var inc, full cron.Schedule
	inc, d.interval = parseSchedule(d.Schedule, now)
	full, _ = parseSchedule(d.FullSchedule, now)
	if inc != nil {
		d.NextRunAt = inc.Next(now)
	}
	if full != nil {
		if next := full.Next(now); d.NextRunAt.IsZero() || next.Before(d.NextRunAt) {
			d.NextRunAt, d.NextRunFull = next, true
		}
	}
	for _, r := range runs {
		if r.Connection != g.Connection {
			continue
		}
		d.LastOKAt = r.LastOKAt
		d.LastRun = &runDoc{Run: int64(r.Run), Trigger: r.Trigger, Mode: r.Mode, Status: r.Status, StartedAt: r.StartedAt,
			FinishedAt: r.FinishedAt, AccountsOK: r.Stats.AccountsOK, AccountsFailed: r.Stats.AccountsFailed,
			AccountsRestricted: r.Stats.AccountsRestricted, LeadsWritten: r.Stats.LeadsWritten, Error: r.Error}
	}
	return d
}

// parseSchedule reads a cron spec as the scheduler does (worker.Scheduler: "@every" runs on
// a grid anchored at the zero time), with the interval between its next two runs; nil for
// "off" or a spec it cannot read.
func parseSchedule(spec string, now time.Time) (cron.Schedule, time.Duration) {
	if spec == "" || spec == config.Off {
		return nil, 0
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, 0
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		s = gridEvery(every.Delay)
	}
	next := s.Next(now)
	return s, s.Next(next).Sub(next)
}

// gridEvery is "@every d" as the scheduler runs it: at the multiples of d since the zero time.
type gridEvery time.Duration

func (g gridEvery) Next(t time.Time) time.Time {
	return t.Truncate(time.Duration(g)).Add(time.Duration(g))
}

// attention says whether an account needs the operator, and why (its worst problem).
func attention(a accountDoc, conns []connectionDoc, grants []ops.GrantState, now time.Time) (attentionDoc, bool) {
	d := attentionDoc{Source: a.Source, AccountID: a.AccountID, Name: a.Name, Connection: a.Connection, LastSyncedAt: a.LastSyncedAt}
	switch {
	case a.NeedsReauth:
		d.Problem, d.Detail = problemReauth, strings.TrimPrefix(reauthHint(a.Connection, a.Source, grants), "NEEDS RE-AUTH: ")
	case a.LastError != "":
		d.Problem, d.Detail = problemFailed, a.LastError
	case a.Access != sources.AccessOK:
		d.Problem, d.Detail = problemRestricted, a.Access
		if a.AccessReason != "" {
			d.Detail += ": " + a.AccessReason
		}
	case a.LastSyncedAt.IsZero():
		d.Problem = problemNever
	default:
		// Stale beyond two runs of its schedule: with several connections of its source,
		// of the slowest one's.
		var interval time.Duration
		for _, c := range conns {
			if c.Source == a.Source && (a.Connection == "" || c.Connection == a.Connection) {
				interval = max(interval, c.interval)
			}
		}
		if interval == 0 || now.Sub(a.LastSyncedAt) <= 2*interval {
			return attentionDoc{}, false
		}
		d.Problem, d.Detail = problemStale, "no sync in "+ops.Span(now.Sub(a.LastSyncedAt))
	}
	return d, true
}

// accountGrant finds the grant an account is synced under. The warehouse records the
// source, not the connection: with one connection of that source it is that one's grant;
// with several, the account needs re-auth only if all of them do.
func accountGrant(grants []ops.GrantState, source string) (conn string, needsReauth bool) {
	n, bad := 0, 0
	for _, g := range grants {
		if g.Source != source {
			continue
		}
		n++
		conn = g.Connection
		if g.NeedsReauth {
			bad++
		}
	}
	if n != 1 {
		conn = ""
	}
	return conn, n > 0 && bad == n
}

func reauthHint(conn, source string, grants []ops.GrantState) string {
	if conn != "" {
		return "NEEDS RE-AUTH: leadsync auth login " + conn
	}
	var names []string
	for _, g := range grants {
		if g.Source == source {
			names = append(names, g.Connection)
		}
	}
	return "NEEDS RE-AUTH: leadsync auth login " + strings.Join(names, ", ")
}

// printConnections is the CONNECTIONS section: a line per connection, then its last run's
// error and its grant's fix on lines of their own, cut to statusWidth unless wide.
func printConnections(w io.Writer, doc statusDoc, now time.Time, wide bool) {
	fmt.Fprintln(w, "CONNECTIONS")
	if len(doc.Connections) == 0 {
		fmt.Fprintln(w, "(no enabled connections)")
		return
	}
	cut := func(s string, n int) string {
		if wide {
			return s
		}
		return truncate(s, n)
	}
	rows := [][]string{{"NAME", "SOURCE", "GRANT", "LAST RUN", "RESULT", "NEXT RUN"}}
	var notes [][]string
	for _, c := range doc.Connections {
		grant := ops.Label(c.Grant)
		last, result := "never", "-"
		var note []string
		if r := c.LastRun; r != nil {
			last, result = ago(r.FinishedAt, now), r.Status
			if r.Mode == sink.ModeFull {
				result += " (full)"
			}
			if r.Status != sink.RunOK {
				lastOK := "never ok"
				if !c.LastOKAt.IsZero() {
					lastOK = "last ok " + ago(c.LastOKAt, now)
				}
				result += ", " + lastOK
			}
			if r.Error != "" {
				// The line is the connection's already: its name would only push the cause off it.
				note = append(note, "error: "+strings.TrimPrefix(oneLine(r.Error), "connection "+c.Connection+": "))
			}
		}
		if c.Fix != "" {
			note = append(note, "fix: "+c.Fix)
		}
		next := "manual"
		if !c.NextRunAt.IsZero() {
			next = "in " + ops.Span(c.NextRunAt.Sub(now))
			if c.NextRunFull {
				next += " (full)"
			}
		}
		rows = append(rows, []string{cut(c.Connection, 26), c.Source, grant, last, result, next})
		notes = append(notes, note)
	}
	for i, l := range columns(rows) {
		fmt.Fprintln(w, cut(l, statusWidth))
		if i == 0 {
			continue
		}
		for _, n := range notes[i-1] {
			fmt.Fprintln(w, cut("  "+n, statusWidth))
		}
	}
}

// maxAttention bounds the attention section: a vendor outage can fail every account, and
// the section must still fit a screen (--wide and --json list them all).
const maxAttention = 50

// printAttention is the ACCOUNTS NEEDING ATTENTION section, cut to statusWidth.
func printAttention(w io.Writer, doc statusDoc, now time.Time) {
	if len(doc.Attention) == 0 {
		fmt.Fprintln(w, "ACCOUNTS NEEDING ATTENTION: none")
		return
	}
	fmt.Fprintln(w, "ACCOUNTS NEEDING ATTENTION")
	rows := [][]string{{"SOURCE", "ACCOUNT", "NAME", "PROBLEM", "LAST OK", "DETAIL"}}
	for _, a := range doc.Attention[:min(len(doc.Attention), maxAttention)] {
		rows = append(rows, []string{a.Source, truncate(a.AccountID, 24), truncate(oneLine(a.Name), 18),
			ops.Label(a.Problem), ago(a.LastSyncedAt, now), oneLine(a.Detail)})
	}
	for _, l := range columns(rows) {
		fmt.Fprintln(w, truncate(l, statusWidth))
	}
	if more := len(doc.Attention) - maxAttention; more > 0 {
		fmt.Fprintf(w, "… and %s more (leadsync status --wide lists every account)\n", thousands(more))
	}
}

// summaryLine sums up the accounts that need no attention.
func summaryLine(s summaryDoc, now time.Time) string {
	if s.AccountsOK == 0 {
		if s.Accounts == 0 {
			return "no accounts yet: run `leadsync run --once`, or wait for the daemon's first run"
		}
		return "no other accounts"
	}
	noun := "accounts"
	if s.AccountsOK == 1 {
		noun = "account"
	}
	line := fmt.Sprintf("%s %s ok, last synced %s", thousands(s.AccountsOK), noun, ago(s.NewestSyncedAt, now))
	if oldest := ago(s.OldestSyncedAt, now); oldest != ago(s.NewestSyncedAt, now) {
		line += " .. " + oldest
	}
	return line
}

// printAccounts is --wide's table: every account, nothing cut.
func printAccounts(w io.Writer, doc statusDoc, st []sink.AccountStatus, grants []ops.GrantState) {
	// Several workers on one PostgreSQL: say which one is syncing each account, and which
	// synced it last. A single worker's table goes without.
	workers := false
	for _, s := range st {
		workers = workers || s.LeaseOwner != "" || s.LastSyncedBy != ""
	}
	fmt.Fprintln(w, "ACCOUNTS")
	header := []string{"SOURCE", "ACCOUNT", "NAME", "ACCESS", "LAST SUCCESS", "LEADS", "LAST ERROR"}
	if workers {
		header = append(header, "SYNCING NOW ON", "LAST SYNCED BY")
	}
	rows := [][]string{header}
	for _, s := range doc.Accounts {
		last := "never"
		if !s.LastSyncedAt.IsZero() {
			last = when(s.LastSyncedAt)
		}
		access := s.Access
		if s.AccessReason != "" {
			access += " (" + oneLine(s.AccessReason) + ")"
		}
		// Whatever the warehouse last recorded, nothing syncs until the grant is renewed.
		if s.NeedsReauth {
			access = reauthHint(s.Connection, s.Source, grants)
		}
		row := []string{s.Source, s.AccountID, oneLine(s.Name), access, last, strconv.FormatInt(s.Leads, 10), oneLine(s.LastError)}
		if workers {
			holder := "-"
			if s.LeaseOwner != "" {
				holder = fmt.Sprintf("%s (lease until %s)", s.LeaseOwner, s.LeaseExpiresAt.Local().Format(time.TimeOnly))
			}
			row = append(row, holder, cmp.Or(s.LastSyncedBy, "-"))
		}
		rows = append(rows, row)
	}
	for _, l := range columns(rows) {
		fmt.Fprintln(w, l)
	}
}

// columns lays rows out in columns two spaces apart, each as wide as its widest cell in
// runes (the last one unpadded). Unlike text/tabwriter it keeps a table aligned across the
// lines printed between its rows.
func columns(rows [][]string) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			b.WriteString(c)
			if j < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[j]-utf8.RuneCountInString(c)+2))
			}
		}
		out[i] = strings.TrimRight(b.String(), " ")
	}
	return out
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// oneLine keeps a table row on one line whatever a vendor put in an error or a name.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// ago is how long before now t was, for people ("never" for the zero time).
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return ops.Span(now.Sub(t)) + " ago"
}

// thousands writes n with commas: 1,234.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
