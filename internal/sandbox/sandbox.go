// Package sandbox composes the vendors' fakes into crmsim: one HTTP server with each
// registered vendor's fake under its own path prefix (LeadConnector under /leadconnector/,
// LocaliQ under /localiq/, Less Annoying CRM under /lacrm/), plus an aggregate admin API
// under /_admin/. It names no vendor: the fakes come from internal/vendors (import
// sources/all). cmd/crmsim serves it; `leadsync demo` and the end-to-end tests run it
// in-process.
package sandbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/vendors"
)

// Options size the sandbox. Zero values take each fake's defaults.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock
	TokenTTL time.Duration
	Faults   simkit.FaultSettings
	// Vendor holds a vendor's own fake options by vendor name, of the type its fake takes
	// (lctest.Options, ...): what crmsim's flags set, or a test that knows the vendor.
	Vendor map[string]any
}

// Sandbox is the registered vendors' fakes behind one handler.
type Sandbox struct {
	vendors []vendors.Vendor // those with a fake, by name
	fakes   map[string]vendors.Fake
	mux     *http.ServeMux
}

// New builds the fakes (deterministic from opts.Seed).
func New(opts Options) *Sandbox {
	s := &Sandbox{fakes: map[string]vendors.Fake{}, mux: http.NewServeMux()}
	common := vendors.FakeCommon{Seed: opts.Seed, Clock: opts.Clock, TokenTTL: opts.TokenTTL, Faults: opts.Faults}
	for _, v := range vendors.All() {
		if v.Fake == nil {
			continue
		}
		f := v.Fake.New(common, opts.Vendor[v.Name])
		s.vendors = append(s.vendors, v)
		s.fakes[v.Name] = f
		s.mux.Handle(v.Fake.Prefix+"/", http.StripPrefix(v.Fake.Prefix, f.Handler()))
	}
	s.mux.HandleFunc("GET /_admin/counters", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Counters())
	})
	s.mux.HandleFunc("GET /_admin/truth", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.GroundTruth())
	})
	s.mux.HandleFunc("PUT /_admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var fs simkit.FaultSettings
		if err := simkit.DecodeStrict(r, &fs); err != nil {
			simkit.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetFaults(fs)
		simkit.WriteJSON(w, http.StatusOK, fs)
	})
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "crmsim: sandbox CRM APIs\n\n%s\n", s.Describe("http://"+r.Host))
	})
	return s
}

// Handler serves the whole sandbox.
func (s *Sandbox) Handler() http.Handler { return s.mux }

// Fake is the fake of the vendor named name (nil when it has none). Tests that know the
// vendor assert its type (*lctest.Fake, ...) for the vendor's own admin calls.
func (s *Sandbox) Fake(name string) vendors.Fake { return s.fakes[name] }

// SetFaults sets the same faults on every vendor.
func (s *Sandbox) SetFaults(fs simkit.FaultSettings) {
	for _, f := range s.fakes {
		f.Faults().Set(fs)
	}
}

// Counters are the fakes' counters, by vendor.
func (s *Sandbox) Counters() map[string]simkit.Snapshot {
	out := make(map[string]simkit.Snapshot, len(s.fakes))
	for name, f := range s.fakes {
		out[name] = f.Counters().Snapshot()
	}
	return out
}

// Count adds a named counter over the vendors.
func (s *Sandbox) Count(name string) int64 {
	var n int64
	for _, f := range s.fakes {
		n += f.Counters().Get(name)
	}
	return n
}

// TotalRequests is every request the vendors answered.
func (s *Sandbox) TotalRequests() int64 {
	var n int64
	for _, f := range s.fakes {
		n += f.Counters().TotalRequests()
	}
	return n
}

// GroundTruth is every account of every vendor, sorted by source and account.
func (s *Sandbox) GroundTruth() []simkit.AccountTruth {
	var all []simkit.AccountTruth
	for _, f := range s.fakes {
		all = append(all, f.GroundTruth()...)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Source != all[j].Source {
			return all[i].Source < all[j].Source
		}
		return all[i].AccountID < all[j].AccountID
	})
	return all
}

// Server is a sandbox listening on loopback.
type Server struct {
	*Sandbox
	URL string
	srv *http.Server
}

// Start serves s on addr ("127.0.0.1:0" picks a free port).
func (s *Sandbox) Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", cmp.Or(addr, "127.0.0.1:0"))
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
		}
	}()
	return &Server{Sandbox: s, URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// ConnectionName is the name of a vendor's connection in a sandbox configuration.
func ConnectionName(vendor string) string { return "sandbox-" + vendor }

// Describe lists the vendors' base URLs and the sandbox credentials under base.
func (s *Sandbox) Describe(base string) string {
	var b strings.Builder
	for _, v := range s.vendors {
		c := v.Fake.Sandbox(s.fakes[v.Name], base+v.Fake.Prefix)
		fmt.Fprintf(&b, "%-26s %s%s   client %s / %s", v.Title, base, v.Fake.Prefix, c.ClientID, c.ClientSecret)
		if c.Note != "" {
			fmt.Fprintf(&b, ", %s", c.Note)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%-26s %s/_admin/counters, %s/_admin/truth, PUT %s/_admin/faults\n", "admin", base, base, base)
	fmt.Fprintf(&b, "%-26s each vendor also has its own under <vendor>/_admin/ (see the package docs)\n", "")
	return b.String()
}

// WriteOptions choose how WriteConfigWith authenticates the connections. The zero value is
// OAuth everywhere.
type WriteOptions struct {
	// Static gives each vendor that has static tokens (vendors.FakeSpec.Static) a connection
	// that uses tokens its fake issues at that moment, instead of OAuth; the others keep
	// OAuth.
	Static bool
}

// static reports whether v's connection is written with static tokens.
func (o WriteOptions) static(v vendors.Vendor) bool { return o.Static && v.Fake.Static != nil }

// LoginCommands are the `leadsync auth` commands that authorize each sandbox connection.
func (s *Sandbox) LoginCommands(configPath string) []string {
	return s.LoginCommandsWith(configPath, WriteOptions{})
}

// LoginCommandsWith are the `leadsync auth` commands of a configuration written with opts:
// static connections need none.
func (s *Sandbox) LoginCommandsWith(configPath string, opts WriteOptions) []string {
	var out []string
	for _, v := range s.vendors {
		if opts.static(v) {
			continue
		}
		verb := "login"
		if v.Fake.Sandbox(s.fakes[v.Name], "").PasswordGrant {
			verb = "password"
		}
		out = append(out, fmt.Sprintf("leadsync auth %s %s --config %s", verb, ConnectionName(v.Name), configPath))
	}
	return out
}

// WriteConfig writes a leadsync configuration that points at the sandbox under base into
// dir: config.yaml, the client secrets and any other secret as files (mode 0600; secrets are
// never inline), and a state directory. It returns the config file's path.
func (s *Sandbox) WriteConfig(dir, base, warehouseURL string) (string, error) {
	return s.WriteConfigWith(dir, base, warehouseURL, WriteOptions{})
}

// WriteConfigWith is WriteConfig with the connections' authentication chosen by opts. Static
// tokens are issued on the fakes as it writes them.
func (s *Sandbox) WriteConfigWith(dir, base, warehouseURL string, opts WriteOptions) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	secret := func(name, value string) (string, error) {
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return "", fmt.Errorf("sandbox: secret file name %q is not a plain file name", name)
		}
		path := filepath.Join(abs, "secrets", name)
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("sandbox: %w", err)
		}
		return path, nil
	}
	var b strings.Builder
	b.WriteString("# leadsync configuration for the crmsim sandbox (written by crmsim / leadsync demo).\n")
	fmt.Fprintf(&b, "state_dir: %s\n", quote(abs+"/state"))
	if warehouseURL != "" { // else the default: leads.db in the state directory
		fmt.Fprintf(&b, "warehouse:\n  url: %s\n", quote(warehouseURL))
	}
	b.WriteString("http:\n  listen: \"off\"\nconnections:\n")
	for _, v := range s.vendors {
		vendorSecret := func(name, value string) (string, error) { return secret(v.Name+"-"+name, value) }
		if opts.static(v) {
			c, err := v.Fake.Static(s.fakes[v.Name], base+v.Fake.Prefix)
			if err != nil {
				return "", fmt.Errorf("sandbox: %s static tokens: %w", v.Name, err)
			}
			if err := writeStatic(&b, v.Name, c, vendorSecret); err != nil {
				return "", err
			}
			continue
		}
		c := v.Fake.Sandbox(s.fakes[v.Name], base+v.Fake.Prefix)
		path, err := vendorSecret("client-secret", c.ClientSecret)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "  - name: %s\n    source: %s\n    client_id: %s\n", ConnectionName(v.Name), v.Name, quote(c.ClientID))
		for _, kv := range c.Options {
			fmt.Fprintf(&b, "    %s: %s\n", kv.Key, quote(kv.Value))
		}
		fmt.Fprintf(&b, "    client_secret: {file: %s}\n", quote(path))
		for _, kv := range c.Secrets {
			path, err := vendorSecret(kv.Key, kv.Value)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "    %s: {file: %s}\n", kv.Key, quote(path))
		}
		for _, kv := range []vendors.KeyValue{{Key: "base_url", Value: c.BaseURL}, {Key: "auth_url", Value: c.AuthURL}, {Key: "token_url", Value: c.TokenURL}} {
			if kv.Value != "" {
				fmt.Fprintf(&b, "    %s: %s\n", kv.Key, quote(kv.Value))
			}
		}
		b.WriteString("    redirect_uri: http://127.0.0.1/callback\n")
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	return path, nil
}

// quote quotes paths, URLs and values: a directory may hold ": " or ", ".
func quote(s string) string { return strconv.Quote(s) }

// writeStatic writes a static-token connection: no client credentials, no login.
func writeStatic(b *strings.Builder, vendor string, c vendors.StaticConn, secret func(name, value string) (string, error)) error {
	if !yamlKey(c.Auth) {
		return fmt.Errorf("sandbox: %s: %q is not an auth value", vendor, c.Auth)
	}
	fmt.Fprintf(b, "  - name: %s\n    source: %s\n    auth: %s\n", ConnectionName(vendor), vendor, c.Auth)
	keys := c.Keys
	if c.BaseURL != "" {
		keys = append(slices.Clip(keys), vendors.Field{Key: "base_url", Value: c.BaseURL})
	}
	return writeFields(b, "    ", "    ", keys, secret)
}

// writeFields writes fields as the keys of one YAML mapping: the first line starts with
// first, the others with indent (first differs for a list item's "- ").
func writeFields(b *strings.Builder, first, indent string, fields []vendors.Field, secret func(name, value string) (string, error)) error {
	for i, f := range fields {
		pre := indent
		if i == 0 {
			pre = first
		}
		if !yamlKey(f.Key) {
			return fmt.Errorf("sandbox: %q is not a configuration key", f.Key)
		}
		switch {
		case f.Secret != nil:
			path, err := secret(f.Secret.File, f.Secret.Value)
			if err != nil {
				return err
			}
			fmt.Fprintf(b, "%s%s: {file: %s}\n", pre, f.Key, quote(path))
		case f.List != nil:
			if len(f.List) == 0 {
				fmt.Fprintf(b, "%s%s: []\n", pre, f.Key)
				continue
			}
			fmt.Fprintf(b, "%s%s:\n", pre, f.Key)
			for _, item := range f.List {
				if len(item) == 0 {
					fmt.Fprintf(b, "%s  - {}\n", indent)
					continue
				}
				if err := writeFields(b, indent+"  - ", indent+"    ", item, secret); err != nil {
					return err
				}
			}
		default:
			fmt.Fprintf(b, "%s%s: %s\n", pre, f.Key, quote(f.Value))
		}
	}
	return nil
}

// yamlKey accepts the configuration's snake_case keys (and auth values), which need no
// quoting.
func yamlKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// Browser plays the user's browser for the sandbox's auto-approving authorization pages: it
// follows the authorization URL through its redirects to the loopback callback. It returns
// at once; the login flow waits for the callback.
func Browser(url string) error {
	go func() {
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sandbox browser:", err)
			return
		}
		resp.Body.Close()
	}()
	return nil
}
