package sandbox_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/vendors"
)

// Two toy vendors, so the sandbox is tested as it is built: knowing no vendor. "statictoy"
// has static tokens (one per account and an account-wide key); "oauthtoy" has none.

type toyOptions struct{}

func (*toyOptions) Defaults()                {}
func (*toyOptions) Validate(*config.Checker) {}

// toyFake answers GET /whoami for the static tokens it issued, Bearer or raw.
type toyFake struct {
	counters *simkit.Counters
	faults   *simkit.Faults

	mu       sync.Mutex
	tokens   map[string]string // token → who
	fail     error             // Static fails with it
	fileName string            // Static names its key's file this ("" → "key")
}

func newToyFake() *toyFake {
	return &toyFake{counters: simkit.NewCounters(), faults: simkit.NewFaults(1, simkit.FaultSettings{}), tokens: map[string]string{}}
}

func (f *toyFake) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		who, ok := f.tokens[tok]
		f.mu.Unlock()
		if r.URL.Path != "/whoami" || !ok {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(who))
	})
}
func (f *toyFake) Counters() *simkit.Counters         { return f.counters }
func (f *toyFake) Faults() *simkit.Faults             { return f.faults }
func (f *toyFake) GroundTruth() []simkit.AccountTruth { return nil }

func (f *toyFake) issue(who string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := fmt.Sprintf("toy-%s-%d", who, len(f.tokens))
	f.tokens[tok] = who
	return tok
}

func (f *toyFake) issued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tokens)
}

func toyVendor(name string, static bool) vendors.Vendor {
	spec := &vendors.FakeSpec{
		Prefix: "/" + name,
		New:    func(vendors.FakeCommon, any) vendors.Fake { return newToyFake() },
		Sandbox: func(_ vendors.Fake, base string) vendors.SandboxConn {
			return vendors.SandboxConn{ClientID: name + "-client", ClientSecret: name + "-secret",
				BaseURL: base + "/api/", AuthURL: base + "/authorize", TokenURL: base + "/token",
				Options: []vendors.KeyValue{{Key: "app_id", Value: "app-1"}}}
		},
	}
	if static {
		spec.Static = func(f vendors.Fake, base string) (vendors.StaticConn, error) {
			tf := f.(*toyFake)
			if tf.fail != nil {
				return vendors.StaticConn{}, tf.fail
			}
			var accounts [][]vendors.Field
			for _, acct := range []string{"a1", "a2"} {
				accounts = append(accounts, []vendors.Field{{Key: "account_id", Value: acct},
					{Key: "token", Secret: &vendors.Secret{File: "token-" + acct, Value: tf.issue(acct)}}})
			}
			file := tf.fileName
			if file == "" {
				file = "key"
			}
			return vendors.StaticConn{Auth: "toy_token", BaseURL: base + "/api/", Keys: []vendors.Field{
				{Key: "accounts", List: accounts},
				{Key: "key", Secret: &vendors.Secret{File: file, Value: tf.issue("everyone")}},
				{Key: "region", Value: "eu: west"},
			}}, nil
		}
	}
	return vendors.Vendor{Name: name, Title: name, Fake: spec,
		Options: func() config.Options { return new(toyOptions) },
		Open:    func(vendors.Conn) (vendors.Opened, error) { return vendors.Opened{}, errors.New("toy: not a source") }}
}

func init() {
	vendors.Register(toyVendor("statictoy", true))
	vendors.Register(toyVendor("oauthtoy", false))
}

type testBundle struct {
	srv *sandbox.Server
	dir string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	srv, err := sandbox.New(sandbox.Options{Seed: 1}).Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &testBundle{srv: srv, dir: filepath.Join(t.TempDir(), "a dir: with, odd chars")}
}

// connections reads the written configuration's connections by name.
func connections(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Connections []map[string]any `yaml:"connections"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the written config is not YAML: %v\n%s", err, raw)
	}
	out := map[string]map[string]any{}
	for _, c := range doc.Connections {
		out[c["name"].(string)] = c
	}
	return out
}

// secretFile checks a {file: path} reference: a 0600 file under dir/secrets, named name,
// and returns its content.
func (b *testBundle) secretFile(t *testing.T, ref any, name string) string {
	t.Helper()
	m, ok := ref.(map[string]any)
	path, _ := m["file"].(string)
	if !ok || len(m) != 1 || path == "" {
		t.Fatalf("secret is not {file: path}: %#v", ref)
	}
	abs, _ := filepath.Abs(filepath.Join(b.dir, "secrets", name))
	if path != abs {
		t.Fatalf("secret file %q, want %q", path, abs)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %s: %v, mode %v", path, err, fi.Mode())
	}
	raw, _ := os.ReadFile(path)
	return strings.TrimSpace(string(raw))
}

func (b *testBundle) whoami(t *testing.T, prefix, tok string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", b.srv.URL+prefix+"/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestWriteConfigWithStaticTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path, err := b.srv.WriteConfigWith(b.dir, b.srv.URL, "sqlite://x.db", sandbox.WriteOptions{Static: true})
	if err != nil {
		t.Fatal(err)
	}
	conns := connections(t, path)
	st := conns["sandbox-statictoy"]
	if got, want := keys(st), []string{"accounts", "auth", "base_url", "key", "name", "region", "source"}; !slices.Equal(got, want) {
		t.Fatalf("static connection keys %v, want %v", got, want)
	}
	if st["source"] != "statictoy" || st["auth"] != "toy_token" || st["base_url"] != b.srv.URL+"/statictoy/api/" || st["region"] != "eu: west" {
		t.Fatalf("static connection: %v", st)
	}
	accounts, _ := st["accounts"].([]any)
	if len(accounts) != 2 {
		t.Fatalf("accounts: %#v", st["accounts"])
	}
	for i, a := range accounts {
		acct := a.(map[string]any)
		id := []string{"a1", "a2"}[i]
		if got := keys(acct); !slices.Equal(got, []string{"account_id", "token"}) || acct["account_id"] != id {
			t.Fatalf("account %d: %v", i, acct)
		}
		if who := b.whoami(t, "/statictoy", b.secretFile(t, acct["token"], "statictoy-token-"+id)); who != id {
			t.Fatalf("account %s's token works for %q", id, who)
		}
	}
	if who := b.whoami(t, "/statictoy", b.secretFile(t, st["key"], "statictoy-key")); who != "everyone" {
		t.Fatalf("the key works for %q", who)
	}
	// The vendor without static tokens keeps OAuth.
	oc := conns["sandbox-oauthtoy"]
	if oc["client_id"] != "oauthtoy-client" || oc["auth_url"] == nil || oc["redirect_uri"] == nil || oc["auth"] != nil {
		t.Fatalf("OAuth connection: %v", oc)
	}
	if b.secretFile(t, oc["client_secret"], "oauthtoy-client-secret") != "oauthtoy-secret" {
		t.Fatal("client secret")
	}
	logins := b.srv.LoginCommandsWith(path, sandbox.WriteOptions{Static: true})
	if len(logins) != 1 || logins[0] != "leadsync auth login sandbox-oauthtoy --config "+path {
		t.Fatalf("login commands with static tokens: %q", logins)
	}
	if all := b.srv.LoginCommands(path); len(all) != 2 {
		t.Fatalf("login commands: %q", all)
	}
}

func TestWriteConfigIsOAuthAndIssuesNoTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path, err := b.srv.WriteConfig(b.dir, b.srv.URL, "sqlite://x.db")
	if err != nil {
		t.Fatal(err)
	}
	st := connections(t, path)["sandbox-statictoy"]
	if st["client_id"] != "statictoy-client" || st["auth"] != nil || st["accounts"] != nil {
		t.Fatalf("default connection of a vendor with static tokens: %v", st)
	}
	if n := b.srv.Fake("statictoy").(*toyFake).issued(); n != 0 {
		t.Fatalf("WriteConfig issued %d static tokens", n)
	}
}

func TestWriteConfigWithStaticFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.srv.Fake("statictoy").(*toyFake)
	f.fail = errors.New("no tokens today")
	if _, err := b.srv.WriteConfigWith(b.dir, b.srv.URL, "sqlite://x.db", sandbox.WriteOptions{Static: true}); err == nil || !strings.Contains(err.Error(), "no tokens today") {
		t.Fatalf("a failing Static: %v", err)
	}
	f.fail, f.fileName = nil, "../../escape"
	if _, err := b.srv.WriteConfigWith(b.dir, b.srv.URL, "sqlite://x.db", sandbox.WriteOptions{Static: true}); err == nil {
		t.Fatal("a secret file name outside secrets/ was accepted")
	}
	if _, err := os.Stat(filepath.Join(b.dir, "escape")); !os.IsNotExist(err) {
		t.Fatalf("a secret escaped the secrets directory: %v", err)
	}
}
