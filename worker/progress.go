package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leadsync/leadsync/sources"
	"github.com/mattn/go-runewidth"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Progress shows a run's progress: on a terminal, one bar line per connection and a total
// line, redrawn in place by mpb and fitted to the terminal's width; otherwise a "progress"
// log record every interval. A nil *Progress counts nothing.
//
// While the bars are drawn, everything else written to the same stream must go through
// Write, which prints it above the bars: a write straight to the terminal would be glued to
// a bar, or erased by the next redraw.
type Progress struct {
	out  io.Writer
	opts ProgressOptions
	now  func() time.Time

	mu       sync.Mutex // the numbers
	start    time.Time
	order    []string
	conns    map[string]*tally
	finished bool // Finish was called: the numbers are final
	stopped  bool // the run was stopped: accounts without an outcome were cancelled
	tookEnd  time.Time

	dmu       sync.Mutex // the display: mpb's container and its bars
	started   bool
	container *mpb.Progress // non-nil while the bars are drawn
	bars      map[string]*mpb.Bar
	total     *mpb.Bar
	stopLog   context.CancelFunc
	logDone   chan struct{}
}

// ProgressOptions configure a Progress. The zero value logs a record every 10 s to
// slog.Default().
type ProgressOptions struct {
	// Bars draws the bars (with mpb). Otherwise a "progress" record goes to Log every
	// Interval.
	Bars bool
	// Terminal is the terminal under out: the bars follow its width and its resizes.
	// Without one the bars are drawn as on an 80-column terminal.
	Terminal *os.File
	// Connections get their lines in this order from the start; others are added when
	// they list their accounts.
	Connections []string
	Log         *slog.Logger
	Interval    time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// tally is one connection's numbers, or the total of all.
type tally struct {
	listed                                         bool
	total, ok, failed, restricted, skipped, cancel int
	pages                                          int
	read, written                                  int64
	since                                          time.Time // accounts listed: the pace starts
	pace                                           pace
}

// synced is the accounts this process synced (with whatever outcome).
func (t *tally) synced() int { return t.ok + t.failed + t.restricted }

// unfinished is the accounts without an outcome yet.
func (t *tally) unfinished() int { return max(0, t.total-t.synced()-t.skipped-t.cancel) }

// paceWindow is how far back the page rate looks: long enough to smooth out the bursts of
// a few accounts paging together, short enough to follow a slowdown (429s, a slow vendor).
const paceWindow = 30

// pace counts pages per second over the last paceWindow seconds.
type pace struct {
	secs [paceWindow]int
	last int64 // the Unix second of the newest bucket
}

func (p *pace) advance(now time.Time) {
	s := now.Unix()
	if s-p.last >= paceWindow {
		p.secs = [paceWindow]int{}
		p.last = s
		return
	}
	for p.last < s {
		p.last++
		p.secs[slot(p.last)] = 0
	}
}

func (p *pace) add(now time.Time) {
	p.advance(now)
	p.secs[slot(now.Unix())]++
}

// slot is second s's bucket (times before 1970 too: the zero time.Time is one).
func slot(s int64) int { return int((s%paceWindow + paceWindow) % paceWindow) }

// rate is pages per second over the window, or since since when that is shorter.
func (p *pace) rate(now, since time.Time) float64 {
	p.advance(now)
	window := min(now.Sub(since).Seconds(), paceWindow)
	if window <= 0 {
		return 0
	}
	n := 0
	for _, c := range p.secs {
		n += c
	}
	return float64(n) / window
}

// eta estimates the time left: the pages still to read are the mean pages per synced
// account times the accounts without an outcome, at the page rate of the last seconds.
// known is false while there is no basis: no account synced, or no page in the window.
func (t *tally) eta(now time.Time) (d time.Duration, known bool) {
	u := t.unfinished()
	if u == 0 && t.listed {
		return 0, true
	}
	if !t.listed || t.synced() == 0 || t.pages == 0 {
		return 0, false
	}
	rate := t.pace.rate(now, t.since)
	if rate <= 0 {
		return 0, false
	}
	left := float64(t.pages) / float64(t.synced()) * float64(u)
	return time.Duration(left / rate * float64(time.Second)), true
}

// NewProgress shows progress on out (a terminal, for the bars). Nothing is drawn or logged
// before Start.
func NewProgress(out io.Writer, opts ProgressOptions) *Progress {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	p := &Progress{out: out, opts: opts, now: now, start: now(), conns: map[string]*tally{}, bars: map[string]*mpb.Bar{}}
	for _, c := range opts.Connections {
		p.conn(c)
	}
	return p
}

// Start begins drawing the bars, or logging the records.
func (p *Progress) Start() {
	if p == nil {
		return
	}
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.started {
		return
	}
	p.started = true
	p.mu.Lock()
	p.start = p.now()
	names := append([]string(nil), p.order...)
	p.mu.Unlock()
	if !p.opts.Bars {
		ctx, cancel := context.WithCancel(context.Background())
		p.stopLog, p.logDone = cancel, make(chan struct{})
		go p.logEvery(ctx)
		return
	}
	cw := &console{out: p.out, fd: -1}
	if f := p.opts.Terminal; f != nil && term.IsTerminal(int(f.Fd())) {
		cw.fd = int(f.Fd())
	}
	opts := []mpb.ContainerOption{mpb.WithConsoleWriter(cw)}
	if !cw.IsTerminal() {
		// Asked for bars on something else (--progress on): drawn as on an 80-column
		// terminal.
		opts = append(opts, mpb.WithAutoRefresh())
	}
	p.container = mpb.New(opts...)
	// The total goes last: a priority below every connection's (theirs is their order).
	p.total = p.addBar("", math.MaxInt32)
	for _, n := range names {
		p.bars[n] = p.addBar(n, len(p.bars))
	}
}

// Finish prints the final state and stops drawing or logging. stopped says the run was
// stopped: the accounts it never reached are shown as cancelled.
func (p *Progress) Finish(stopped bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if !p.finished {
		p.finished, p.stopped, p.tookEnd = true, stopped, p.now()
	}
	p.mu.Unlock()
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.stopLog != nil {
		p.stopLog()
		<-p.logDone
		p.stopLog = nil
		p.logRecord()
	}
	if p.container != nil {
		// An aborted bar stays on screen; the last one to go triggers the final draw,
		// which shows the final numbers (finished is set).
		for _, b := range p.bars {
			b.Abort(false)
		}
		p.total.Abort(false)
		p.container.Wait()
		p.container = nil
	}
}

// Write prints b above the bars while they are drawn, and straight to out otherwise.
func (p *Progress) Write(b []byte) (int, error) {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.container != nil {
		if n, err := p.container.Write(b); err == nil {
			return n, nil
		}
	}
	return p.out.Write(b)
}

func (p *Progress) logEvery(ctx context.Context) {
	defer close(p.logDone)
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.logRecord()
		}
	}
}

func (p *Progress) logRecord() {
	log := p.opts.Log
	if log == nil {
		log = slog.Default()
	}
	p.mu.Lock()
	if len(p.order) == 0 {
		p.mu.Unlock()
		return
	}
	status := p.statusLocked()
	p.mu.Unlock()
	log.Info("progress", slog.String("status", status))
}

// statusLocked is the record's text: the total, then each connection, unabridged.
func (p *Progress) statusLocked() string {
	now := p.now()
	parts := []string{"total: " + p.statsLocked("", now)[0].String()}
	for _, n := range p.order {
		parts = append(parts, n+": "+p.statsLocked(n, now)[0].String())
	}
	return strings.Join(parts, "; ")
}

// conn is the tally of a connection, added on first use; it reports whether it is new.
func (p *Progress) conn(name string) (*tally, bool) {
	c := p.conns[name]
	if c != nil {
		return c, false
	}
	c = &tally{}
	p.conns[name] = c
	p.order = append(p.order, name)
	return c, true
}

// update changes a connection's numbers and gives a connection seen for the first time its
// bar (outside p.mu: mpb's drawing takes p.mu).
func (p *Progress) update(name string, f func(*tally)) {
	p.mu.Lock()
	c, added := p.conn(name)
	f(c)
	p.mu.Unlock()
	if added {
		p.dmu.Lock()
		if p.container != nil && p.bars[name] == nil {
			p.bars[name] = p.addBar(name, len(p.bars))
		}
		p.dmu.Unlock()
	}
}

// AddAccounts announces n accounts to sync for a connection.
func (p *Progress) AddAccounts(conn string, n int) {
	if p == nil {
		return
	}
	p.update(conn, func(c *tally) {
		if !c.listed {
			c.listed, c.since = true, p.now()
		}
		c.total += n
	})
}

// AccountDone counts one account's outcome: OutcomeSkipped is an account another worker
// synced, OutcomeCancelled one a stop interrupted.
func (p *Progress) AccountDone(conn, outcome string) {
	if p == nil {
		return
	}
	p.update(conn, func(c *tally) {
		switch outcome {
		case OutcomeFailed:
			c.failed++
		case OutcomeRestricted:
			c.restricted++
		case OutcomeSkipped:
			c.skipped++
		case OutcomeCancelled:
			c.cancel++
		default:
			c.ok++
		}
	})
}

// Page counts one page: read records from the vendor, written rows inserted or changed in
// the warehouse (a full pass reads many and writes few).
func (p *Progress) Page(conn string, read, written int) {
	if p == nil {
		return
	}
	p.update(conn, func(c *tally) {
		c.pages++
		c.read += int64(read)
		c.written += int64(written)
		c.pace.add(p.now())
	})
}

// pageRead is what a page read from the vendor: its records of every kind.
func pageRead(pg sources.Page) int {
	return len(pg.Leads) + len(pg.Rejected) + len(pg.Counts) + len(pg.Deals) + len(pg.Dictionary) +
		len(pg.Submissions) + len(pg.Cycles)
}

// sumLocked is the total of every connection.
func (p *Progress) sumLocked() *tally {
	s := &tally{}
	for _, n := range p.order {
		c := p.conns[n]
		s.listed = s.listed || c.listed
		s.total += c.total
		s.ok, s.failed, s.restricted = s.ok+c.ok, s.failed+c.failed, s.restricted+c.restricted
		s.skipped, s.cancel = s.skipped+c.skipped, s.cancel+c.cancel
		s.pages, s.read, s.written = s.pages+c.pages, s.read+c.read, s.written+c.written
	}
	return s
}

// etaLocked is a line's ETA: a connection's own, or for the total the longest of the
// connections' (they run side by side), unknown while any lacks a basis.
func (p *Progress) etaLocked(name string, now time.Time) (time.Duration, bool) {
	if name != "" {
		return p.conns[name].eta(now)
	}
	var longest time.Duration
	for _, n := range p.order {
		c := p.conns[n]
		if !c.listed && !p.finished {
			return 0, false
		}
		d, ok := c.eta(now)
		if !ok {
			return 0, false
		}
		longest = max(longest, d)
	}
	return longest, true
}

// statsLocked is a line's text after its bar ("" names the total), from the most detailed
// to the shortest; the display shows the first that fits.
func (p *Progress) statsLocked(name string, now time.Time) []stats {
	t := p.sumLocked()
	if name != "" {
		t = p.conns[name]
	}
	notSynced, cancelled := 0, t.cancel
	if p.finished {
		if p.stopped {
			cancelled += t.unfinished()
		} else {
			notSynced = t.unfinished()
		}
	}
	// Done: every account has an outcome; for the total, of every connection, listed.
	done := t.listed && t.unfinished() == 0
	for _, n := range p.order {
		if c := p.conns[n]; name == "" && (!c.listed || c.unfinished() > 0) {
			done = false
		}
	}
	var tail string // where the run stands
	switch d, ok := p.etaLocked(name, now); {
	case p.finished && name == "":
		tail = "took " + shortDuration(p.tookEnd.Sub(p.start))
		if p.stopped {
			tail = "stopped, " + tail
		}
	case p.finished && p.stopped && (cancelled > 0 || !t.listed):
		tail = "stopped"
	case p.finished || done:
		tail = "done"
	case ok:
		tail = "ETA " + shortDuration(d)
	default:
		tail = "ETA ?"
	}

	var out []stats
	for _, l := range levels {
		var parts []string
		switch {
		case !t.listed && p.finished:
			parts = append(parts, "no accounts listed")
		case !t.listed:
			parts = append(parts, "listing accounts")
		case l.long:
			parts = append(parts, fmt.Sprintf("%d/%d accounts", t.synced(), t.total))
		default:
			parts = append(parts, fmt.Sprintf("%d/%d", t.synced(), t.total))
		}
		for _, o := range []struct {
			n           int
			what, short string
		}{{t.failed, "failed", "fail"}, {t.restricted, "restricted", "restr"}, {t.skipped, "skipped", "skip"},
			{cancelled, "cancelled", "canc"}, {notSynced, "not synced", "unsynced"}} {
			if o.n > 0 && l.abbrev {
				parts = append(parts, fmt.Sprintf("%d %s", o.n, o.short))
			} else if o.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", o.n, o.what))
			}
		}
		num := l.num
		if l.abbrev {
			parts = append(parts, "r "+num(t.read), "w "+num(t.written))
		} else {
			parts = append(parts, "read "+num(t.read), "written "+num(t.written))
		}
		if l.pages && t.pages > 0 {
			r := 0.0
			if name == "" {
				for _, n := range p.order {
					r += p.conns[n].pace.rate(now, p.conns[n].since)
				}
			} else {
				r = t.pace.rate(now, t.since)
			}
			unit := " pages, "
			if t.pages == 1 {
				unit = " page, "
			}
			parts = append(parts, thousands(int64(t.pages))+unit+strconv.FormatFloat(r, 'f', 1, 64)+"/s")
		}
		out = append(out, stats{strings.Join(parts, l.sep), l.sep + tail})
	}
	return out
}

// stats is a line's text after its bar: where the run stands (the ETA, "done") last, in
// tail, which a cut keeps.
type stats struct{ body, tail string }

func (s stats) String() string { return s.body + s.tail }

// levels are the forms of a line's text, from the most detailed to the shortest.
var levels = []struct {
	sep    string
	long   bool               // "accounts" after the count
	num    func(int64) string // 12,345, or 12.3k
	pages  bool               // the pages and their rate
	abbrev bool               // "3 canc" for "3 cancelled", "r" and "w" for read and written
}{
	{" | ", true, thousands, true, false},
	{" | ", true, thousands, false, false},
	{", ", false, thousands, false, false},
	{", ", false, compact, false, false},
	{", ", false, tiny, false, false},
	{" ", false, tiny, false, true},
}

// withBar is how many levels may keep a bar: an abbreviated line goes without.
const withBar = 5

// lineLayout is how one line is drawn at one width: its label, its bar's width (0: no
// bar), the bar's fill and the text after it.
type lineLayout struct {
	label       string
	barW        int
	done, total int64
	stats       string
}

// Bar widths: the narrowest worth drawing, and the widest.
const minBarW, maxBarW = 8, 30

// layout fits a line into width columns, one short of the edge: a line that fills the
// last column makes some terminals wrap. All lines at one width share the label and bar
// widths, so the bars line up, and the form of their text: the most detailed in which
// every line fits. The bars go (on every line) before the text is abbreviated.
func (p *Progress) layout(name string, width int) lineLayout {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	labelW := len("total")
	for _, n := range p.order {
		labelW = max(labelW, runewidth.StringWidth(n))
	}
	labelW = min(labelW, max(10, width/5))
	room := width - 1 - labelW - 2 // two spaces: around the bar, or between label and text
	// widest[i] is the widest line in form i.
	widest := make([]int, len(levels))
	for _, n := range append([]string{""}, p.order...) {
		for i, s := range p.statsLocked(n, now) {
			widest[i] = max(widest[i], runewidth.StringWidth(s.String()))
		}
	}
	barW := min(maxBarW, max(minBarW, width/6), room-widest[withBar-1])
	if barW < minBarW {
		barW = 0
	}
	form := len(levels) - 1
	for i, w := range widest {
		if (barW == 0 || i < withBar) && w <= room-barW {
			form = i
			break
		}
	}

	label := name
	t := p.sumLocked()
	if name == "" {
		label = "total"
	} else {
		t = p.conns[name]
	}
	l := lineLayout{label: runewidth.FillRight(runewidth.Truncate(label, labelW, "…"), labelW), barW: barW,
		done: int64(t.synced() + t.skipped), total: int64(t.total)}
	s := p.statsLocked(name, now)[form]
	switch body := room - barW - runewidth.StringWidth(s.tail); {
	case runewidth.StringWidth(s.String()) <= room-barW:
		l.stats = s.String()
	case body > 1:
		// Cut, keeping where the run stands.
		l.stats = runewidth.Truncate(s.body, body, "…") + s.tail
	default:
		l.stats = runewidth.Truncate(s.String(), max(0, room-barW), "…")
	}
	return l
}

// line is one line of text as drawn, without mpb (for the tests).
func (l lineLayout) line() string {
	bar := ""
	if l.barW > 0 {
		fill := 0
		if l.total > 0 {
			fill = int(int64(l.barW-2) * l.done / l.total)
		}
		bar = "[" + strings.Repeat("=", fill) + strings.Repeat("-", l.barW-2-fill) + "]"
	}
	return l.label + " " + bar + " " + l.stats
}

// addBar adds a connection's line ("" for the total) to the container. Its label computes
// the line's layout at the width mpb offers; the text and the bar that follow (drawn next,
// by the same goroutine) use it.
func (p *Progress) addBar(name string, priority int) *mpb.Bar {
	var l lineLayout
	label := decor.Any(func(s decor.Statistics) string {
		l = p.layout(name, s.AvailableWidth)
		return l.label
	})
	stats := decor.Any(func(decor.Statistics) string { return l.stats })
	fill := mpb.BarFillerMiddleware(func(base mpb.BarFiller) mpb.BarFiller {
		return mpb.BarFillerFunc(func(w io.Writer, s decor.Statistics) error {
			if l.barW == 0 {
				return nil
			}
			s.RequestedWidth, s.Current, s.Total = l.barW, l.done, max(l.total, 1)
			return base.Fill(w, s)
		})
	})
	// total 0: mpb never completes the bar by itself; Finish ends it.
	return p.container.New(0, mpb.BarStyle(), mpb.PrependDecorators(label), mpb.AppendDecorators(stats), fill,
		mpb.BarPriority(priority))
}

// console is mpb's terminal: it buffers a frame and writes it at once, and the next frame
// first goes back up over it and erases it. From column 0: a ^C echoed under the bars
// moves the cursor off it, and the start of the bars' first line would stay.
type console struct {
	bytes.Buffer
	out io.Writer
	fd  int // the terminal's, or -1
}

func (c *console) IsTerminal() bool { return c.fd >= 0 }

func (c *console) GetTermSize() (width, height int, err error) { return term.GetSize(c.fd) }

func (c *console) Flush(lines int) error {
	if _, err := c.WriteTo(c.out); err != nil {
		return err
	}
	if lines > 0 {
		// Up to the frame's first line, erase it, then all below. Not in one erase from
		// there: tmux keeps a screen erased from its top-left corner in its history, where
		// each frame drawn at the top of a fresh pane would stay.
		fmt.Fprintf(&c.Buffer, "\r\x1b[%dA\x1b[2K", lines)
		if lines > 1 {
			c.WriteString("\x1b[B\x1b[J\x1b[A")
		}
	}
	return nil
}

// thousands writes n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// compact writes n in full under 10,000, else in thousands or millions.
func compact(n int64) string {
	if n < 10_000 {
		return thousands(n)
	}
	return tiny(n)
}

// tiny writes n in full under 1,000, else in thousands or millions.
func tiny(n int64) string {
	switch {
	case n < 1000:
		return strconv.FormatInt(n, 10)
	case n < 1_000_000:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + "k"
	default:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	}
}

// shortDuration writes d to the second under an hour, to the minute above.
func shortDuration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
