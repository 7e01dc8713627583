package worker

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattn/go-runewidth"
)

// progressClock is a clock the test moves.
type progressClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *progressClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *progressClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type progressBundle struct {
	p     *Progress
	clock *progressClock
}

func setupProgress(t *testing.T, opts ProgressOptions) progressBundle {
	t.Helper()
	clock := &progressClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	opts.Now = clock.now
	return progressBundle{p: NewProgress(&bytes.Buffer{}, opts), clock: clock}
}

// stats is a line's most detailed text ("" names the total).
func (b progressBundle) stats(name string) string {
	b.p.mu.Lock()
	defer b.p.mu.Unlock()
	return b.p.statsLocked(name, b.p.now())[0].String()
}

// pages reads n pages of conn at an even pace over d.
func (b progressBundle) pages(conn string, n int, d time.Duration) {
	for range n {
		b.clock.advance(d / time.Duration(n))
		b.p.Page(conn, 100, 100)
	}
}

func wantIn(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s %q: want %q in it", what, s, w)
		}
	}
}

func TestProgressETAHasNoBasisBeforeAnAccountIsSynced(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{Connections: []string{"lc"}})
	wantIn(t, "before listing", b.stats("lc"), "listing accounts", "ETA ?")
	b.p.AddAccounts("lc", 10)
	b.pages("lc", 20, 10*time.Second)
	// Pages but no account finished: nothing says how many pages an account has.
	wantIn(t, "no account synced", b.stats("lc"), "0/10 accounts", "ETA ?")
	wantIn(t, "total", b.stats(""), "0/10 accounts", "ETA ?")
}

// The pages left are the mean pages per synced account times the accounts left, read at
// the page rate of the last 30 s: a slowdown (throttling) lengthens the ETA at once, where
// one from accounts and the whole run's pace (60 s for 5 of 10 accounts: 60 s more) would
// not move.
func TestProgressETAFromPagesAtTheRecentPace(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{})
	b.p.AddAccounts("lc", 10)
	b.pages("lc", 20, 10*time.Second) // 2 pages/s
	b.p.AccountDone("lc", OutcomeOK)
	b.p.AccountDone("lc", OutcomeOK)
	// 10 pages per account, 8 accounts left: 80 pages at 2/s.
	wantIn(t, "steady", b.stats("lc"), "2/10 accounts", "20 pages, 2.0/s", "ETA 40s")

	b.pages("lc", 120, 30*time.Second) // 4 pages/s
	b.pages("lc", 10, 30*time.Second)  // then 1 page every 3 s
	for range 3 {
		b.p.AccountDone("lc", OutcomeOK)
	}
	// 150 pages for 5 accounts: 30 each, 5 left: 150 pages at 1/3 page/s.
	wantIn(t, "after a slowdown", b.stats("lc"), "5/10 accounts", "ETA 7m30s")

	b.clock.advance(31 * time.Second)
	wantIn(t, "stalled for the whole window", b.stats("lc"), "ETA ?")
}

// The total's ETA is the longest connection's (they run side by side), and unknown while
// one connection has no basis, or has not listed its accounts.
func TestProgressTotalETAIsTheLongestConnections(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{Connections: []string{"a", "b", "c", "d"}})
	b.p.AddAccounts("a", 4)
	b.p.AddAccounts("b", 7)
	b.p.AddAccounts("c", 1)
	b.pages("a", 10, 10*time.Second) // 1 page/s, 10 pages per account, 3 left: 30 s
	b.p.AccountDone("a", OutcomeOK)
	b.p.AccountDone("c", OutcomeOK)
	wantIn(t, "a", b.stats("a"), "ETA 30s")
	wantIn(t, "c", b.stats("c"), "1/1 accounts", "done")
	wantIn(t, "b without a basis", b.stats(""), "ETA ?")
	b.pages("b", 10, 10*time.Second)
	b.p.AccountDone("b", OutcomeOK)
	// 10 pages each in the 20 s since the listing: 0.5/s; 30 pages left for a, 60 for b.
	wantIn(t, "a", b.stats("a"), "ETA 1m00s")
	wantIn(t, "b", b.stats("b"), "ETA 2m00s")
	wantIn(t, "d still listing", b.stats(""), "3/12 accounts", "ETA ?")
	b.p.AddAccounts("d", 0)
	wantIn(t, "total", b.stats(""), "3/12 accounts", "ETA 2m00s")
	for range 3 {
		b.p.AccountDone("a", OutcomeOK)
	}
	for range 6 {
		b.p.AccountDone("b", OutcomeOK)
	}
	wantIn(t, "all synced", b.stats(""), "12/12 accounts", "done")

	// One connection done and another still listing: the run is not done.
	b = setupProgress(t, ProgressOptions{Connections: []string{"x", "y"}})
	b.p.AddAccounts("x", 1)
	b.p.AccountDone("x", OutcomeOK)
	wantIn(t, "y still listing", b.stats(""), "1/1 accounts", "ETA ?")
}

// A --full pass re-reads what the warehouse has: read and written are counted apart.
func TestProgressReadAndWrittenApart(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{})
	b.p.AddAccounts("lc", 2)
	b.p.Page("lc", 500, 0)
	b.p.Page("lc", 500, 3)
	b.p.Page("liq", 1234, 1234)
	wantIn(t, "lc", b.stats("lc"), "read 1,000", "written 3")
	wantIn(t, "total", b.stats(""), "read 2,234", "written 1,237")
}

// After a stop, the accounts it interrupted and those it never reached are cancelled, not
// done; accounts another worker synced are skipped, not synced by us.
func TestProgressShowsCancelledAndSkippedAccounts(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{})
	b.p.AddAccounts("lc", 23)
	for range 12 {
		b.p.AccountDone("lc", OutcomeOK)
	}
	b.p.AccountDone("lc", OutcomeFailed)
	b.p.AccountDone("lc", OutcomeSkipped)
	b.p.AccountDone("lc", OutcomeSkipped)
	b.p.AccountDone("lc", OutcomeCancelled)
	b.p.AccountDone("lc", OutcomeCancelled)
	wantIn(t, "running", b.stats("lc"), "13/23 accounts", "1 failed", "2 skipped", "2 cancelled")
	b.p.Finish(true)
	// 6 never reached.
	for _, name := range []string{"lc", ""} {
		s := b.stats(name)
		wantIn(t, "stopped", s, "13/23 accounts", "1 failed", "2 skipped", "8 cancelled", "stopped")
		if strings.Contains(s, "23/23") {
			t.Errorf("stopped: %q counts every account as done", s)
		}
	}
}

func TestProgressFinishedWithoutAStopShowsAccountsNotSynced(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{Connections: []string{"lc", "liq"}})
	b.p.AddAccounts("lc", 3)
	b.p.AccountDone("lc", OutcomeOK)
	b.p.AccountDone("lc", OutcomeOK)
	b.p.Finish(false)
	wantIn(t, "lc", b.stats("lc"), "2/3 accounts", "1 not synced", "done")
	wantIn(t, "liq (its listing failed)", b.stats("liq"), "no accounts listed")
	if s := b.stats("lc"); strings.Contains(s, "cancelled") {
		t.Errorf("not stopped: %q", s)
	}
}

// At every width, every line fits one column short of the edge, and the bars line up:
// one label width and one bar width for all lines.
func TestProgressLinesFitTheWidth(t *testing.T) {
	t.Parallel()
	b := setupProgress(t, ProgressOptions{Connections: []string{"sandbox-leadconnector", "sandbox-localiq", "x"}})
	b.p.AddAccounts("sandbox-leadconnector", 2300)
	b.p.AddAccounts("sandbox-localiq", 12)
	b.pages("sandbox-leadconnector", 40, 20*time.Second)
	for range 1400 {
		b.p.AccountDone("sandbox-leadconnector", OutcomeOK)
	}
	b.p.Page("sandbox-localiq", 12_345_678, 9_876_543)
	if l := b.p.layout("", 120); l.barW == 0 || !strings.Contains(l.stats, "1400/2312 accounts | read 12,349,678 | written 9,880,543 | ") {
		t.Errorf("120 columns: the total is %q (bar %d): want a bar and the numbers in full", l.line(), l.barW)
	}
	for _, o := range []string{OutcomeFailed, OutcomeRestricted, OutcomeSkipped, OutcomeCancelled} {
		b.p.AccountDone("sandbox-leadconnector", o)
		b.p.AccountDone("sandbox-localiq", o)
	}
	names := []string{"sandbox-leadconnector", "sandbox-localiq", "x", ""}
	check := func(state string) {
		for width := 20; width <= 200; width++ {
			var labelW, barW []int
			for _, n := range names {
				l := b.p.layout(n, width)
				if got := runewidth.StringWidth(l.line()); got > width-1 {
					t.Fatalf("%s, %d columns: %d-column line %q", state, width, got, l.line())
				}
				labelW, barW = append(labelW, runewidth.StringWidth(l.label)), append(barW, l.barW)
			}
			for i := range names {
				if labelW[i] != labelW[0] || barW[i] != barW[0] {
					t.Fatalf("%s, %d columns: labels %v, bars %v: not aligned", state, width, labelW, barW)
				}
			}
			if width == 80 || width == 120 {
				t.Logf("%s at %d columns:", state, width)
				for _, n := range names {
					t.Logf("  %s", b.p.layout(n, width).line())
				}
			}
		}
	}
	check("running")
	b.p.Finish(true)
	check("stopped")
}

// Outside a terminal, a "progress" record with the numbers, and a last one at the end.
func TestProgressLogsRecordsOutsideATerminal(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := setupProgress(t, ProgressOptions{Log: log, Interval: time.Hour})
	b.p.Start()
	b.p.AddAccounts("lc", 2)
	b.p.AccountDone("lc", OutcomeOK)
	b.p.Page("lc", 7, 5)
	b.clock.advance(3 * time.Second)
	b.p.Finish(true)
	want := regexp.MustCompile(`msg=progress status="total: 1/2 accounts \| 1 cancelled \| read 7 \| written 5 \| 1 page, 0\.3/s \| stopped, took 3s; lc: 1/2 accounts .* \| stopped"`)
	if !want.MatchString(logs.String()) {
		t.Errorf("records:\n%s\nwant one matching %s", logs.String(), want)
	}
}

// The bars drawn by mpb (here asked for outside a terminal: 80 columns): a record written
// through the display prints above them, and the last frame shows the final numbers.
func TestProgressBarsPrintRecordsAbove(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	clock := &progressClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	p := NewProgress(&out, ProgressOptions{Bars: true, Connections: []string{"lc", "liq"}, Now: clock.now})
	p.Start()
	p.AddAccounts("lc", 3)
	p.AddAccounts("liq", 2)
	p.AccountDone("lc", OutcomeOK)
	p.Page("lc", 40, 40)
	fmt.Fprintln(p, `level=INFO msg="account synced" account=A1`)
	clock.advance(2 * time.Second)
	p.Finish(true)
	fmt.Fprintln(p, "after the display")

	// Each frame starts by moving up over the previous one and erasing it.
	frames := progressRedraw.Split(out.String(), -1)
	last := strings.Split(strings.TrimSuffix(frames[len(frames)-1], "\n"), "\n")
	if len(last) < 4 || last[len(last)-1] != "after the display" {
		t.Fatalf("last frame:\n%s", strings.Join(last, "\n"))
	}
	bars := last[len(last)-4 : len(last)-1]
	// The widest line decides the form of all: here "1/5, " rather than "1/5 accounts | ".
	for i, want := range []string{`^lc    \[=+>?-+\] 1/3, 2 cancelled, read 40, written 40, stopped$`,
		`^liq   \[-+\] 0/2, 2 cancelled, read 0, written 0, stopped$`,
		`^total \[=+>?-+\] 1/5, 4 cancelled, read 40, written 40, stopped, took 2s$`} {
		if !regexp.MustCompile(want).MatchString(bars[i]) {
			t.Errorf("final line %d %q, want %s", i, bars[i], want)
		}
		if w := runewidth.StringWidth(bars[i]); w > 79 {
			t.Errorf("final line %d is %d columns: %q", i, w, bars[i])
		}
	}
	record := -1
	for i, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "account synced") {
			if !strings.HasPrefix(progressRedraw.ReplaceAllString(l, ""), "level=INFO") {
				t.Errorf("the record shares its line: %q", l)
			}
			record = i
		}
	}
	if record < 0 {
		t.Errorf("the record written during the display is lost:\n%s", out.String())
	}
}

// progressRedraw goes back over the previous frame and erases it.
var progressRedraw = regexp.MustCompile("\r\x1b\\[\\d+A\x1b\\[2K(\x1b\\[B\x1b\\[J\x1b\\[A)?")

// syncBuffer is a bytes.Buffer for one writer and a reader after it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
