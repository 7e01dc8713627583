package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Duration is a Go duration string in YAML ("90s", "15m", "1h30m").
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeScalar(s string) error {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("%q has no unit: write a duration like %ss, %sm or 1h30m", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (examples: 90s, 15m, 1h30m)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back as a string (for `leadsync config check` output).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Date is a calendar day, written YYYY-MM-DD; it is midnight UTC.
type Date struct{ time.Time }

const dateLayout = "2006-01-02"

func (d *Date) decodeScalar(s string) error {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return fmt.Errorf("%q is not a date: write YYYY-MM-DD", s)
	}
	d.Time = t
	return nil
}

func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Format(dateLayout)
}

// MarshalText writes the date as YYYY-MM-DD.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Secret is a reference to a secret value, never the value itself: exactly one of a file,
// an environment variable, or a systemd credential ($CREDENTIALS_DIRECTORY/<name>, set up
// with LoadCredential=). In YAML: `{file: /etc/leadsync/secret}`, `{env: VAR}` or
// `{credential: name}`.
type Secret struct {
	File       string `yaml:"file"`
	Env        string `yaml:"env"`
	Credential string `yaml:"credential"`

	field string // key path, for errors
	line  int
}

// ErrNoSecret is returned (wrapped in an *Error) by Resolve for a secret that is not set.
var ErrNoSecret = errors.New("secret not configured")

// IsZero reports whether no reference is set.
func (s Secret) IsZero() bool { return s.File == "" && s.Env == "" && s.Credential == "" }

// String describes where the secret comes from, never its value.
func (s Secret) String() string {
	switch {
	case s.File != "":
		return "file:" + s.File
	case s.Env != "":
		return "env:" + s.Env
	case s.Credential != "":
		return "credential:" + s.Credential
	}
	return "(none)"
}

// MarshalText writes the reference only (for `config check` output).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Field is the key path the secret was configured at, e.g. "connections[0].client_secret".
func (s Secret) Field() string { return s.field }

func (s *Secret) setField(path string, line int) {
	if s.field == "" {
		s.field, s.line = path, line
	}
}

func (s *Secret) inlineError() string {
	return "a secret cannot be written inline: the config file is often readable by others " +
		"and ends up in backups and version control. Write {file: /etc/leadsync/<name>} " +
		"(a file readable only by leadsync), {env: VARIABLE}, or {credential: <name>} " +
		"(a systemd credential, LoadCredential=<name>:...)"
}

// Resolve reads the secret. Surrounding whitespace (a file's trailing newline) is trimmed.
// Errors are *Error values naming the field; they never contain the secret.
func (s Secret) Resolve() (string, error) { return s.resolve(os.Getenv) }

func (s Secret) resolve(getenv func(string) string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", &Error{Field: s.field, Line: s.line, Msg: fmt.Sprintf(format, args...)}
	}
	var raw string
	switch {
	case s.IsZero():
		return "", &Error{Field: s.field, Line: s.line, Msg: ErrNoSecret.Error()}
	case s.File != "":
		b, err := readSmallFile(s.File)
		if err != nil {
			return fail("read secret file %s: %v", s.File, unwrapPathError(err))
		}
		raw = string(b)
	case s.Env != "":
		raw = getenv(s.Env)
		if raw == "" {
			return fail("environment variable %s is not set or empty", s.Env)
		}
	case s.Credential != "":
		dir := getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return fail("credential %q: $CREDENTIALS_DIRECTORY is not set (run under systemd with "+
				"LoadCredential=%s:..., or use {file: ...} instead)", s.Credential, s.Credential)
		}
		b, err := readSmallFile(filepath.Join(dir, s.Credential))
		if err != nil {
			return fail("credential %q: %v (is LoadCredential=%s:... in the unit, and does its source exist?)",
				s.Credential, unwrapPathError(err), s.Credential)
		}
		raw = string(b)
	}
	v := strings.TrimSpace(raw)
	if v == "" {
		return fail("secret from %s is empty", s)
	}
	return v, nil
}

// MaxFileSize bounds the secret and key files the configuration names: a secret is a few
// hundred bytes, and a mistaken path (/dev/zero, a log file) must not fill the memory.
const MaxFileSize = 64 << 10

var errTooLarge = fmt.Errorf("larger than %d KiB: not a secret (is the path right?)", MaxFileSize>>10)

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, errTooLarge
	}
	return b, nil
}
