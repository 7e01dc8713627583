package ops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusView is what the status page shows: what `leadsync status` prints, plus the leads
// written per day. It holds no lead data, only connections, accounts and counts.
type StatusView struct {
	GeneratedAt time.Time // "now" for every relative time on the page
	Version     string
	Connections []ConnectionView
	Attention   []AccountView // worst first, as `leadsync status` orders them
	Summary     string        // one line on the accounts that need no attention
	Daily       []DayCount    // oldest first; one bar each
}

// ConnectionView is one connection: its grant, its last run and its next one.
type ConnectionView struct {
	Name   string
	Source string
	Grant  string // "ok", else its problem (e.g. "needs_reauth")
	Fix    string // what to run when the grant is not ok
	// The last run: when it finished (zero when it never did), its result (ok, failed,
	// cancelled), whether it was the full pass, its error, and when a run last ended ok.
	LastRunAt  time.Time
	LastResult string
	LastFull   bool
	LastError  string
	LastOKAt   time.Time
	// NextRunAt is when its schedules next fire, zero when both are off.
	NextRunAt   time.Time
	NextRunFull bool
}

// Failing is whether the page flags the connection: its grant needs action, or its last run
// did not end ok.
func (c ConnectionView) Failing() bool {
	return c.Grant != "" && c.Grant != "ok" || c.LastResult != "" && c.LastResult != "ok"
}

// AccountView is an account that needs attention.
type AccountView struct {
	Source      string
	Account     string
	Name        string
	Problem     string // e.g. needs_reauth, failed, restricted, never_synced, stale
	LastSuccess time.Time
	Detail      string // the last error, the vendor's reason, or the fix
}

// DayCount is the leads written in one UTC day.
type DayCount struct {
	Day   time.Time
	Leads int64
}

// StatusProvider gives the status page its content. It logs its own errors: the page only
// says that the status is unavailable, since an error may name more than a visitor should see.
type StatusProvider func(ctx context.Context) (StatusView, error)

// StatusTimeout bounds one call of the provider.
const StatusTimeout = 10 * time.Second

// maxAttention bounds the attention table, as `leadsync status` does: a vendor outage can
// fail every account.
const maxAttention = 50

//go:embed templates/status.html.tmpl templates/status.css
var templateFS embed.FS

var (
	statusCSS  = mustRead("templates/status.css")
	statusTmpl = template.Must(template.New("status.html.tmpl").Funcs(template.FuncMap{
		"ago":       ago,
		"until":     until,
		"at":        at,
		"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"label":     Label,
		"thousands": thousands,
		"oneLine":   oneLine,
	}).ParseFS(templateFS, "templates/status.html.tmpl"))
	// The stylesheet is the page's only active content, allowed by its hash: nothing a vendor
	// put in a name or an error can run or restyle the page, even if escaping failed.
	statusCSP = "default-src 'none'; style-src 'sha256-" + hashOf(statusCSS) + "'; img-src data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func mustRead(name string) string {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// NewStatusPage serves the status page of what provider gives, rendered on the server: no
// script, nothing fetched but the page itself.
func NewStatusPage(provider StatusProvider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), StatusTimeout)
		defer cancel()
		v, err := provider(ctx)
		if err != nil {
			text(w, http.StatusServiceUnavailable, "leadsync: status unavailable (the daemon's log says why)")
			return
		}
		var buf bytes.Buffer
		if err := statusTmpl.Execute(&buf, newPage(v)); err != nil {
			text(w, http.StatusInternalServerError, "leadsync: status page failed to render")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", statusCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(http.StatusOK)
		_, _ = buf.WriteTo(w)
	})
}

// page is what the template renders.
type page struct {
	StatusView
	Now       time.Time
	CSS       template.CSS
	Attention []AccountView // the view's, up to maxAttention
	More      int64         // attention rows left out
	Chart     chart
}

func newPage(v StatusView) page {
	p := page{StatusView: v, Now: v.GeneratedAt, CSS: template.CSS(statusCSS), Attention: v.Attention, Chart: newChart(v.Daily)}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	if len(p.Attention) > maxAttention {
		p.Attention, p.More = p.Attention[:maxAttention], int64(len(p.Attention)-maxAttention)
	}
	return p
}

// The chart's geometry, in the SVG's own units: it scales to the page's width.
const (
	chartW, chartH             = 720.0, 180.0
	chartLeft, chartRight      = 64.0, 24.0
	chartTop, chartBottom      = 16.0, 30.0
	chartPlotW, chartPlotH     = chartW - chartLeft - chartRight, chartH - chartTop - chartBottom
	chartBaseline              = chartTop + chartPlotH
	chartMinBar, chartBarShare = 1.0, 0.72 // a zero day still shows (and hovers); bars fill 72% of their slot
)

type chart struct {
	W, H, Left, Right, Top, Baseline float64
	Bars                             []bar
	Ticks                            []tick
	Max, Total                       string
	Days                             int
}

type bar struct {
	X, Y, W, H float64
	Zero       bool
	Title      string
}

type tick struct {
	X     float64
	Label string
}

func newChart(days []DayCount) chart {
	c := chart{W: chartW, H: chartH, Left: chartLeft, Right: chartW - chartRight, Top: chartTop, Baseline: chartBaseline,
		Days: len(days)}
	if len(days) == 0 {
		return c
	}
	var top, total int64
	for _, d := range days {
		top, total = max(top, d.Leads), total+d.Leads
	}
	c.Max, c.Total = thousands(top), thousands(total)
	slot := chartPlotW / float64(len(days))
	w := slot * chartBarShare
	for i, d := range days {
		h := chartMinBar
		if top > 0 && d.Leads > 0 {
			h = max(chartPlotH*float64(d.Leads)/float64(top), chartMinBar)
		}
		noun := "leads"
		if d.Leads == 1 {
			noun = "lead"
		}
		c.Bars = append(c.Bars, bar{X: round(chartLeft + float64(i)*slot + (slot-w)/2), Y: round(chartBaseline - h),
			W: round(w), H: round(h), Zero: d.Leads == 0,
			Title: fmt.Sprintf("%s: %s %s written", d.Day.UTC().Format("Mon 2 Jan 2006"), thousands(d.Leads), noun)})
	}
	// A label a week apart, ending on the latest day.
	for i := len(days) - 1; i >= 0; i -= 7 {
		c.Ticks = append([]tick{{X: round(chartLeft + (float64(i)+0.5)*slot), Label: days[i].Day.UTC().Format("2 Jan")}}, c.Ticks...)
	}
	return c
}

func round(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// ago is how long before now t was, for people ("never" for the zero time).
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return Span(now.Sub(t)) + " ago"
}

// until is how long after now t is.
func until(t, now time.Time) string { return "in " + Span(t.Sub(now)) }

// at is t for a tooltip, in UTC: the page cannot know its reader's zone.
func at(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// Span is a duration in its largest whole unit: 45s, 12m, 3h, 5d (the status page and
// `leadsync status` write ages this way).
func Span(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// Label is a status value as people read it: needs_reauth is "needs re-auth".
func Label(v string) string {
	if v == "needs_reauth" {
		return "needs re-auth"
	}
	return strings.ReplaceAll(v, "_", " ")
}

// thousands writes n with commas: 1,234.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return sign + s
}
