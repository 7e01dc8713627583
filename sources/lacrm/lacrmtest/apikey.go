package lacrmtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/leadsync/leadsync/internal/simkit"
)

// APIKeyPrefix starts every API key the fake issues, so that a leak scan can find them in
// logs and files. The rest is random.
const APIKeyPrefix = "lacrmtest-key-"

// apiKey is a user's API key (API-CONTRACTS.md §7: made in Settings → API, sent as
// "Authorization: <key>" with no Bearer); a disabled one stops working.
type apiKey struct {
	user    string
	revoked bool
}

// IssueAPIKey makes a new API key for the sandbox user.
func (f *Fake) IssueAPIKey() (string, error) { return f.IssueAPIKeyFor(f.opts.SandboxUser) }

// IssueAPIKeyFor makes a new API key for a configured user.
func (f *Fake) IssueAPIKeyFor(user string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[user]; !ok {
		return "", fmt.Errorf("user %q: %w", user, ErrNotFound)
	}
	key := APIKeyPrefix + rand.Text()
	f.apiKeys[key] = &apiKey{user: user}
	return key, nil
}

// RevokeAPIKey disables a key, issued or given in Options.APIKeys: it stops working at once.
func (f *Fake) RevokeAPIKey(key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.apiKeys[key]
	if k == nil {
		return fmt.Errorf("API key: %w", ErrNotFound)
	}
	k.revoked = true
	return nil
}

// apiKeyCaller resolves a raw API key, or says why it is invalid.
func (f *Fake) apiKeyCaller(key string) (caller, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.apiKeys[key]
	if k == nil {
		return caller{}, "unknown API key."
	}
	if k.revoked {
		return caller{}, "the API key has been disabled."
	}
	u, ok := f.users[k.user]
	if !ok {
		return caller{}, "unknown API key."
	}
	return caller{user: u.Name, account: u.AccountID, bucket: "user:" + u.Name}, ""
}

// adminAPIKeys serves /_admin/api_keys (documented in the package comment).
func (f *Fake) adminAPIKeys(m *http.ServeMux) {
	m.HandleFunc("POST /_admin/api_keys", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			User string `json:"user"`
		}
		if err := simkit.DecodeStrict(r, &in); err != nil && !errors.Is(err, io.EOF) {
			adminError(w, err)
			return
		}
		key, err := f.IssueAPIKeyFor(cmpOr(in.User, f.opts.SandboxUser))
		answer(w, map[string]string{"api_key": key}, err)
	})
	m.HandleFunc("POST /_admin/api_keys/revoke", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			APIKey string `json:"api_key"`
		}
		if err := simkit.DecodeStrict(r, &in); err != nil || in.APIKey == "" {
			adminError(w, errors.New(`want {"api_key":"..."}`))
			return
		}
		answer(w, nil, f.RevokeAPIKey(in.APIKey))
	})
}
