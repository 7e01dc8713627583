package ops

import (
	"io"
	"log/slog"

	"golang.org/x/term"
)

// NewLogger builds the process logger from log.level and log.format: "text", "json", or
// "auto" (or empty), which is text when w is a terminal and JSON otherwise (journald, files,
// log shippers).
func NewLogger(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	if format == "auto" || format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	return slog.New(NewLogHandler(w, level, format))
}

// NewLogHandler is NewLogger's handler for a format already chosen: "text", else JSON. JSON
// durations are float seconds, the unit log processors and Prometheus compute with; text,
// read by people, keeps Go's duration strings (1m30s).
func NewLogHandler(w io.Writer, level slog.Leveler, format string) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.NewTextHandler(w, opts)
	}
	opts.ReplaceAttr = DurationSeconds
	return slog.NewJSONHandler(w, opts)
}

// DurationSeconds is a slog ReplaceAttr that writes durations as float seconds: 1.5, not
// the 1500000000 nanoseconds slog's JSON handler writes by default.
func DurationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
