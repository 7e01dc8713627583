package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/simkit"
	_ "github.com/leadsync/leadsync/sources/all" // the written config names every vendor
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := stderr.String()
	for _, name := range []string{"addr", "seed", "locations", "contacts", "forbidden-locations", "advertisers",
		"interactions", "lacrm-contacts", "lacrm-pipeline-items", "token-ttl", "fault-429", "fault-5xx",
		"fault-reset", "fault-truncate", "latency", "latency-rate", "drop-refresh", "write-config", "warehouse",
		"static-auth"} {
		if !strings.Contains(help, "-"+name+" ") && !strings.Contains(help, "-"+name+"\n") {
			t.Errorf("--help does not document -%s", name)
		}
	}
}

// crmsim is a running crmsim: its URL and what it printed up to "press Ctrl-C to stop".
type crmsim struct {
	base   string
	output []string
	stop   func() int // cancels the run and returns its exit code
}

// start runs crmsim with args until it is serving and has said what to run next.
func start(t *testing.T, args ...string) *crmsim {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	c := &crmsim{}
	deadline := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("crmsim stopped before serving: %q", c.output)
			}
			c.output = append(c.output, l)
			if rest, ok := strings.CutPrefix(l, "crmsim serving on "); ok {
				c.base, _, _ = strings.Cut(rest, " ")
			}
			ready = l == "press Ctrl-C to stop"
		case <-deadline:
			t.Fatalf("crmsim did not start: %q", c.output)
		}
	}
	go func() {
		for range lines {
		}
	}()
	c.stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("crmsim did not stop on cancel")
			return -1
		}
	}
	return c
}

func TestServesOnLoopbackAndWritesAConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := start(t, "--locations", "2", "--contacts", "10", "--write-config", dir)
	if !strings.HasPrefix(c.base, "http://127.0.0.1:") {
		t.Fatalf("not on loopback: %q", c.base)
	}
	resp, err := http.Get(c.base + "/_admin/truth")
	if err != nil {
		t.Fatal(err)
	}
	var truth []simkit.AccountTruth
	err = json.NewDecoder(resp.Body).Decode(&truth)
	resp.Body.Close()
	if err != nil || len(truth) == 0 {
		t.Fatalf("ground truth: %v, %d accounts", err, len(truth))
	}
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if len(cfg.Connections) != 3 {
		t.Fatalf("connections: %d", len(cfg.Connections))
	}
	for _, c := range cfg.Connections {
		if _, err := c.ClientSecret.Resolve(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	if logins := authCommands(c.output); len(logins) != 3 {
		t.Fatalf("what to run next: %q", c.output)
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// authCommands are the `leadsync auth` lines of crmsim's output.
func authCommands(output []string) []string {
	var out []string
	for _, l := range output {
		if strings.HasPrefix(strings.TrimSpace(l), "leadsync auth ") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

func TestStaticAuthNeedsWriteConfig(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--static-auth"}, io.Discard, &stderr); code != 2 {
		t.Fatalf("--static-auth alone: exit %d, %s", code, stderr.String())
	}
}

func TestStaticAuthWritesTokenConnections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := start(t, "--locations", "2", "--contacts", "5", "--write-config", dir, "--static-auth")
	raw, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Connections []map[string]any `yaml:"connections"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the written config is not YAML: %v\n%s", err, raw)
	}
	// leadsync reads it: static connections with no OAuth client, their secrets well formed.
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("leadsync cannot load the static config: %v", err)
	}
	for _, cc := range cfg.Connections {
		if want := cc.Source != "localiq"; cc.StaticAuth() != want {
			t.Errorf("connection %s: static %v, want %v", cc.Name, cc.StaticAuth(), want)
		}
		if err := cc.CheckSecrets(); err != nil {
			t.Errorf("connection %s: %v", cc.Name, err)
		}
	}
	conns := map[string]map[string]any{}
	for _, c := range doc.Connections {
		conns[c["name"].(string)] = c
	}
	abs, _ := filepath.Abs(dir)
	// secret checks a {file: path} reference to a 0600 file secrets/name and returns its value.
	secret := func(ref any, name string) string {
		t.Helper()
		m, _ := ref.(map[string]any)
		if len(m) != 1 || m["file"] != filepath.Join(abs, "secrets", name) {
			t.Fatalf("secret %#v, want {file: %s}", ref, filepath.Join(abs, "secrets", name))
		}
		fi, err := os.Stat(m["file"].(string))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("secret file %s: %v %v", name, err, fi)
		}
		b, _ := os.ReadFile(m["file"].(string))
		return strings.TrimSpace(string(b))
	}
	wantKeys := func(conn map[string]any, want ...string) {
		t.Helper()
		var got []string
		for k := range conn {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%v: keys %v, want %v", conn["name"], got, want)
		}
	}

	// LeadConnector: one PIT per installed location, each working for its own location only.
	lc := conns["sandbox-leadconnector"]
	wantKeys(lc, "name", "source", "auth", "locations", "base_url")
	if lc["source"] != "leadconnector" || lc["auth"] != "private_integration" || lc["base_url"] != c.base+"/leadconnector" {
		t.Fatalf("leadconnector connection: %v", lc)
	}
	locs, _ := lc["locations"].([]any)
	if len(locs) != 2 {
		t.Fatalf("locations: %#v", lc["locations"])
	}
	pits := map[string]string{}
	for _, l := range locs {
		m := l.(map[string]any)
		wantKeys(m, "location_id", "token")
		id, _ := m["location_id"].(string)
		pits[id] = secret(m["token"], "leadconnector-location-"+id+".token")
	}
	var truth []simkit.AccountTruth
	getJSON(t, c.base+"/_admin/truth", &truth)
	for _, a := range truth {
		if a.Source == "leadconnector" && pits[a.AccountID] == "" {
			t.Fatalf("no PIT for location %s: %v", a.AccountID, pits)
		}
	}
	for loc, tok := range pits {
		if !strings.HasPrefix(tok, "pit-") {
			t.Fatalf("PIT %q", tok)
		}
		for other := range pits {
			want := http.StatusForbidden
			if other == loc {
				want = http.StatusOK
			}
			st, body := post(t, lc["base_url"].(string)+"/contacts/search", "Bearer "+tok,
				`{"locationId":"`+other+`","pageLimit":5}`, map[string]string{"Version": "v3"})
			if st != want {
				t.Fatalf("PIT of %s searching %s: %d %s", loc, other, st, body)
			}
		}
	}

	// LACRM: one API key, sent without Bearer.
	lacrm := conns["sandbox-lacrm"]
	wantKeys(lacrm, "name", "source", "auth", "api_key", "base_url")
	if lacrm["source"] != "lacrm" || lacrm["auth"] != "api_key" || lacrm["base_url"] != c.base+"/lacrm/v2/" {
		t.Fatalf("lacrm connection: %v", lacrm)
	}
	key := secret(lacrm["api_key"], "lacrm-api-key")
	if st, body := post(t, lacrm["base_url"].(string), key, `{"Function":"GetUser"}`, nil); st != http.StatusOK {
		t.Fatalf("LACRM API key: %d %s", st, body)
	}

	// LocaliQ has no static tokens: OAuth, and the only authorization step printed.
	liq := conns["sandbox-localiq"]
	if liq["client_id"] == nil || liq["auth"] != nil {
		t.Fatalf("localiq connection: %v", liq)
	}
	secret(liq["client_secret"], "localiq-client-secret")
	logins := authCommands(c.output)
	if len(logins) != 1 || !strings.Contains(logins[0], " sandbox-localiq ") {
		t.Fatalf("authorization steps printed: %q", logins)
	}
	for _, l := range c.output {
		if strings.Contains(l, "auth") && (strings.Contains(l, "sandbox-leadconnector") || strings.Contains(l, "sandbox-lacrm")) {
			t.Fatalf("output asks to authorize a static connection: %q", l)
		}
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func post(t *testing.T, url, auth, body string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
