package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/leadsync/leadsync/store"
)

const keyField = "token_store.key_file"

// CheckKey reads the token store key as the token store will, without creating one: a
// missing, unreadable or malformed key is a configuration error naming token_store.key_file,
// found before any database is opened. A generated key that does not exist yet is fine: the
// token store creates it on first use.
func (c *Config) CheckKey() error {
	path := c.KeyPath()
	b, err := readSmallFile(path)
	if errors.Is(err, fs.ErrNotExist) && c.TokenStore.KeyAutoCreate {
		return nil
	}
	if err == nil {
		_, err = store.ParseKey(b)
	}
	if err != nil {
		return &Error{File: c.file, Field: keyField, Line: c.line(keyField),
			Msg: fmt.Sprintf("token key %s: %v", path, unwrapPathError(err))}
	}
	return nil
}

// Warnings lists what works but puts a secret at risk: a secret or key file that every user
// can read or that is a symbolic link, and a password written into a database URL. The CLI
// logs them, and refuses them with --strict. They never contain a secret.
func (c *Config) Warnings() []*Error {
	var ws []*Error
	warn := func(field string, line int, msg string) {
		ws = append(ws, &Error{File: c.file, Field: field, Line: line, Msg: msg})
	}
	for _, s := range c.secrets() {
		if s.File != "" {
			if msg := fileExposure(s.File); msg != "" {
				warn(s.field, s.line, msg)
			}
		}
	}
	// A key from $CREDENTIALS_DIRECTORY is systemd's to protect, and a generated one is 0600.
	if line, set := c.lines[keyField]; set && c.TokenStore.KeyFile != "" {
		if msg := fileExposure(c.TokenStore.KeyFile); msg != "" {
			warn(keyField, line, msg)
		}
	}
	for _, u := range []struct{ field, url string }{{"warehouse.url", c.Warehouse.URL}, {"token_store.url", c.TokenStore.URL}} {
		if inlinePassword(u.url) {
			warn(u.field, c.line(u.field), "the URL holds a password, which anyone who can read this file sees: "+
				"leave it out and keep it in a libpq password file (mode 600) named by passfile=/path in the URL query "+
				"or by $PGPASSFILE (under systemd: LoadCredential=pgpass:/etc/leadsync/pgpass and "+
				"Environment=PGPASSFILE=%d/pgpass), or use a client certificate (sslcert=, sslkey=)")
		}
	}
	return ws
}

func (c *Config) secrets() []Secret {
	var out []Secret
	for _, conn := range c.Connections {
		out = append(out, conn.Secrets()...)
	}
	return out
}

// fileExposure says how a secret file is exposed, or "" when it is not (or is missing: Resolve
// reports that).
func fileExposure(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return ""
	}
	var problems []string
	if fi.Mode()&fs.ModeSymlink != 0 {
		problems = append(problems, "is a symbolic link, so whoever can change the link or its target chooses "+
			"what is read: name the file itself")
		if fi, err = os.Stat(path); err != nil {
			return fmt.Sprintf("%s %s", path, problems[0])
		}
	}
	if fi.Mode().Perm()&0o004 != 0 {
		problems = append(problems, fmt.Sprintf("is readable by every user on this machine (mode %s): "+
			"chmod 600 it (or 640, group leadsync)", fi.Mode().Perm()))
	}
	if len(problems) == 0 {
		return ""
	}
	return path + " " + strings.Join(problems, "; and ")
}

// inlinePassword reports whether a PostgreSQL URL carries a password (user:pass@ or
// ?password=).
func inlinePassword(raw string) bool {
	if dialect, _, _ := SplitURL(raw); dialect != DialectPostgres {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	_, hasPassword := u.User.Password()
	return hasPassword || u.Query().Has("password")
}
