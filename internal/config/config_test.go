package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	_ "github.com/leadsync/leadsync/sources/all"
	"github.com/leadsync/leadsync/sources/lacrm"
	"github.com/leadsync/leadsync/sources/leadconnector"
	"github.com/leadsync/leadsync/sources/localiq"
)

// lcConn is a valid LeadConnector connection; its lines are 1 (connections:) to 6 (app_id),
// so a line appended to it is line 7.
const lcConn = `connections:
  - name: agency
    source: leadconnector
    client_id: id
    client_secret: {env: LC_SECRET}
    app_id: app
`

const liqConn = `connections:
  - name: liq
    source: localiq
    client_id: id
    client_secret: {file: /etc/leadsync/liq}
    user: reports@agency.example
`

const lacrmConn = `connections:
  - name: crm
    source: lacrm
    client_id: id
    client_secret: {credential: crm-secret}
`

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		field string
		line  int
		msg   string
	}{
		// Decoding: unknown keys, types, duplicates, syntax.
		{"misspelled vendor option", lcConn + "    api_verison: v3\n", "connections[0].api_verison", 7, `unknown field (did you mean "api_version"?)`},
		{"unknown top-level key", "shedule: '@hourly'\n" + lcConn, "shedule", 1, `unknown field (did you mean "schedule"?)`},
		{"unknown nested key", "warehouse:\n  uri: sqlite:///x.db\n", "warehouse.uri", 2, "unknown field"},
		{"unknown key in second connection", lcConn + "  - name: b\n    sorce: lacrm\n", "connections[1].sorce", 8, "unknown field"},
		{"unknown key in a secret", liqConn + "    password: {fiel: /x}\n", "connections[0].password.fiel", 7, "unknown field"},
		{"int as string", "concurrency:\n  localiq: four\n", "concurrency.localiq", 2, `expected a whole number, got "four"`},
		{"bool as string", lcConn + "    enabled: yes\n", "connections[0].enabled", 7, `expected true or false, got "yes"`},
		{"list expected", lcConn + "    scopes: contacts.readonly\n", "connections[0].scopes", 7, "expected a list"},
		{"mapping expected", "warehouse: sqlite:///x.db\n", "warehouse", 1, "expected a mapping"},
		{"connections not a list", "connections:\n  name: a\n", "connections", 2, "expected a list, got a mapping"},
		{"string expected", lcConn + "    redirect_uri: {a: b}\n", "connections[0].redirect_uri", 7, "expected a string, got a mapping"},
		{"duplicate connection key", lcConn + "    client_id: other\n", "connections[0].client_id", 7, "duplicate key (first set on line 4)"},
		{"duplicate key", "schedule: '@hourly'\nschedule: '@daily'\n", "schedule", 2, "duplicate key (first set on line 1)"},
		{"yaml syntax", "schedule: [\n", "", 1, "did not find expected"},
		{"inline secret", strings.Replace(lcConn, "{env: LC_SECRET}", "hunter2", 1), "connections[0].client_secret", 5, "a secret cannot be written inline"},
		{"duration without unit", "shutdown_timeout: 60\n", "shutdown_timeout", 1, `"60" has no unit`},
		{"bad duration", "shutdown_timeout: a minute\n", "shutdown_timeout", 1, "is not a duration"},
		{"bad date", lcConn + "    backfill_start: 01/02/2024\n", "connections[0].backfill_start", 7, "is not a date: write YYYY-MM-DD"},

		// Validation.
		{"bad cron spec", "schedule: '*/15 * *'\n", "schedule", 1, "invalid cron spec"},
		{"bad descriptor", "full_schedule: '@every fortnight'\n", "full_schedule", 1, "invalid cron spec"},
		{"bad connection schedule", lcConn + "    schedule: 61 * * * *\n", "connections[0].schedule", 7, "invalid cron spec"},
		{"bad run_on_start", "run_on_start: sometimes\n", "run_on_start", 1, "expected true or false"},
		{"bad connection run_on_start", lcConn + "    run_on_start: 1\n", "connections[0].run_on_start", 7, "expected true or false"},
		{"bad warehouse scheme", "warehouse:\n  url: mysql://db/leads\n", "warehouse.url", 2, "unsupported database URL scheme"},
		{"sqlite without path", "token_store:\n  url: sqlite://\n", "token_store.url", 2, "no file path"},
		{"schema on sqlite", "token_store:\n  url: sqlite:///t.db\n  schema: tokens\n", "token_store.schema", 3, "only applies to a PostgreSQL"},
		{"bad schema name", "token_store:\n  url: postgres://h/db\n  schema: Tokens;drop\n", "token_store.schema", 3, "not a plain schema name"},
		{"tokens in the warehouse", "warehouse:\n  url: sqlite:///var/x.db\ntoken_store:\n  url: sqlite:///var/x.db\n", "token_store.url", 4, "must not be the warehouse"},
		{"negative timeout", "shutdown_timeout: -5s\n", "shutdown_timeout", 1, "between 1s and 1h"},
		{"bad listen", "http:\n  listen: 9464\n", "http.listen", 2, "want host:port"},
		{"bad log level", "log:\n  level: verbose\n", "log.level", 2, "must be one of debug, info, warn, error"},
		{"bad log format", "log:\n  format: xml\n", "log.format", 2, "must be one of auto, text, json"},
		{"concurrency too high", "concurrency:\n  lacrm: 1000\n", "concurrency.lacrm", 2, "between 1 and 64"},
		{"unknown source", strings.Replace(lcConn, "leadconnector", "hubspot", 1), "connections[0].source", 3, `unknown source "hubspot"`},
		{"missing source", "connections:\n  - name: a\n    client_id: x\n", "connections[0].source", 2, "required"},
		{"missing name", "connections:\n  - source: lacrm\n    client_id: x\n    client_secret: {env: X}\n", "connections[0].name", 2, "required"},
		{"bad name", strings.Replace(lcConn, "name: agency", "name: My Agency", 1), "connections[0].name", 2, "lowercase letters"},
		{"duplicate name", lcConn + strings.TrimPrefix(strings.Replace(lcConn, "    app_id: app\n", "    app_id: b\n", 1), "connections:\n"), "connections[1].name", 7, `duplicate connection name "agency" (also connections[0])`},
		{"missing client_id", strings.Replace(lcConn, "    client_id: id\n", "", 1), "connections[0].client_id", 2, "required"},
		{"missing client_secret", strings.Replace(lacrmConn, "    client_secret: {credential: crm-secret}\n", "", 1), "connections[0].client_secret", 2, "required"},
		{"two secret sources", strings.Replace(lcConn, "{env: LC_SECRET}", "{env: A, file: /b}", 1), "connections[0].client_secret", 5, "exactly one of file, env, credential"},
		{"credential with a path", strings.Replace(lcConn, "{env: LC_SECRET}", "{credential: ../etc/shadow}", 1), "connections[0].client_secret.credential", 5, "not a credential name"},
		{"bad base_url scheme", lcConn + "    base_url: ftp://example.com\n", "connections[0].base_url", 7, "not an absolute http(s) URL"},
		{"relative token_url", lcConn + "    token_url: /oauth/token\n", "connections[0].token_url", 7, "not an absolute http(s) URL"},
		{"plain http off loopback", lcConn + "    auth_url: http://crm.example.com/oauth\n", "connections[0].auth_url", 7, "plain http is only allowed for loopback"},
		{"backfill in the future", lcConn + "    backfill_start: 2999-01-01\n", "connections[0].backfill_start", 7, "in the future"},
		{"bad api_version", lcConn + "    api_version: v2\n", "connections[0].api_version", 7, "must be one of v3, 2021-07-28"},
		{"lc page_size too big", lcConn + "    page_size: 500\n", "connections[0].page_size", 7, "between 1 and 100"},
		{"missing app_id", strings.Replace(lcConn, "    app_id: app\n", "", 1), "connections[0].app_id", 2, "required for leadconnector"},
		{"scope with a space", lcConn + "    scopes: [contacts.readonly oauth.readonly]\n", "connections[0].scopes[0]", 7, "one scope per list item"},
		{"negative lookback", lcConn + "    lookback: -1m\n", "connections[0].lookback", 7, "between 0s and 720h"},
		{"lc option on localiq", liqConn + "    api_version: v3\n", "connections[0].api_version", 7, "is a leadconnector option; this connection's source is localiq"},
		{"localiq option on lacrm", lacrmConn + "    reread_days: 3\n", "connections[0].reread_days", 6, "is a localiq option; this connection's source is lacrm"},
		{"lacrm option on leadconnector", lcConn + "    pipelines: [sales]\n", "connections[0].pipelines", 7, "is a lacrm option"},
		{"page_size on localiq", liqConn + "    page_size: 10\n", "connections[0].page_size", 7, "is a lacrm/leadconnector option"},
		{"localiq without user", strings.Replace(liqConn, "    user: reports@agency.example\n", "", 1), "connections[0].user", 2, "required for localiq"},
		{"localiq user not an email", strings.Replace(liqConn, "reports@agency.example", "reports", 1), "connections[0].user", 6, "not an email address"},
		{"password without username", liqConn + "    password: {env: LIQ_PW}\n", "connections[0].username", 2, "required with password"},
		{"inline password", liqConn + "    username: me@x.example\n    password: s3cret\n", "connections[0].password", 8, "a secret cannot be written inline"},
		{"reread_days too big", liqConn + "    reread_days: 90\n", "connections[0].reread_days", 7, "between 1 and 31"},
		{"lacrm page_size too big", lacrmConn + "    page_size: 20000\n", "connections[0].page_size", 6, "between 1 and 10000"},
		{"empty pipeline", lacrmConn + "    pipelines: [sales, '']\n", "connections[0].pipelines[1]", 6, "empty pipeline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(tt.yaml), "test.yaml")
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got %v, want a *config.Error", err)
			}
			if ce.Field != tt.field || ce.Line != tt.line || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("got  %q (field %q, line %d)\nwant field %q, line %d, message containing %q",
					err, ce.Field, ce.Line, tt.field, tt.line, tt.msg)
			}
			if !strings.HasPrefix(ce.Error(), "test.yaml: ") {
				t.Errorf("error %q does not name the file", ce.Error())
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	yaml := lcConn + "  - name: b\n    source: leadconnector\n    client_id: id\n    client_secret: {env: B}\n    app_id: app\n" +
		strings.Repeat("    # padding\n", 11) + "    api_verison: v3\n"
	_, err := config.Parse([]byte(yaml), "")
	want := `connections[1].api_verison (line 23): unknown field (did you mean "api_version"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestSeveralErrorsAreAllReported(t *testing.T) {
	t.Parallel()
	_, err := config.Parse([]byte("schedule: nope\nlog:\n  level: loud\n"+lcConn+"    page_size: 0x\n    lookback: 3d\n"), "c.yaml")
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %T %v, want Errors", err, err)
	}
	// Decoding errors come first: the file is not validated until it decodes.
	if len(es) != 2 || es[0].Line != 10 || es[1].Line != 11 {
		t.Fatalf("got %d errors:\n%v", len(es), err)
	}
	_, err = config.Parse([]byte("schedule: nope\nlog:\n  level: loud\n"), "c.yaml")
	if !errors.As(err, &es) || len(es) != 2 || es[0].Field != "schedule" || es[1].Field != "log.level" {
		t.Fatalf("got %v", err)
	}
	if got := strings.Count(err.Error(), "\n"); got != 1 {
		t.Errorf("want one error per line, got:\n%s", err)
	}
}

func TestExampleConfig(t *testing.T) {
	t.Parallel()
	c, err := config.Load("../../config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if len(c.Connections) != 3 {
		t.Fatalf("want the 3 example connections, got %d", len(c.Connections))
	}
	lc := c.Connection("agency")
	if lc == nil || lc.Source != "leadconnector" || lcOpts(lc).APIVersion != "v3" || lc.BackfillStart.String() != "2024-01-01" {
		t.Errorf("agency connection: %+v", lc)
	}
	if lc.ClientSecret.Credential != "agency-client-secret" || lc.ClientSecret.Field() != "connections[0].client_secret" {
		t.Errorf("agency secret: %v at %q", lc.ClientSecret, lc.ClientSecret.Field())
	}
	if crm := c.Connection("lacrm"); crm == nil || crm.IsEnabled() {
		t.Errorf("the example's lacrm connection should be disabled: %+v", crm)
	}
	if c.Schedule != config.DefaultSchedule || c.ShutdownTimeout.D() != config.DefaultShutdownTimeout || c.HTTP.Listen != config.DefaultListen {
		t.Errorf("example disagrees with the defaults: %q %s %q", c.Schedule, c.ShutdownTimeout, c.HTTP.Listen)
	}
	for _, v := range vendors.All() {
		if c.Concurrency[v.Name] != v.Concurrency {
			t.Errorf("example concurrency of %s: %d, the vendor's default %d", v.Name, c.Concurrency[v.Name], v.Concurrency)
		}
	}
}

// The unit's TimeoutStopSec must leave systemd room above the default soft-stop timeout.
func TestUnitStopTimeoutCoversShutdownTimeout(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile("../../systemd/leadsync.service")
	if err != nil {
		t.Fatal(err)
	}
	var stop time.Duration
	for line := range strings.Lines(string(unit)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "TimeoutStopSec="); ok {
			if stop, err = time.ParseDuration(v); err != nil {
				t.Fatalf("TimeoutStopSec=%s: %v", v, err)
			}
		}
	}
	if stop < config.DefaultShutdownTimeout+10*time.Second {
		t.Errorf("TimeoutStopSec=%s leaves no margin over shutdown_timeout %s", stop, config.DefaultShutdownTimeout)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	env := map[string]string{"STATE_DIRECTORY": "/var/lib/leadsync:/var/lib/other"}
	raw, err := config.DecodeConfig([]byte(lcConn+liqConn[len("connections:\n"):]+lacrmConn[len("connections:\n"):]), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := raw.WithDefaultsFrom(func(k string) string { return env[k] })
	checks := []struct{ name, got, want string }{
		{"state_dir", d.StateDir, "/var/lib/leadsync"},
		{"warehouse", d.Warehouse.URL, "sqlite:///var/lib/leadsync/leads.db"},
		{"token store", d.TokenStore.URL, "sqlite:///var/lib/leadsync/tokens.db"},
		{"key file", d.TokenStore.KeyFile, ""},
		{"key path", d.KeyPath(), "/var/lib/leadsync/token.key"},
		{"schedule", d.Schedule, config.DefaultSchedule},
		{"full schedule", d.FullSchedule, config.DefaultFullSchedule},
		{"listen", d.HTTP.Listen, config.DefaultListen},
		{"log", d.Log.Level + "/" + d.Log.Format, "info/auto"},
		{"lc version", lcOpts(&d.Connections[0]).APIVersion, "v3"},
		{"lc scopes", strings.Join(lcOpts(&d.Connections[0]).Scopes, " "), strings.Join(leadconnector.DefaultScopes, " ")},
		{"lc lookback", lcOpts(&d.Connections[0]).Lookback.String(), "10m0s"},
		{"lacrm lookback", d.Connections[2].Options.(*lacrm.Options).Lookback.String(), "1h0m0s"},
		{"connection schedule", d.Connections[1].Schedule, config.DefaultSchedule},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !d.TokenStore.KeyAutoCreate || d.TokenStore.Schema != "" {
		t.Errorf("generated key should be auto-created and sqlite has no schema: %+v", d.TokenStore)
	}
	if d.Connections[0].Concurrency != 4 || d.Connections[1].Concurrency != 4 || d.Connections[2].Concurrency != 1 {
		t.Errorf("per-vendor concurrency: %d %d %d", d.Connections[0].Concurrency, d.Connections[1].Concurrency, d.Connections[2].Concurrency)
	}
	if lcOpts(&d.Connections[0]).PageSize != 100 || d.Connections[2].Options.(*lacrm.Options).PageSize != 500 ||
		d.Connections[1].Options.(*localiq.Options).RereadDays != 3 {
		t.Errorf("vendor defaults: %+v", d.Connections)
	}
	if !d.Connections[0].IsEnabled() || d.ShutdownTimeout.D() != time.Minute {
		t.Errorf("enabled %v, shutdown %s", d.Connections[0].IsEnabled(), d.ShutdownTimeout)
	}
	if again := d.WithDefaultsFrom(func(k string) string { return env[k] }); again.HTTP.Listen != d.HTTP.Listen || again.StateDir != d.StateDir {
		t.Errorf("WithDefaults is not idempotent")
	}
	if err := d.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	// The raw config is untouched: defaults are applied to a copy.
	if lcOpts(&raw.Connections[0]).APIVersion != "" {
		t.Errorf("WithDefaults modified its receiver")
	}
}

func TestDefaultsOverrides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	credDir := filepath.Join(dir, "creds")
	if err := os.Mkdir(credDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(credDir, "token-key"), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := config.DecodeConfig([]byte(`
state_dir: `+dir+`
token_store:
  url: postgres://leadsync@db/leads
http:
  listen: ""
concurrency:
  leadconnector: 9
`+lcConn+"    concurrency: 2\n    enabled: false\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := raw.WithDefaultsFrom(func(k string) string {
		return map[string]string{"CREDENTIALS_DIRECTORY": credDir, "STATE_DIRECTORY": "/elsewhere"}[k]
	})
	if d.StateDir != dir || d.TokenStore.KeyFile != filepath.Join(credDir, "token-key") || d.TokenStore.KeyAutoCreate {
		t.Errorf("state dir %q, key %q (auto %v)", d.StateDir, d.TokenStore.KeyFile, d.TokenStore.KeyAutoCreate)
	}
	if d.TokenStore.Schema != config.DefaultTokenSchema {
		t.Errorf("postgres token store schema: %q", d.TokenStore.Schema)
	}
	if d.HTTP.Enabled() || d.HTTP.Listen != config.Off {
		t.Errorf(`listen: "" should disable the server, got %q`, d.HTTP.Listen)
	}
	if d.Connections[0].Concurrency != 2 || d.Connections[0].IsEnabled() || d.Concurrency["leadconnector"] != 9 {
		t.Errorf("overrides lost: %+v", d.Connections[0])
	}
}

func TestMergeKeys(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(`
x-common: &common
  source: leadconnector
  client_secret: {env: LC}
  app_id: app
`[1:]), "c.yaml")
	// Top-level keys must be known, even for anchors: a typo there is still an error.
	if err == nil {
		t.Fatalf("unknown top-level anchor key accepted: %+v", c)
	}
	c, err = config.Parse([]byte(`
connections:
  - &common
    name: a
    source: leadconnector
    client_id: id
    client_secret: {env: LC}
    app_id: app
    page_size: 50
  - <<: *common
    name: b
`[1:]), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Connection("b"); b == nil || lcOpts(b).AppID != "app" || lcOpts(b).PageSize != 50 || b.ClientSecret.Env != "LC" {
		t.Errorf("merged connection: %+v", b)
	}
}

func TestSecretResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		return map[string]string{"LEADSYNC_TEST_SECRET": "from-env", "CREDENTIALS_DIRECTORY": dir}[k]
	}
	noCreds := func(string) string { return "" }
	tests := []struct {
		name   string
		s      config.Secret
		getenv func(string) string
		want   string
		errMsg string
	}{
		{"file", config.Secret{File: filepath.Join(dir, "secret")}, env, "s3cr3t-value", ""},
		{"env", config.Secret{Env: "LEADSYNC_TEST_SECRET"}, env, "from-env", ""},
		{"credential", config.Secret{Credential: "secret"}, env, "s3cr3t-value", ""},
		{"missing file", config.Secret{File: filepath.Join(dir, "nope")}, env, "", "no such file"},
		{"empty file", config.Secret{File: filepath.Join(dir, "empty")}, env, "", "is empty"},
		{"unset env", config.Secret{Env: "LEADSYNC_TEST_UNSET"}, env, "", "LEADSYNC_TEST_UNSET is not set"},
		{"no credentials directory", config.Secret{Credential: "secret"}, noCreds, "", "$CREDENTIALS_DIRECTORY is not set"},
		{"missing credential", config.Secret{Credential: "other"}, env, "", "LoadCredential=other"},
		{"not configured", config.Secret{}, env, "", "secret not configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.s.SetField("connections[3].client_secret", 12)
			got, err := tt.s.ResolveFrom(tt.getenv)
			if tt.errMsg == "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field != "connections[3].client_secret" || ce.Line != 12 || !strings.Contains(ce.Msg, tt.errMsg) {
				t.Fatalf("got %v; want an error at connections[3].client_secret (line 12) containing %q", err, tt.errMsg)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "nope.yaml: read: no such file") {
		t.Errorf("got %v", err)
	}
}

func TestSplitURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, dialect, dsn string }{
		{"sqlite:///var/lib/leadsync/leads.db", config.DialectSQLite, "/var/lib/leadsync/leads.db"},
		{"sqlite://rel/leads.db?_busy_timeout=5000", config.DialectSQLite, "rel/leads.db?_busy_timeout=5000"},
		{"postgres://u@h:5432/db?sslmode=disable", config.DialectPostgres, "postgres://u@h:5432/db?sslmode=disable"},
		{"postgresql://u@h/db", config.DialectPostgres, "postgresql://u@h/db"},
	} {
		d, dsn, err := config.SplitURL(tt.in)
		if err != nil || d != tt.dialect || dsn != tt.dsn {
			t.Errorf("SplitURL(%q) = %q, %q, %v", tt.in, d, dsn, err)
		}
	}
}

func TestWorkerSection(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte("worker:\n  id: box-1\n  lease_duration: 30s\n"), "w.yaml")
	if err != nil || cfg.Worker.ID != "box-1" || cfg.Worker.LeaseDuration.D() != 30*time.Second {
		t.Fatalf("worker section: %+v, %v", cfg.Worker, err)
	}
	_, err = config.Parse([]byte("worker:\n  lease_duration: 10ms\n"), "w.yaml")
	if err == nil || !strings.Contains(err.Error(), "worker.lease_duration") {
		t.Fatalf("a 10ms lease must be refused naming the field, got %v", err)
	}
}

func lcOpts(c *config.Connection) *leadconnector.Options { return c.Options.(*leadconnector.Options) }

func TestAccountSelection(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(lcConn+"    accounts:\n      include: [loc_*, other]\n      exclude: [loc_9]\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sel := c.Connections[0].Accounts
	for id, want := range map[string]bool{"loc_1": true, "other": true, "loc_9": false, "another": false} {
		if got := sel.Selects(id); got != want {
			t.Errorf("Selects(%q) = %v, want %v", id, got, want)
		}
	}
	if every := (config.AccountSelection{Exclude: []string{"x"}}); !every.Selects("y") || every.Selects("x") {
		t.Error("with no include, every account but the excluded ones is selected")
	}
	_, err = config.Parse([]byte(lcConn+"    accounts:\n      exclude: [ok, \"[bad\"]\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), `connections[0].accounts.exclude[1] (line 8): "[bad" is not an account id or a pattern`) {
		t.Fatalf("bad pattern: %v", err)
	}
}

func TestWarehouseOpenURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		w    config.Warehouse
		want string
	}{
		{config.Warehouse{URL: "sqlite:///x.db"}, "sqlite:///x.db"},
		{config.Warehouse{URL: "postgres://u@h/db?sslmode=verify-full", Schema: "leadsync"}, "postgres://u@h/db?search_path=leadsync&sslmode=verify-full"},
	} {
		if got := tc.w.OpenURL(); got != tc.want {
			t.Errorf("%+v: OpenURL() = %s, want %s", tc.w, got, tc.want)
		}
	}
}

// A LocaliQ username without a configured password is valid: `auth password` reads the
// password from --password-file or a prompt.
func TestUsernameWithoutPassword(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(liqConn+"    username: me@agency.example\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if user, _, ok := c.Connections[0].PasswordGrant(); user != "me@agency.example" || ok {
		t.Fatalf("PasswordGrant() = %q, %v; want the username, and no configured password", user, ok)
	}
}

// run_on_start defaults to on; a connection inherits the global value unless it sets its own.
func TestRunOnStart(t *testing.T) {
	t.Parallel()
	two := lcConn + strings.TrimPrefix(liqConn, "connections:\n")
	for _, tt := range []struct {
		name, yaml string
		want       [2]bool
	}{
		{"default", two, [2]bool{true, true}},
		{"off globally", "run_on_start: false\n" + two, [2]bool{false, false}},
		{"off globally, on for one", "run_on_start: false\n" + strings.Replace(two, "    app_id: app\n", "    app_id: app\n    run_on_start: true\n", 1), [2]bool{true, false}},
		{"off for one", strings.Replace(two, "    app_id: app\n", "    app_id: app\n    run_on_start: false\n", 1), [2]bool{false, true}},
	} {
		c, err := config.Parse([]byte(tt.yaml), "c.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := [2]bool{c.Connections[0].RunsOnStart(), c.Connections[1].RunsOnStart()}; got != tt.want {
			t.Errorf("%s: run on start %v, want %v", tt.name, got, tt.want)
		}
	}
}
