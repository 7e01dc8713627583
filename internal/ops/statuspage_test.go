package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var statusNow = time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)

const (
	failingError = "connection liq: list advertisers: localiq: GET /crm/advertisers: 502 Bad Gateway (after 5 attempts)"
	scriptName   = `<script>alert(1)</script> Roofing`
	statusLine   = "1,947 accounts ok, last synced 4m ago .. 19m ago"
)

// statusView is what a daemon with one healthy and one failing connection would show.
func statusView() StatusView {
	v := StatusView{
		GeneratedAt: statusNow,
		Version:     "1.4.0",
		Connections: []ConnectionView{
			{Name: "agency", Source: "leadconnector", Grant: "ok", LastRunAt: statusNow.Add(-4 * time.Minute),
				LastResult: "ok", LastOKAt: statusNow.Add(-4 * time.Minute), NextRunAt: statusNow.Add(11 * time.Minute)},
			{Name: "liq", Source: "localiq", Grant: "ok", LastRunAt: statusNow.Add(-5 * time.Minute), LastResult: "failed",
				LastError: failingError, LastOKAt: statusNow.Add(-74 * time.Hour), NextRunAt: statusNow.Add(10 * time.Minute)},
		},
		Attention: []AccountView{
			{Source: "localiq", Account: "USA_1042", Name: "Bayside Dental", Problem: "failed",
				LastSuccess: statusNow.Add(-74 * time.Hour), Detail: "list advertisers: 502 Bad Gateway"},
			{Source: "leadconnector", Account: "LOC9xkq2", Name: scriptName, Problem: "restricted",
				Detail: "forbidden: vendor said <b>not allowed</b>"},
			{Source: "leadconnector", Account: "LOC77a", Name: "Northside Plumbing & Heating", Problem: "stale",
				LastSuccess: statusNow.Add(-50 * time.Hour), Detail: "no sync in 2d"},
		},
		Summary: statusLine,
	}
	first := statusNow.Truncate(24*time.Hour).AddDate(0, 0, -29)
	for i := range 30 {
		n := int64(1200 + i*137%900)
		if i == 9 { // the day the warehouse was down
			n = 0
		}
		v.Daily = append(v.Daily, DayCount{Day: first.AddDate(0, 0, i), Leads: n})
	}
	return v
}

func startStatus(t *testing.T, provider StatusProvider) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(nil, nil, WithStatusPage(provider)))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestStatusPageHTTP: what a browser is told about the page, and what it gets when the
// status cannot be read.
func TestStatusPageHTTP(t *testing.T) {
	t.Parallel()
	var fail atomic.Pointer[error]
	srv := startStatus(t, func(ctx context.Context) (StatusView, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("the provider runs without a deadline")
		}
		if err := fail.Load(); err != nil {
			return StatusView{}, *err
		}
		return statusView(), nil
	})
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("/: %d %s", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Type":  "text/html; charset=utf-8",
		"Cache-Control": "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'sha256-", "img-src data:", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy %q allows more than the stylesheet", csp)
	}
	// The escaped forms, and never the raw ones: names and errors come from vendors.
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt; Roofing", "&lt;b&gt;not allowed&lt;/b&gt;",
		"Northside Plumbing &amp; Heating", "502 Bad Gateway (after 5 attempts)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<b>") {
		t.Errorf("a vendor's text reached the page unescaped")
	}

	err := errors.New("sink: status: pq: password authentication failed for user \"leadsync\"\n\tat main.go:12")
	fail.Store(&err)
	resp, body = get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusServiceUnavailable || body != "leadsync: status unavailable (the daemon's log says why)\n" {
		t.Errorf("provider failing: %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("provider failing: Content-Type %q", resp.Header.Get("Content-Type"))
	}
	for _, path := range []string{"/nope", "/index.html", "/status"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	// /healthz and the others are still there beside the page.
	if resp, _ := get(t, srv.URL+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	// Without a provider, / is the plain list it always was.
	plain := httptest.NewServer(NewHandler(nil, nil))
	defer plain.Close()
	if resp, body := get(t, plain.URL+"/"); resp.StatusCode != 200 || body != "leadsync: /metrics /healthz /readyz\n" {
		t.Errorf("/ without a status page: %d %q", resp.StatusCode, body)
	}
}

// TestStatusPageEdges: a fresh install shows what is missing, and an outage that fails every
// account keeps the page to a bounded table.
func TestStatusPageEdges(t *testing.T) {
	t.Parallel()
	var view atomic.Pointer[StatusView]
	view.Store(&StatusView{})
	srv := startStatus(t, func(context.Context) (StatusView, error) { return *view.Load(), nil })
	_, body := get(t, srv.URL+"/")
	for _, want := range []string{"No enabled connections.", "<p class=\"muted\">None.</p>", "No runs recorded yet."} {
		if !strings.Contains(body, want) {
			t.Errorf("an empty status lacks %q", want)
		}
	}
	if strings.Contains(body, `id="summary"`) || strings.Contains(body, "<svg") {
		t.Errorf("an empty status shows an empty summary or chart")
	}

	v := statusView()
	for i := range maxAttention + 3 - len(v.Attention) {
		v.Attention = append(v.Attention, AccountView{Source: "localiq", Account: fmt.Sprintf("USA_%d", i), Problem: "failed"})
	}
	view.Store(&v)
	_, body = get(t, srv.URL+"/")
	if n := strings.Count(body, `<tr class="acct">`); n != maxAttention {
		t.Errorf("%d attention rows, want %d", n, maxAttention)
	}
	if !strings.Contains(body, "… and 3 more") {
		t.Errorf("the rows left out are not counted")
	}
}

// TestStatusChart: bar heights follow the counts, against the day with the most.
func TestStatusChart(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c := newChart([]DayCount{{day, 50}, {day.AddDate(0, 0, 1), 0}, {day.AddDate(0, 0, 2), 200}, {day.AddDate(0, 0, 3), 1}})
	if len(c.Bars) != 4 {
		t.Fatalf("%d bars", len(c.Bars))
	}
	if h := c.Bars[2].H; h != chartPlotH {
		t.Errorf("the top day's bar is %v high, want the plot's %v", h, chartPlotH)
	}
	if h := c.Bars[0].H; h != round(chartPlotH/4) {
		t.Errorf("a quarter of the top is %v high, want %v", h, round(chartPlotH/4))
	}
	if b := c.Bars[1]; !b.Zero || b.H != chartMinBar || b.Y+b.H != chartBaseline {
		t.Errorf("a zero day: %+v", b)
	}
	if b := c.Bars[3]; b.Zero || b.H < chartMinBar || b.Title != "Wed 4 Mar 2026: 1 lead written" {
		t.Errorf("a day with one lead: %+v", b)
	}
	if c.Max != "200" || c.Total != "251" {
		t.Errorf("max %q, total %q", c.Max, c.Total)
	}
	if len(c.Ticks) != 1 || c.Ticks[0].Label != "4 Mar" {
		t.Errorf("ticks %+v: want the latest day only", c.Ticks)
	}
	if empty := newChart(nil); len(empty.Bars) != 0 || empty.Days != 0 {
		t.Errorf("no days: %+v", empty)
	}
}

// chromium finds Debian's chromium: under CI its absence fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is not installed (Debian's chromium package): %v", err)
		}
		t.Skipf("chromium is not installed (apt-get install chromium): %v", err)
	}
	return path
}

// pageContent is what the test reads from the rendered DOM.
type pageContent struct {
	Scripts     int
	Bold        int
	Connections []struct {
		Text    string
		Failing bool
	}
	ConnectionsText string
	Attention       [][]string
	Summary         string
	Bars            []string
	ChartText       []string
	H2Transform     string
}

const readPage = `(() => {
	const q = s => document.querySelector(s), qa = s => [...document.querySelectorAll(s)];
	return {
		Scripts: qa('script').length,
		Bold: qa('b').length,
		Connections: qa('#connections tr.conn').map(tr => ({Text: tr.innerText, Failing: tr.classList.contains('failing')})),
		ConnectionsText: q('#connections').innerText,
		Attention: qa('#attention tbody tr').map(tr => [...tr.cells].map(td => td.innerText)),
		Summary: q('#summary').innerText,
		Bars: qa('#daily svg rect').map(r => r.querySelector('title').textContent),
		ChartText: qa('#daily svg text').map(t => t.textContent),
		H2Transform: getComputedStyle(q('h2')).textTransform,
	};
})()`

// TestStatusPageInChromium renders the page in headless Chromium, reads what it shows, and
// takes the screenshot (to $LEADSYNC_SCREENSHOT_DIR/status-page.png when set).
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	srv := startStatus(t, func(context.Context) (StatusView, error) { return statusView(), nil })

	// A bound on the whole browser session, not a wait: a hung browser fails the test.
	bound, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(bound, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc)
	defer cancelCtx()

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[pageContent](readPage))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}

	if got.Scripts != 0 || got.Bold != 0 {
		t.Errorf("a vendor's text became markup: %d script, %d b elements", got.Scripts, got.Bold)
	}
	if got.H2Transform != "uppercase" {
		t.Errorf("the stylesheet did not apply (its CSP hash?): h2 text-transform %q", got.H2Transform)
	}
	if len(got.Connections) != 2 {
		t.Fatalf("connections: %+v", got.Connections)
	}
	if c := got.Connections[0]; c.Failing || !strings.Contains(c.Text, "agency") || !strings.Contains(c.Text, "4m ago") {
		t.Errorf("the healthy connection: %+v", c)
	}
	if c := got.Connections[1]; !c.Failing || !strings.Contains(c.Text, "failed, last ok 3d ago") || !strings.Contains(c.Text, "in 10m") {
		t.Errorf("the failing connection: %+v", c)
	}
	if !strings.Contains(got.ConnectionsText, "error: "+failingError) {
		t.Errorf("the failing connection's error is not shown:\n%s", got.ConnectionsText)
	}
	wantAttention := [][]string{
		{"localiq", "USA_1042", "Bayside Dental", "failed", "3d ago", "list advertisers: 502 Bad Gateway"},
		{"leadconnector", "LOC9xkq2", scriptName, "restricted", "never", "forbidden: vendor said <b>not allowed</b>"},
		{"leadconnector", "LOC77a", "Northside Plumbing & Heating", "stale", "2d ago", "no sync in 2d"},
	}
	if len(got.Attention) != len(wantAttention) {
		t.Fatalf("attention rows: %q", got.Attention)
	}
	for i, want := range wantAttention {
		if strings.Join(got.Attention[i], "|") != strings.Join(want, "|") {
			t.Errorf("attention row %d:\n got %q\nwant %q", i, got.Attention[i], want)
		}
	}
	if got.Summary != statusLine {
		t.Errorf("summary %q, want %q", got.Summary, statusLine)
	}
	if len(got.Bars) != 30 {
		t.Fatalf("%d bars, want 30", len(got.Bars))
	}
	if got.Bars[9] != "Wed 11 Mar 2026: 0 leads written" || got.Bars[29] != "Tue 31 Mar 2026: 1,573 leads written" {
		t.Errorf("bar titles: %q .. %q .. %q", got.Bars[0], got.Bars[9], got.Bars[29])
	}
	if chart := strings.Join(got.ChartText, " "); !strings.Contains(chart, "2,081") || !strings.Contains(chart, "31 Mar") {
		t.Errorf("chart labels %q lack the max (2,081) or the latest day", chart)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	checkPNG(t, shot, 1000)
	dir := os.Getenv("LEADSYNC_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	file := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)

	// A phone: the tables become one card per row, and nothing scrolls sideways.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload()); err != nil {
		t.Fatalf("phone width: %v", err)
	}
	type phone struct {
		ScrollWidth, InnerWidth int
		HeadDisplay             string
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[phone](`({
		ScrollWidth: document.documentElement.scrollWidth,
		InnerWidth: window.innerWidth,
		HeadDisplay: getComputedStyle(document.querySelector('#attention thead')).display,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if p.InnerWidth != 390 || p.ScrollWidth > p.InnerWidth {
		t.Errorf("at 390 px the page scrolls sideways: %d px wide in a %d px window", p.ScrollWidth, p.InnerWidth)
	}
	if p.HeadDisplay != "none" {
		t.Errorf("at 390 px the table headers still show (display %q)", p.HeadDisplay)
	}
	phoneShot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("phone screenshot: %v", err)
	}
	checkPNG(t, phoneShot, 390)
}

// checkPNG fails unless b is a PNG at least minWidth wide that shows more than one color.
func checkPNG(t *testing.T, b []byte, minWidth int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	r := img.Bounds()
	if r.Dx() < minWidth || r.Dy() < 200 {
		t.Errorf("screenshot is %dx%d, want at least %d wide", r.Dx(), r.Dy(), minWidth)
	}
	if singleColor(img) {
		t.Errorf("screenshot is a single color")
	}
}

func singleColor(img image.Image) bool {
	r := img.Bounds()
	r0, g0, b0, a0 := img.At(r.Min.X, r.Min.Y).RGBA()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if r1, g1, b1, a1 := img.At(x, y).RGBA(); r1 != r0 || g1 != g0 || b1 != b0 || a1 != a0 {
				return false
			}
		}
	}
	return true
}
