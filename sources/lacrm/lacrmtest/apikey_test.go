package lacrmtest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
)

// admin posts to an /_admin/ path and decodes the JSON answer, if any.
func (b *bundle) admin(t *testing.T, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := b.hc.Post(b.srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(buf.Bytes(), &m)
	return resp.StatusCode, m
}

func TestIssuedAPIKeyWorksWithoutBearer(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 4, PipelineItems: 1})
	st, m := b.admin(t, "/_admin/api_keys", "")
	key, _ := m["api_key"].(string)
	if st != http.StatusOK || !strings.HasPrefix(key, lacrmtest.APIKeyPrefix) || len(key) < len(lacrmtest.APIKeyPrefix)+20 {
		t.Fatalf("issue: %d %v", st, m)
	}
	acct := b.srv.AccountOf(b.srv.SandboxUser())
	st, _, body := b.call(t, key, "GetUser", nil)
	if st != http.StatusOK || !strings.Contains(string(body), acct) {
		t.Fatalf("GetUser with the raw key: %d %s", st, body)
	}
	st, _, body = b.call(t, key, "GetContacts", map[string]any{"MaxNumberOfResults": 100})
	var page struct{ Results []map[string]any }
	if st != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Results) == 0 {
		t.Fatalf("GetContacts with the raw key: %d %s", st, body)
	}
	// The key is no OAuth token: with Bearer it is not a valid credential.
	st, _, body = b.call(t, "Bearer "+key, "GetUser", nil)
	wantInvalidCredentials(t, st, body)
	if n := b.srv.Counters().Requests("v2/GetUser", http.StatusOK); n != 1 {
		t.Fatalf("v2/GetUser 200 = %d, want 1", n)
	}
	other, err := b.srv.IssueAPIKey()
	if err != nil || other == key || !strings.HasPrefix(other, lacrmtest.APIKeyPrefix) {
		t.Fatalf("second key %q: %v", other, err)
	}
}

func TestRevokedAPIKeyIsInvalidCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 2, PipelineItems: 1})
	key, err := b.srv.IssueAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := b.srv.IssueAPIKey()
	if st, _, body := b.call(t, key, "GetUser", nil); st != http.StatusOK {
		t.Fatalf("before revoking: %d %s", st, body)
	}
	if st, m := b.admin(t, "/_admin/api_keys/revoke", `{"api_key":"`+key+`"}`); st != http.StatusNoContent {
		t.Fatalf("revoke: %d %v", st, m)
	}
	st, _, body := b.call(t, key, "GetUser", nil)
	wantInvalidCredentials(t, st, body)
	// The same answer as an expired OAuth token's, description aside.
	if e := decodeErr(t, body); e.ErrorCode != "InvalidCredentials" {
		t.Fatalf("ErrorCode = %q", e.ErrorCode)
	}
	if st, _, body := b.call(t, keep, "GetUser", nil); st != http.StatusOK {
		t.Fatalf("another key after revoking one: %d %s", st, body)
	}
	st, _, body = b.call(t, lacrmtest.APIKeyPrefix+"never-issued", "GetUser", nil)
	wantInvalidCredentials(t, st, body)
	if err := b.srv.RevokeAPIKey("never-issued"); !errors.Is(err, lacrmtest.ErrNotFound) {
		t.Fatalf("RevokeAPIKey of an unknown key: %v", err)
	}
	if st, _ := b.admin(t, "/_admin/api_keys/revoke", `{"api_key":"never-issued"}`); st != http.StatusNotFound {
		t.Fatalf("admin revoke of an unknown key: %d", st)
	}
	if st, _ := b.admin(t, "/_admin/api_keys/revoke", `{"key":"x"}`); st != http.StatusBadRequest {
		t.Fatalf("admin revoke with a bad body: %d", st)
	}
}

func TestAPIKeyOfAnotherUserAndConfiguredKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, lacrmtest.Options{Contacts: 2, PipelineItems: 1,
		Users:   []lacrmtest.User{{Name: "second@lacrm.test"}},
		APIKeys: map[string]string{"raw-key-1": "second@lacrm.test"}})
	second := b.srv.AccountOf("second@lacrm.test")
	st, m := b.admin(t, "/_admin/api_keys", `{"user":"second@lacrm.test"}`)
	key, _ := m["api_key"].(string)
	if st != http.StatusOK || key == "" {
		t.Fatalf("issue for a user: %d %v", st, m)
	}
	if st, _, body := b.call(t, key, "GetUser", nil); st != http.StatusOK || !strings.Contains(string(body), second) {
		t.Fatalf("the key's account: %d %s", st, body)
	}
	if st, _ := b.admin(t, "/_admin/api_keys", `{"user":"nobody"}`); st != http.StatusNotFound {
		t.Fatalf("issue for an unknown user: %d", st)
	}
	// Keys given in Options can be revoked too.
	if err := b.srv.RevokeAPIKey("raw-key-1"); err != nil {
		t.Fatal(err)
	}
	st, _, body := b.call(t, "raw-key-1", "GetUser", nil)
	wantInvalidCredentials(t, st, body)
}
