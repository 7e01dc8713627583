package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of the token store key: AES-256.
const KeySize = 32

// ErrKeyMismatch means the store's records were encrypted with another key.
var ErrKeyMismatch = errors.New("token store key does not match the key the tokens were encrypted with")

// ErrBadKey means the token store key could not be loaded: a missing, unreadable or
// malformed key file (token_store.key_file, or the token-key credential). A configuration
// error: the CLI exits 2 on it.
var ErrBadKey = errors.New("unusable token store key")

// sealVersion prefixes every ciphertext so the format can change later.
const sealVersion = 1

// sealer encrypts token fields with AES-256-GCM. Each ciphertext is bound to its record and
// field (the additional data), so a ciphertext copied into another row or column fails to open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("store: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns version || nonce || ciphertext. An empty plaintext seals to nil (no token).
func (s *sealer) seal(plaintext, ad string) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], []byte(plaintext), []byte(ad)), nil
}

func (s *sealer) open(ciphertext []byte, ad string) (string, error) {
	if len(ciphertext) == 0 {
		return "", nil
	}
	n := s.aead.NonceSize()
	if len(ciphertext) < 1+n+s.aead.Overhead() || ciphertext[0] != sealVersion {
		return "", fmt.Errorf("store: malformed ciphertext for %s", adLabel(ad))
	}
	pt, err := s.aead.Open(nil, ciphertext[1:1+n], ciphertext[1+n:], []byte(ad))
	if err != nil {
		return "", fmt.Errorf("store: %s: %w (check token_store.key_file, or the token-key credential in $CREDENTIALS_DIRECTORY)", adLabel(ad), ErrKeyMismatch)
	}
	return string(pt), nil
}

// Additional data: "kind\x00connection[\x00account]\x00field".
func grantAD(conn, field string) string { return "grant\x00" + conn + "\x00" + field }
func accountAD(conn, acct string) string {
	return "account\x00" + conn + "\x00" + acct + "\x00access"
}

const keyCheckAD = "meta\x00key_check"
const keyCheckPlain = "leadsync token store key check"

func adLabel(ad string) string { return strings.ReplaceAll(ad, "\x00", "/") }

// LoadKey finds the token store key: keyFile when set; else the systemd credential
// $CREDENTIALS_DIRECTORY/token-key (LoadCredential=token-key:...); else <stateDir>/token.key,
// generated on first use (mode 0600) with a warning to back it up.
//
// A key file holds 32 raw bytes, or 64 hexadecimal characters, or the standard or URL
// base64 encoding of 32 bytes; surrounding whitespace is ignored for the text forms. 32 bytes
// that are all printable characters are refused as too likely a truncated text key.
// Generate one with `head -c 32 /dev/urandom | xxd -p -c 64` (hex) or `openssl rand -hex 32`.
func LoadKey(keyFile, stateDir string, log *slog.Logger) ([]byte, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if keyFile != "" {
		key, err := readKeyFile(keyFile, log)
		if err != nil {
			return nil, fmt.Errorf("token_store.key_file: %w", err)
		}
		return key, nil
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, "token-key")
		if _, err := os.Stat(p); err == nil {
			key, err := readKeyFile(p, nil) // systemd already restricts credential access
			if err != nil {
				return nil, fmt.Errorf("the token-key credential (token_store.key_file unset): %w", err)
			}
			return key, nil
		}
	}
	if stateDir == "" {
		return nil, fmt.Errorf("store: no token key: set token_store.key_file or state_dir: %w", ErrBadKey)
	}
	p := filepath.Join(stateDir, "token.key")
	if _, err := os.Stat(p); err == nil {
		key, err := readKeyFile(p, log)
		if err != nil {
			return nil, fmt.Errorf("the generated key (token_store.key_file unset): %w", err)
		}
		return key, nil
	}
	return generateKeyFile(p, log)
}

// maxKeyFileSize bounds a key file: 64 hex characters or base64 of 32 bytes, with room for
// whitespace.
const maxKeyFileSize = 1024

func readKeyFile(path string, log *slog.Logger) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: read token key: %w: %w", ErrBadKey, err)
	}
	defer f.Close()
	// No key format is longer than this; /dev/zero or a wrong path must not fill memory.
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("store: read token key: %w: %w", ErrBadKey, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("store: token key file %s: larger than %d bytes: %w", path, maxKeyFileSize, ErrBadKey)
	}
	if log != nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("token key file is readable by other users; chmod 600 it", slog.String("path", path),
				slog.String("mode", fi.Mode().Perm().String()))
		}
	}
	key, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("store: token key file %s: %w", path, err)
	}
	return key, nil
}

// ParseKey decodes a key file's content (see LoadKey for the formats). Its errors wrap
// ErrBadKey.
func ParseKey(b []byte) ([]byte, error) {
	// 32 bytes of printable text, give or take surrounding whitespace, is a mistake (say,
	// 128-bit hex, or a 31-character key and a newline), not random key material.
	if len(b) == KeySize && !printable(bytes.TrimSpace(b)) {
		return bytes.Clone(b), nil
	}
	s := strings.TrimSpace(string(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: want 32 raw bytes, 64 hex characters, or base64 of 32 bytes (got %d bytes)", ErrBadKey, len(b))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// generateKeyFile writes a new random key as hex. It links a finished temporary file into
// place, so two processes starting together agree on one key and a crash leaves no half key.
func generateKeyFile(path string, log *slog.Logger) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create state directory: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("store: generate key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token.key.*")
	if err != nil {
		return nil, fmt.Errorf("store: generate key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("store: generate key: %w", err)
	}
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return readKeyFile(path, log) // another process won the race
		}
		return nil, fmt.Errorf("store: install key: %w", err)
	}
	log.Warn("generated a new token store key; back it up (losing it means re-authorizing every connection), "+
		"or provide one via systemd LoadCredential=token-key", slog.String("path", path))
	return key, nil
}
