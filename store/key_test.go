package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/leadsync/leadsync/store"
)

func TestParseKeyFormats(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xab}, 32)
	for name, content := range map[string][]byte{
		"raw":        key,
		"hex":        []byte(hex.EncodeToString(key) + "\n"),
		"base64":     []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
		"base64url":  []byte(base64.RawURLEncoding.EncodeToString(key)),
		"hex+spaces": []byte("  " + hex.EncodeToString(key) + "  \n"),
	} {
		got, err := store.ParseKey(content)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "short", hex.EncodeToString(key[:16]), strings.Repeat("z", 64)} {
		if _, err := store.ParseKey([]byte(bad)); err == nil || !strings.Contains(err.Error(), "64 hex characters") {
			t.Errorf("ParseKey(%q) = %v", bad, err)
		}
	}
}

func TestLoadKeySources(t *testing.T) {
	// Not parallel: sets $CREDENTIALS_DIRECTORY.
	dir := t.TempDir()
	key := bytes.Repeat([]byte{1}, 32)
	explicit := filepath.Join(dir, "explicit.key")
	if err := os.WriteFile(explicit, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	credDir := filepath.Join(dir, "creds")
	_ = os.Mkdir(credDir, 0o700)
	credKey := bytes.Repeat([]byte{2}, 32)
	if err := os.WriteFile(filepath.Join(credDir, "token-key"), credKey, 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	state := filepath.Join(dir, "state")

	if got, err := store.LoadKey(explicit, state, nil); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("explicit key file: %x %v", got, err)
	}
	if got, err := store.LoadKey("", state, nil); err != nil || !bytes.Equal(got, credKey) {
		t.Fatalf("systemd credential: %x %v", got, err)
	}
	if _, err := store.LoadKey(filepath.Join(dir, "missing"), state, nil); err == nil {
		t.Fatal("a missing explicit key file must be an error, not a new key")
	}

	// Without either, a key is generated once in the state directory, with a warning.
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys { // processes starting together agree on one key
		wg.Go(func() {
			k, err := store.LoadKey("", state, log)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) || len(k) != 32 {
			t.Fatal("concurrent first starts generated different keys")
		}
	}
	fi, err := os.Stat(filepath.Join(state, "token.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi, err)
	}
	if strings.Count(logs.String(), "generated a new token store key") != 1 {
		t.Errorf("want exactly one warning, logs:\n%s", logs.String())
	}
	again, err := store.LoadKey("", state, nil)
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Fatal("the generated key is not reused")
	}
	if strings.Contains(logs.String(), hex.EncodeToString(keys[0])) {
		t.Error("the key was logged")
	}
}

// A key file that cannot be used is a configuration error the CLI can tell apart.
func TestBadKeyFileIsErrBadKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, path := range map[string]string{
		"missing":            filepath.Join(dir, "missing.key"),
		"malformed":          write("malformed.key", []byte("not a key\n")),
		"31 bytes":           write("short.key", bytes.Repeat([]byte{0x9c}, 31)),
		"31 chars + newline": write("text.key", []byte(strings.Repeat("k", 31)+"\n")),
		"33 bytes":           write("long.key", bytes.Repeat([]byte{0x9c}, 33)),
		"hex of 31 bytes":    write("hex31.key", []byte(hex.EncodeToString(bytes.Repeat([]byte{1}, 31))+"\n")),
		"base64 of 31 bytes": write("b64.key", []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 31)))),
		"endless":            "/dev/zero",
	} {
		_, err := store.LoadKey(path, dir, nil)
		if !errors.Is(err, store.ErrBadKey) || !strings.Contains(err.Error(), "token_store.key_file") {
			t.Errorf("%s: err = %v, want ErrBadKey naming token_store.key_file", name, err)
		}
	}
}
