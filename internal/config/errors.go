package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration: the key path (e.g. "connections[1].api_version"),
// its line in the file (0 when unknown, e.g. for a configuration built in code), and what is
// wrong. The CLI prints it and exits 2.
type Error struct {
	File  string
	Field string
	Line  int
	Msg   string
}

// Error reads like "config.yaml: connections[1].api_verison (line 23): unknown field".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	switch {
	case e.Field != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s (line %d): ", e.Field, e.Line)
	case e.Field != "":
		fmt.Fprintf(&b, "%s: ", e.Field)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is several problems, in file order; each is printed on its own line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// asError returns nil, the single *Error, or Errors.
func asError(es []*Error) error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return Errors(es)
}
