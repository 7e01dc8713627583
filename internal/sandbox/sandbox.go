// Package sandbox composes the three vendor fakes into crmsim: one HTTP server with
// LeadConnector under /leadconnector/, LocaliQ under /localiq/ and Less Annoying CRM under
// /lacrm/, plus an aggregate admin API under /_admin/. cmd/crmsim serves it; `leadsync demo`
// and the end-to-end tests run it in-process.
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
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources"
	"github.com/leadsync/leadsync/sources/lacrm/lacrmtest"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
	"github.com/leadsync/leadsync/sources/localiq/liqtest"
)

// Path prefixes of the vendors.
const (
	PrefixLeadConnector = "/leadconnector"
	PrefixLocaliQ       = "/localiq"
	PrefixLACRM         = "/lacrm"
)

// Options size the sandbox. Zero values take each fake's defaults.
type Options struct {
	Seed     uint64
	Clock    simkit.Clock
	TokenTTL time.Duration
	Faults   simkit.FaultSettings

	Locations           int // LeadConnector installed locations
	ContactsPerLocation int
	ForbiddenLocations  int
	Advertisers         int // LocaliQ advertisers
	InteractionsPerAdv  int
	LACRMContacts       int
	LACRMPipelineItems  int

	// LeadConnector, LocaliQ and LACRM let a caller set any option of one fake; the fields
	// above override theirs when set.
	LeadConnector lctest.Options
	LocaliQ       liqtest.Options
	LACRM         lacrmtest.Options
}

// Sandbox is the three fakes behind one handler.
type Sandbox struct {
	LC    *lctest.Fake
	LIQ   *liqtest.Fake
	LACRM *lacrmtest.Fake
	mux   *http.ServeMux
}

// New builds the fakes (deterministic from opts.Seed).
func New(opts Options) *Sandbox {
	lo, qo, ao := opts.LeadConnector, opts.LocaliQ, opts.LACRM
	lo.Seed, qo.Seed, ao.Seed = cmp.Or(lo.Seed, opts.Seed), cmp.Or(qo.Seed, opts.Seed), cmp.Or(ao.Seed, opts.Seed)
	if opts.Clock != nil {
		lo.Clock, qo.Clock, ao.Clock = opts.Clock, opts.Clock, opts.Clock
	}
	lo.TokenTTL, qo.TokenTTL, ao.TokenTTL = cmp.Or(opts.TokenTTL, lo.TokenTTL), cmp.Or(opts.TokenTTL, qo.TokenTTL), cmp.Or(opts.TokenTTL, ao.TokenTTL)
	if opts.Faults != (simkit.FaultSettings{}) {
		lo.Faults, qo.Faults, ao.Faults = opts.Faults, opts.Faults, opts.Faults
	}
	lo.Locations = cmp.Or(opts.Locations, lo.Locations)
	lo.ContactsPerLocation = cmp.Or(opts.ContactsPerLocation, lo.ContactsPerLocation)
	lo.ForbiddenLocations = cmp.Or(opts.ForbiddenLocations, lo.ForbiddenLocations)
	qo.Advertisers = cmp.Or(opts.Advertisers, qo.Advertisers)
	qo.InteractionsPerAdvertiser = cmp.Or(opts.InteractionsPerAdv, qo.InteractionsPerAdvertiser)
	ao.Contacts = cmp.Or(opts.LACRMContacts, ao.Contacts)
	ao.PipelineItems = cmp.Or(opts.LACRMPipelineItems, ao.PipelineItems)

	s := &Sandbox{LC: lctest.New(lo), LIQ: liqtest.New(qo), LACRM: lacrmtest.New(ao), mux: http.NewServeMux()}
	s.mux.Handle(PrefixLeadConnector+"/", http.StripPrefix(PrefixLeadConnector, s.LC.Handler()))
	s.mux.Handle(PrefixLocaliQ+"/", http.StripPrefix(PrefixLocaliQ, s.LIQ.Handler()))
	s.mux.Handle(PrefixLACRM+"/", http.StripPrefix(PrefixLACRM, s.LACRM.Handler()))
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

// SetFaults sets the same faults on every vendor.
func (s *Sandbox) SetFaults(fs simkit.FaultSettings) {
	s.LC.Faults().Set(fs)
	s.LIQ.Faults().Set(fs)
	s.LACRM.Faults().Set(fs)
}

// Counters are the three fakes' counters, by vendor.
func (s *Sandbox) Counters() map[string]simkit.Snapshot {
	return map[string]simkit.Snapshot{
		sources.LeadConnector: s.LC.Counters().Snapshot(),
		sources.LocaliQ:       s.LIQ.Counters().Snapshot(),
		sources.LACRM:         s.LACRM.Counters().Snapshot(),
	}
}

// Count adds a named counter over the three vendors.
func (s *Sandbox) Count(name string) int64 {
	return s.LC.Counters().Get(name) + s.LIQ.Counters().Get(name) + s.LACRM.Counters().Get(name)
}

// GroundTruth is every account of every vendor, sorted by source and account.
func (s *Sandbox) GroundTruth() []simkit.AccountTruth {
	var all []simkit.AccountTruth
	all = append(all, s.LC.GroundTruth()...)
	all = append(all, s.LIQ.GroundTruth()...)
	all = append(all, s.LACRM.GroundTruth()...)
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

// Credentials are the sandbox's OAuth clients and users.
type Credentials struct {
	LCClientID, LCClientSecret       string
	LIQClientID, LIQClientSecret     string
	LIQUser, LIQPassword             string
	LACRMClientID, LACRMClientSecret string
	LACRMUser                        string
}

// DefaultCredentials are the fakes' defaults.
func DefaultCredentials() Credentials {
	return Credentials{
		LCClientID: lctest.DefaultClientID, LCClientSecret: lctest.DefaultClientSecret,
		LIQClientID: liqtest.DefaultClientID, LIQClientSecret: liqtest.DefaultClientSecret,
		LIQUser: liqtest.DefaultSandboxUser, LIQPassword: liqtest.DefaultSandboxPassword,
		LACRMClientID: lacrmtest.DefaultClientID, LACRMClientSecret: lacrmtest.DefaultClientSecret,
		LACRMUser: lacrmtest.DefaultSandboxUser,
	}
}

// Describe lists the vendor base URLs and the sandbox credentials under base.
func (s *Sandbox) Describe(base string) string {
	c := DefaultCredentials()
	var b strings.Builder
	fmt.Fprintf(&b, "LeadConnector  %s%s   client %s / %s\n", base, PrefixLeadConnector, c.LCClientID, c.LCClientSecret)
	fmt.Fprintf(&b, "LocaliQ        %s%s         client %s / %s, user %s / %s\n", base, PrefixLocaliQ, c.LIQClientID, c.LIQClientSecret, c.LIQUser, c.LIQPassword)
	fmt.Fprintf(&b, "LACRM          %s%s           client %s / %s, user %s\n", base, PrefixLACRM, c.LACRMClientID, c.LACRMClientSecret, c.LACRMUser)
	fmt.Fprintf(&b, "admin          %s/_admin/counters, %s/_admin/truth, PUT %s/_admin/faults\n", base, base, base)
	b.WriteString("               each vendor also has its own under <vendor>/_admin/ (see the package docs)\n")
	return b.String()
}

// WriteConfig writes a leadsync configuration that points at the sandbox under base into
// dir: config.yaml, the client secrets and the LocaliQ password as files (mode 0600; secrets
// are never inline), and a state directory. It returns the config file's path.
func (s *Sandbox) WriteConfig(dir, base, warehouseURL string) (string, error) {
	c := DefaultCredentials()
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	secrets := map[string]string{"leadconnector-client-secret": c.LCClientSecret,
		"localiq-client-secret": c.LIQClientSecret, "localiq-password": c.LIQPassword,
		"lacrm-client-secret": c.LACRMClientSecret}
	for name, v := range secrets {
		if err := os.WriteFile(filepath.Join(dir, "secrets", name), []byte(v+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("sandbox: %w", err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = configTmpl.Execute(&b, map[string]string{"Dir": abs, "Base": base, "Warehouse": warehouseURL,
		"LCClient": c.LCClientID, "LCApp": s.LC.AppID(), "LIQClient": c.LIQClientID, "LIQUser": c.LIQUser, "LACRMClient": c.LACRMClientID})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	return path, nil
}

// Paths and URLs are quoted: a directory may hold ": " or ", ".
var configTmpl = template.Must(template.New("config").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`# leadsync configuration for the crmsim sandbox (written by crmsim / leadsync demo).
state_dir: {{q (print .Dir "/state")}}
warehouse:
  url: {{q .Warehouse}}
http:
  listen: "off"
connections:
  - name: sandbox-leadconnector
    source: leadconnector
    client_id: {{.LCClient}}
    app_id: {{.LCApp}}
    client_secret: {file: {{q (print .Dir "/secrets/leadconnector-client-secret")}}}
    base_url: {{q (print .Base "/leadconnector")}}
    auth_url: {{q (print .Base "/leadconnector/oauth/chooselocation")}}
    redirect_uri: http://127.0.0.1/callback
  - name: sandbox-localiq
    source: localiq
    client_id: {{.LIQClient}}
    client_secret: {file: {{q (print .Dir "/secrets/localiq-client-secret")}}}
    base_url: {{q (print .Base "/localiq")}}
    user: {{.LIQUser}}
    username: {{.LIQUser}}
    password: {file: {{q (print .Dir "/secrets/localiq-password")}}}
    redirect_uri: http://127.0.0.1/callback
  - name: sandbox-lacrm
    source: lacrm
    client_id: {{.LACRMClient}}
    client_secret: {file: {{q (print .Dir "/secrets/lacrm-client-secret")}}}
    base_url: {{q (print .Base "/lacrm/v2/")}}
    auth_url: {{q (print .Base "/lacrm/oauth/authorize.php")}}
    token_url: {{q (print .Base "/lacrm/oauth/token.php")}}
    redirect_uri: http://127.0.0.1/callback
`))

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
