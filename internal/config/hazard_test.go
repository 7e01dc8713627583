package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/sources/lacrm"
)

// aliasBomb is a configuration of about 600 bytes whose merge keys, each level merging the
// one before four times, would expand to 4^14 connections' worth of values.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("connections:\n  - &c0 {name: a, source: lacrm, client_id: x}\n")
	for i := 1; i < 15; i++ {
		p := fmt.Sprintf("*c%d", i-1)
		fmt.Fprintf(&b, "  - &c%d {<<: [%s, %s, %s, %s]}\n", i, p, p, p, p)
	}
	return b.String()
}

func TestAliasBombIsRefused(t *testing.T) {
	t.Parallel()
	bomb := aliasBomb()
	if len(bomb) > 700 {
		t.Fatalf("the bomb is %d bytes; the point is that it is small", len(bomb))
	}
	_, err := config.Parse([]byte(bomb), "bomb.yaml")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: got %v, want a *config.Error", err)
	}
	var found *config.Error
	for _, e := range errorList(err) {
		if strings.Contains(e.Msg, "expand to more values than") {
			found = e
		}
	}
	if found == nil || found.Line < 2 || !strings.HasPrefix(found.Field, "connections[") {
		t.Fatalf("no alias budget error naming a connection and its line in:\n%v", err)
	}
	if n := len(errorList(err)); n > 100 {
		t.Errorf("%d errors reported: the expansion should stop at the budget", n)
	}
}

func errorList(err error) []*config.Error {
	var es config.Errors
	if errors.As(err, &es) {
		return es
	}
	var e *config.Error
	if errors.As(err, &e) {
		return []*config.Error{e}
	}
	return nil
}

func TestModestAliasUseIsAccepted(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("connections:\n  - &base\n    name: c0\n    source: lacrm\n    client_id: id\n    client_secret: {env: S}\n    pipelines: [a, b, c]\n")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "  - <<: *base\n    name: c%d\n", i)
	}
	c, err := config.Parse([]byte(b.String()), "many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Connection("c999"); got == nil || len(got.Options.(*lacrm.Options).Pipelines) != 3 {
		t.Fatalf("connection c999: %+v", got)
	}
}

func TestSecretFileSizeIsBounded(t *testing.T) {
	t.Parallel()
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", config.MaxFileSize+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", big} {
		s := config.Secret{File: path}
		s.SetField("connections[0].client_secret", 5)
		_, err := s.Resolve()
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field != "connections[0].client_secret" || !strings.Contains(ce.Msg, "larger than 64 KiB") {
			t.Errorf("%s: got %v, want a size error naming the field", path, err)
		}
	}
}

// keyConfig writes a config whose token_store.key_file is key (line 3) and loads it.
func keyConfig(t *testing.T, dir, key string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	body := "state_dir: " + dir + "/state\ntoken_store:\n  key_file: " + key + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", []byte(strings.Repeat("ab", 32)+"\n"))
	short := write("short.key", []byte(strings.Repeat("\x01", 31)))
	text := write("text.key", []byte("not a key at all\n"))
	for _, tc := range []struct {
		name, key, msg string
	}{
		{"missing", filepath.Join(dir, "nope.key"), "no such file"},
		{"31 bytes", short, "got 31 bytes"},
		{"not a key", text, "want 32 raw bytes"},
		{"a device", "/dev/zero", "larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := keyConfig(t, t.TempDir(), tc.key).CheckKey()
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field != "token_store.key_file" || ce.Line != 3 || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %v, want token_store.key_file (line 3) ... %q", err, tc.msg)
			}
		})
	}
	if err := keyConfig(t, t.TempDir(), good).CheckKey(); err != nil {
		t.Errorf("a good key: %v", err)
	}
	// No key_file: the token store generates one on first use; checking must not create it.
	c, err := config.Parse([]byte("state_dir: "+dir+"/fresh\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenStore.KeyAutoCreate {
		if err := c.CheckKey(); err != nil {
			t.Errorf("no key yet: %v", err)
		}
		if _, err := os.Stat(c.KeyPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("CheckKey created %s (or: %v)", c.KeyPath(), err)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	open := filepath.Join(dir, "open")
	link := filepath.Join(dir, "link")
	for _, p := range []string{private, open} {
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	conn := func(name, secret string) string {
		return "  - {name: " + name + ", source: lacrm, client_id: id, client_secret: {file: " + secret + "}}\n"
	}
	body := "warehouse:\n  url: postgres://leadsync:hunter2@db.internal/leads\n" +
		"token_store:\n  url: postgres://leadsync@db.internal/leads?password=hunter2\n  key_file: " + open + "\n" +
		"connections:\n" + conn("a", private) + conn("b", open) + conn("c", link)
	c, err := config.Parse([]byte(body), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range c.Warnings() {
		got[fmt.Sprintf("%s:%d", w.Field, w.Line)] = w.Msg
		if strings.Contains(w.Error(), "hunter2") || strings.Contains(w.Error(), "s3cret") {
			t.Errorf("a warning shows a secret: %v", w)
		}
	}
	for key, msg := range map[string]string{
		"warehouse.url:2":                "passfile=",
		"token_store.url:4":              "PGPASSFILE",
		"token_store.key_file:5":         "readable by every user",
		"connections[1].client_secret:8": "readable by every user",
		"connections[2].client_secret:9": "symbolic link",
	} {
		if !strings.Contains(got[key], msg) {
			t.Errorf("%s: warning %q, want one containing %q", key, got[key], msg)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d warnings, want 5 (none for the private file): %v", len(got), got)
	}
}
