package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-runewidth"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/testenv"
)

// progressTmux is a tmux server of the test's own (its socket in the test's directory),
// with one pane of the size a test asks for.
type progressTmux struct {
	t      *testing.T
	bin    string
	socket string
}

func (m progressTmux) run(args ...string) string {
	m.t.Helper()
	out, err := exec.Command(m.bin, append([]string{"-S", m.socket}, args...)...).CombinedOutput()
	if err != nil {
		m.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pane is what the pane shows and what scrolled off its top, in one capture, a wrapped
// line joined again (so a line longer than the width shows as one).
func (m progressTmux) pane() []string {
	m.t.Helper()
	lines := strings.Split(m.run("capture-pane", "-p", "-J", "-S", "-", "-t", "progress"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// progressBarLine is a line of the display: a label (a connection, maybe cut, or the
// total), a bar maybe, then the accounts.
var progressBarLine = regexp.MustCompile(`^(total|sandbox-[a-z…]+) +(\[[=>-]*\] )?(\d+/\d+|listing accounts)`)

// progressBars are the indexes of the display's lines in a pane.
func progressBars(pane []string) []int {
	var bars []int
	for i, l := range pane {
		if progressBarLine.MatchString(l) {
			bars = append(bars, i)
		}
	}
	return bars
}

// progressDrawn reports whether a capture of the pane caught a whole frame of the display
// (not one half drawn): its four lines together at the bottom.
func progressDrawn(pane []string) bool {
	bars := progressBars(pane)
	return len(bars) == 4 && bars[0] == len(pane)-4
}

// progressScreen checks what a pane at width columns shows: the display's lines, one per
// connection then the total, each within the width, together at the bottom (or, when the
// run is over, before the lines printed after it: final), the log records on lines of
// their own above them, and no line of the display left from an earlier draw, on the
// screen or in the history. It returns the display's lines.
func progressScreen(t *testing.T, pane []string, width int, final bool) []string {
	t.Helper()
	dump := func() string { return strings.Join(pane, "\n") }
	for _, l := range pane {
		if strings.Contains(l, "level=") && !strings.HasPrefix(l, "time=") {
			t.Errorf("%d columns: a log record shares its line: %q\n%s", width, l, dump())
		}
	}
	bars := progressBars(pane)
	if len(bars) != 4 {
		t.Fatalf("%d columns: %d lines of the display, want one per connection (3) and the total, none left from earlier draws:\n%s", width, len(bars), dump())
	}
	if bars[3]-bars[0] != 3 || (!final && bars[3] != len(pane)-1) {
		t.Errorf("%d columns: the display's lines are not together at the bottom (lines %v of %d):\n%s", width, bars, len(pane), dump())
	}
	var display []string
	for i, prefix := range []string{"sandbox-lacrm ", "sandbox-lead", "sandbox-localiq ", "total "} {
		l := pane[bars[i]]
		display = append(display, l)
		if !strings.HasPrefix(l, prefix) {
			t.Errorf("%d columns: display line %d is %q, want it to start with %q", width, i, l, prefix)
		}
		if w := runewidth.StringWidth(l); w >= width {
			t.Errorf("%d columns: a %d-column line of the display: %q", width, w, l)
		}
	}
	if !slices.ContainsFunc(pane[:bars[0]], func(l string) bool { return strings.HasPrefix(l, "time=") }) {
		t.Errorf("%d columns: no log record above the display:\n%s", width, dump())
	}
	return display
}

// The progress display in a real terminal (tmux): `leadsync run --once` against a slow
// sandbox at 80 columns, then 120, then stopped with Ctrl-C. What the screen shows is
// checked at each step: one line per connection and the total, fitting the width, redrawn
// in place, with the log records above; at the end the final state, with the accounts the
// stop never reached as cancelled.
func TestProgressInATerminal(t *testing.T) {
	t.Parallel()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing: CI must install Debian's tmux package for the terminal test of the progress display")
		}
		t.Skip("tmux is not installed (CI installs it): the progress display is not tested in a terminal")
	}
	opts := testenv.Small(17)
	// Enough accounts that a stop after a few seconds leaves some never started.
	opts.Locations, opts.Advertisers = 6, 16
	env := testenv.New(t, opts, testenv.SQLite)
	env.Authorized(t)
	// Every request takes 400 ms: the run would last about 10 s.
	env.Sandbox.SetFaults(simkit.FaultSettings{LatencyRate: 1, Latency: 400 * time.Millisecond})

	dir := t.TempDir()
	conf := filepath.Join(dir, "tmux.conf")
	// remain-on-exit keeps the last screen once leadsync has exited.
	if err := os.WriteFile(conf, []byte("set -g remain-on-exit on\nset -g status off\nset -g history-limit 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "run.sh")
	cmd := fmt.Sprintf("#!/bin/sh\nexec env LEADSYNC_CONFIG= %q run --once --log-level debug --config %q\n", leadsyncBin, env.ConfigPath)
	if err := os.WriteFile(script, []byte(cmd), 0o700); err != nil {
		t.Fatal(err)
	}
	m := progressTmux{t: t, bin: tmux, socket: filepath.Join(dir, "tmux.sock")}
	m.run("-f", conf, "new-session", "-d", "-x", "80", "-y", "24", "-s", "progress", script)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", m.socket, "kill-server").Run() })

	// wait polls the pane until ok holds for a capture of it, and returns that capture.
	wait := func(what string, ok func(pane []string) bool) []string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			p := m.pane()
			if ok(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited 20 s for %s; the pane:\n%s", what, strings.Join(p, "\n"))
			}
			<-tick.C
		}
	}
	count := func(p []string, re *regexp.Regexp) int {
		return len(slices.DeleteFunc(slices.Clone(p), func(l string) bool { return !re.MatchString(l) }))
	}
	listed := regexp.MustCompile(`^sandbox-\S+ +(\[[=>-]*\] )?\d+/\d+`)
	synced := regexp.MustCompile(`^total +(\[[=>-]*\] )?[1-9]\d*/\d+`)
	eta := regexp.MustCompile(`^sandbox-.* ETA \d`)
	// Each wait also asks for a whole frame, which a redraw of the display gives within
	// 150 ms: a display that left lines of earlier frames never gives one.
	pane := wait("the display drawn at 80 columns, with an account synced and an ETA", func(p []string) bool {
		return progressDrawn(p) && count(p, listed) == 3 && count(p, synced) == 1 && count(p, eta) > 0
	})
	display := progressScreen(t, pane, 80, false)
	t.Logf("at 80 columns:\n%s", strings.Join(progressTail(pane), "\n"))
	if !strings.Contains(display[1], "sandbox-leadcon…") {
		t.Errorf("at 80 columns the labels should be cut: %q", display[1])
	}

	m.run("resize-window", "-t", "progress", "-x", "120", "-y", "24")
	pane = wait("the display redrawn at 120 columns", func(p []string) bool {
		return progressDrawn(p) && strings.HasPrefix(p[len(p)-3], "sandbox-leadconnector ")
	})
	display = progressScreen(t, pane, 120, false)
	t.Logf("at 120 columns:\n%s", strings.Join(progressTail(pane), "\n"))
	for _, l := range display {
		if !regexp.MustCompile(` \[[=>-]{8,}\] `).MatchString(l) || !regexp.MustCompile(`read [\d,]+.* written [\d,]+`).MatchString(l) {
			t.Errorf("at 120 columns: %q: want a bar, and read and written in full", l)
		}
	}

	m.run("send-keys", "-t", "progress", "C-c")
	wait("leadsync to exit after Ctrl-C", func([]string) bool {
		return strings.TrimSpace(m.run("display-message", "-p", "-t", "progress", "#{pane_dead}")) == "1"
	})
	pane = m.pane()
	t.Logf("after Ctrl-C:\n%s", strings.Join(progressTail(pane), "\n"))
	display = progressScreen(t, pane, 120, true)
	if status := strings.TrimSpace(m.run("display-message", "-p", "-t", "progress", "#{pane_dead_status}")); status != fmt.Sprint(exitInterrupted) {
		t.Errorf("leadsync exited %s after Ctrl-C, want %d", status, exitInterrupted)
	}
	total := regexp.MustCompile(`^total +\[[=>-]+\] (\d+)/(\d+)\S* .*\b(\d+) cancelled\b.*stopped, took \d+`).FindStringSubmatch(display[3])
	if total == nil || total[1] == total[2] {
		t.Errorf("the final total %q: want fewer accounts synced than listed, the rest cancelled, and the run stopped", display[3])
	}
	// The stop's notice: a sentence or a log record, on a line of its own either way.
	stop := slices.IndexFunc(pane, func(l string) bool {
		return strings.Contains(l, "finishing the pages in flight") && (strings.HasPrefix(l, "leadsync: interrupt") || strings.HasPrefix(l, "time="))
	})
	summary := slices.IndexFunc(pane, func(l string) bool { return strings.HasPrefix(l, "run 1 cancelled: ") })
	last := slices.Index(pane, display[3])
	if stop < 0 || stop > last || summary < last {
		t.Errorf("want the stop's notice above the final display and the run's summary below it (lines %d, %d, %d):\n%s",
			stop, last, summary, strings.Join(pane, "\n"))
	}
}

// progressTail is the last lines of a pane: about what its screen showed.
func progressTail(pane []string) []string { return pane[max(0, len(pane)-12):] }
