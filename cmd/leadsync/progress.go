package main

import (
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/worker"
)

// runProgress builds the progress display that --progress mode asks for (auto: bars on a
// terminal), with a line for each of conns, and the process logger. While the bars are
// drawn the logger, and any other message to stderr, must write through the display (it
// is an io.Writer), so that they print above the bars. Outside a run, the display writes
// straight to stderr.
func runProgress(mode string, conns []string, lc config.Log, stderr io.Writer) (*worker.Progress, *slog.Logger) {
	term := terminalOf(stderr)
	if mode == "off" || (mode == "auto" && term == nil) {
		log := newLogger(&config.Config{Log: lc}, stderr)
		return worker.NewProgress(stderr, worker.ProgressOptions{Log: log, Connections: conns}), log
	}
	p := worker.NewProgress(stderr, worker.ProgressOptions{Bars: true, Terminal: term, Connections: conns})
	// The logger does not see the terminal through the display: it picks the format
	// "auto" picks for stderr.
	if (lc.Format == "" || lc.Format == "auto") && term != nil {
		lc.Format = "text"
	}
	return p, newLogger(&config.Config{Log: lc}, p)
}

// terminalOf is the terminal under w, or nil.
func terminalOf(w io.Writer) *os.File {
	if !isTerminal(w) {
		return nil
	}
	if s, ok := w.(*serialWriter); ok {
		w = s.w
	}
	return w.(*os.File)
}

// runConnections are the enabled connections a run syncs: only, when given.
func runConnections(cfg *config.Config, only []string) []string {
	var names []string
	for _, c := range cfg.Connections {
		if c.IsEnabled() && (len(only) == 0 || slices.Contains(only, c.Name)) {
			names = append(names, c.Name)
		}
	}
	return names
}
