package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/leadsync/leadsync/internal/testenv"
	"github.com/leadsync/leadsync/sources"
)

// The bad-input suite (issue 9, DESIGN §4.6): broken configuration, missing secrets, the
// wrong token key, and vendor pages that are malformed. Each gives a clear error and the
// documented exit code (2 configuration, 1 failure), never a panic, and nothing is committed
// half-way.

// proofWriteConfig writes a config file under a fresh temp dir and returns its path.
func proofWriteConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	body = strings.ReplaceAll(body, "$DIR", dir)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const proofGoodConn = `connections:
  - name: lacrm
    source: lacrm
    client_id: abc
    client_secret: {file: $DIR/secret}
`

func TestProofBadConfig(t *testing.T) {
	t.Parallel()
	base := "state_dir: $DIR/state\nwarehouse:\n  url: sqlite://$DIR/leads.db\nhttp:\n  listen: \"off\"\n"
	for _, tc := range []struct {
		name, config string
		want         []string // all in stderr
	}{
		{"malformed yaml", base + "connections:\n  - name: [unclosed\n", []string{"config.yaml", "line"}},
		{"not a mapping", "- just\n- a list\n", []string{"config.yaml"}},
		{"unknown top-level key", base + "warehose:\n  url: x\n" + proofGoodConn, []string{"warehose", "line"}},
		{"unknown nested key", base + proofGoodConn + "    concurency: 3\n", []string{"connections[0].concurency", "line"}},
		{"wrong type", base + proofGoodConn + "    concurrency: lots\n", []string{"connections[0].concurrency"}},
		{"wrong type list for string", base + proofGoodConn + "    client_id: [a, b]\n", []string{"connections[0].client_id"}},
		{"unknown source", base + strings.Replace(proofGoodConn, "source: lacrm", "source: salesforce", 1), []string{"connections[0].source", "salesforce"}},
		{"bad warehouse url", strings.Replace(base, "sqlite://$DIR/leads.db", "mysql://x", 1) + proofGoodConn, []string{"warehouse.url"}},
		{"missing secret file", base + strings.Replace(proofGoodConn, "$DIR/secret", "$DIR/no-such-secret", 1), []string{"no-such-secret"}},
		{"secret env unset", base + strings.Replace(proofGoodConn, "{file: $DIR/secret}", "{env: LEADSYNC_PROOF_UNSET_SECRET}", 1), []string{"LEADSYNC_PROOF_UNSET_SECRET"}},
		{"inline secret", base + strings.Replace(proofGoodConn, "{file: $DIR/secret}", "hunter2", 1), []string{"client_secret"}},
		{"endless secret file", base + strings.Replace(proofGoodConn, "$DIR/secret", "/dev/zero", 1), []string{"connections[0].client_secret", "larger than 64 KiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := proofWriteConfig(t, tc.config)
			for _, args := range [][]string{{"config", "check"}, {"run", "--once", "--progress", "off"}} {
				code, stdout, stderr := runCLI(t, append(args, "--config", path)...)
				if code != exitUsage {
					t.Errorf("%s: exit %d, want %d (configuration)\nstdout: %s\nstderr: %s", args[0], code, exitUsage, stdout, stderr)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%s: stderr does not name %q:\n%s", args[0], w, stderr)
					}
				}
				if strings.Contains(stderr, "s3cret") || strings.Contains(stderr, "hunter2") {
					t.Errorf("%s: a secret value in the error: %s", args[0], stderr)
				}
			}
			// Nothing was synced: a configuration error stops before any run starts.
			proofNoRuns(t, filepath.Join(filepath.Dir(path), "leads.db"))
		})
	}
}

// proofNoRuns fails t if the SQLite warehouse at path (when it exists) recorded a run.
func proofNoRuns(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sync_runs`).Scan(&n); err == nil && n > 0 {
		t.Errorf("%d sync runs recorded despite the configuration error", n)
	}
}

// A token store opened with another key fails clearly, and the tokens are still there for
// the right key.
func TestProofWrongTokenKey(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Small(21), testenv.SQLite)
	env.Authorized(t)
	other := filepath.Join(env.Dir, "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(env.Dir, "wrong-key.yaml")
	if err := os.WriteFile(wrong, append(cfg, []byte("token_store:\n  key_file: "+other+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", wrong)
	if code != exitUsage || !strings.Contains(stderr, "token store key does not match") || !strings.Contains(stderr, "key_file") {
		t.Fatalf("run with the wrong key: exit %d\nstdout: %s\nstderr: %s", code, stdout, proofTail(stderr))
	}
	t.Logf("wrong key: exit %d: %s", code, proofFirstError(stdout+"\n"+stderr))
	if n := env.LeadCount(t); n != 0 {
		t.Errorf("%d leads written with an unreadable token store", n)
	}
	// The right key still works: nothing was overwritten with the wrong one.
	if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath); code != exitOK {
		t.Fatalf("run with the right key after: exit %d\nstdout: %s\nstderr: %s", code, stdout, proofTail(stderr))
	}
	env.RequireTruth(t)
}

func proofFirstError(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "leadsync:") || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "failed:") {
			return strings.TrimSpace(l)
		}
	}
	return "(no error line)"
}

// proofVendorProxy stands in for LeadConnector: it forwards to the sandbox and, from the
// n-th contacts/search answer on, mangles every answer for that answer's location. It counts, per location, the contacts of
// the pages it passed through unharmed.
type proofVendorProxy struct {
	target string
	n      int
	mangle func(body []byte) []byte

	mu       sync.Mutex
	searches int
	mangled  string         // the location whose page was mangled
	passed   map[string]int // location → contacts passed through
}

func (p *proofVendorProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqBody, _ := io.ReadAll(r.Body)
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(reqBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.HasSuffix(r.URL.Path, "/contacts/search") && resp.StatusCode == http.StatusOK {
		var req struct {
			LocationID string `json:"locationId"`
		}
		_ = json.Unmarshal(reqBody, &req)
		var page struct {
			Contacts []json.RawMessage `json:"contacts"`
		}
		_ = json.Unmarshal(body, &page)
		p.mu.Lock()
		p.searches++
		if p.searches == p.n && p.mangle != nil {
			p.mangled = req.LocationID
		}
		if p.mangled != "" && p.mangled == req.LocationID && p.mangle != nil {
			// Every answer for that location from then on: retries meet the same page.
			body = p.mangle(body)
		} else {
			p.passed[req.LocationID] += len(page.Contacts)
		}
		p.mu.Unlock()
	}
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// proofProxyEnv is a sandbox whose LeadConnector connection goes through a mangling proxy.
func proofProxyEnv(t *testing.T, dialect string, p *proofVendorProxy) *testenv.Env {
	t.Helper()
	env := testenv.New(t, testenv.Small(31), dialect)
	p.target, p.passed = env.Sandbox.URL, map[string]int{}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	cfg, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	old := "base_url: \"" + env.Sandbox.URL + "/leadconnector\"\n"
	if !bytes.Contains(cfg, []byte(old)) {
		t.Fatalf("config has no %q", old)
	}
	cfg = bytes.Replace(cfg, []byte(old), []byte("base_url: "+srv.URL+"/leadconnector\n"), 1)
	if err := os.WriteFile(env.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Authorized(t)
	return env
}

func TestProofBadVendorPages(t *testing.T) {
	t.Parallel()
	huge := func(body []byte) []byte {
		// A page far past any sane size (httpx caps bodies at 32 MiB): valid JSON start,
		// 40 MiB of padding.
		b := append([]byte(`{"contacts":[],"pad":"`), bytes.Repeat([]byte("x"), 40<<20)...)
		return append(b, `"}`...)
	}
	for _, tc := range []struct {
		name    string
		dialect string
		mangle  func([]byte) []byte
		want    []string // in the run's output, all of them
		// quarantined: the page is read, its one bad record kept in rejected_records, and
		// the run succeeds.
		quarantined bool
	}{
		{"wrong types contacts not a list", testenv.SQLite, func([]byte) []byte {
			return []byte(`{"contacts":"none today","total":"many"}`)
		}, []string{"leadconnector", "contacts/search"}, false},
		{"wrong types id an object", testenv.SQLite, func([]byte) []byte {
			return []byte(`{"contacts":[{"id":{"oid":1},"dateUpdated":[2025]}],"total":1}`)
		}, []string{"quarantined: 1 vendor records"}, true},
		{"not json", testenv.SQLite, func([]byte) []byte { return []byte("<html>maintenance</html>") },
			[]string{"leadconnector", "contacts/search"}, false},
		{"truncated json", testenv.SQLite, func(b []byte) []byte { return b[:len(b)/2] },
			[]string{"leadconnector", "contacts/search"}, false},
		{"huge body", testenv.SQLite, huge, []string{"leadconnector", "contacts/search"}, false},
		{"invalid utf-8 sqlite", testenv.SQLite, proofInvalidUTF8, nil, false},
		{"invalid utf-8 postgres", testenv.Postgres, proofInvalidUTF8, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &proofVendorProxy{n: 2, mangle: tc.mangle}
			env := proofProxyEnv(t, tc.dialect, p)
			code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath)
			out := stdout + "\n" + stderr
			t.Logf("%s: exit %d: %s", tc.name, code, proofFirstFailure(stdout))
			switch {
			case tc.want == nil: // a page the warehouse stores (invalid UTF-8 becomes U+FFFD)
				if code != exitOK {
					t.Fatalf("exit %d\n%s", code, proofTail(out))
				}
			case tc.quarantined:
				if code != exitOK || !strings.Contains(stdout, tc.want[0]) {
					t.Fatalf("exit %d, want %d and the summary saying %q\n%s", code, exitOK, tc.want[0], proofTail(out))
				}
				db := env.OpenDB(t)
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM rejected_records WHERE source = 'leadconnector'`).Scan(&n); err != nil || n != 1 {
					t.Errorf("rejected_records holds %d LeadConnector records (%v), want the 1 bad one", n, err)
				}
			default:
				if code != exitFailed {
					t.Fatalf("exit %d, want %d\n%s", code, exitFailed, proofTail(out))
				}
				for _, w := range tc.want {
					if !strings.Contains(stdout, w) {
						t.Errorf("the run summary does not name %q:\n%s", w, stdout)
					}
				}
			}
			// Nothing half-way: each LeadConnector account holds exactly the pages that
			// passed unharmed (the mangled page committed nothing, its cursor did not move);
			// the other vendors are complete.
			stored := env.Stored(t)
			p.mu.Lock()
			passed, mangled := p.passed, p.mangled
			p.mu.Unlock()
			for _, at := range env.Sandbox.GroundTruth() {
				k := at.Source + "/" + at.AccountID
				got := len(stored[k])
				switch {
				case at.Restricted:
				case at.Source != sources.LeadConnector:
					if got != len(at.Leads) {
						t.Errorf("%s: %d of %d leads: another vendor suffered from a bad LeadConnector page", k, got, len(at.Leads))
					}
				case tc.quarantined:
					// The vendor's page held only the bad record: its real leads come with
					// the healthy run below.
				case code == exitOK:
					if got != len(at.Leads) {
						t.Errorf("%s: run ok but %d of %d leads", k, got, len(at.Leads))
					}
				case got != passed[at.AccountID]:
					t.Errorf("%s: %d leads stored, %d passed in whole pages (mangled: %s)", k, got, passed[at.AccountID], mangled)
				}
			}
			// The next run, with the vendor healthy again, completes the account.
			p.mu.Lock()
			p.mangle = nil
			p.mu.Unlock()
			if code, stdout, stderr := runCLI(t, "run", "--once", "--progress", "off", "--config", env.ConfigPath); code != exitOK {
				t.Fatalf("the run after: exit %d\n%s\n%s", code, stdout, proofTail(stderr))
			}
			env.RequireTruth(t)
		})
	}
}

// proofInvalidUTF8 puts bytes that are not UTF-8 into the first contact's first name.
func proofInvalidUTF8(b []byte) []byte {
	return bytes.Replace(b, []byte(`"firstName":"`), []byte("\"firstName\":\"\xff\xfe\xc3("), 1)
}

func proofFirstFailure(stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "failed:") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(strings.SplitN(stdout, "\n", 2)[0])
}
