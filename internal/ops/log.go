package ops

import (
	"io"
	"log/slog"

	"golang.org/x/term"
)

// NewLogger builds the process logger from log.level and log.format: "text", "json", or
// "auto" (or empty), which is text when w is a terminal and JSON otherwise (journald, files,
// log shippers).
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" || ((format == "auto" || format == "") && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
