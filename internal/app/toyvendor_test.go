package app_test

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/oauth2"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
	"github.com/leadsync/leadsync/sink"
	"github.com/leadsync/leadsync/sources"
	_ "github.com/leadsync/leadsync/sources/all"
	"github.com/leadsync/leadsync/worker"
)

// The toy vendor lives in this file only: registered, configured with an option of its own,
// opened by internal/app and synced by the worker into the warehouse, with no change to any
// other file. It is what adding a vendor takes.

type toyOptions struct {
	Accounts int             `yaml:"accounts"`  // how many accounts the toy CRM has
	Leads    int             `yaml:"leads"`     // leads per account
	PageSize int             `yaml:"page_size"` // leads per page
	Lookback config.Duration `yaml:"lookback"`  // a typed option, decoded by config's rules
}

func (o *toyOptions) Defaults() {
	o.Accounts = cmp.Or(o.Accounts, 2)
	o.Leads = cmp.Or(o.Leads, 25)
	o.PageSize = cmp.Or(o.PageSize, 10)
}

func (o *toyOptions) Validate(c *config.Checker) {
	c.Count("accounts", o.Accounts, 10)
	c.Count("page_size", o.PageSize, 100)
}

// toySource is an in-memory CRM whose cursor is the offset of the next lead.
type toySource struct {
	o      *toyOptions
	tokens sources.Tokens
}

func (s *toySource) Name() string { return "toy" }

func (s *toySource) Accounts(ctx context.Context) iter.Seq2[sources.Account, error] {
	return func(yield func(sources.Account, error) bool) {
		if _, err := s.tokens.Grant().Token(ctx); err != nil {
			yield(sources.Account{}, err)
			return
		}
		for i := range s.o.Accounts {
			if !yield(sources.Account{Source: "toy", ID: fmt.Sprintf("acct-%d", i), Name: "Toy", Active: true}, nil) {
				return
			}
		}
	}
}

func (s *toySource) Streams() []sources.Stream {
	return []sources.Stream{{Name: "forms", Mode: sources.Incremental, Table: sources.TableLeads}}
}

func (s *toySource) Read(ctx context.Context, acct sources.Account, _ string, cur sources.Cursor, _ sources.ReadOptions) iter.Seq2[sources.Page, error] {
	return func(yield func(sources.Page, error) bool) {
		from, _ := strconv.Atoi(string(cur))
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for from < s.o.Leads {
			to := min(from+s.o.PageSize, s.o.Leads)
			var p sources.Page
			for i := from; i < to; i++ {
				at := t0.Add(time.Duration(i) * time.Minute)
				p.Leads = append(p.Leads, sources.Lead{Source: "toy", AccountID: acct.ID, ID: fmt.Sprintf("lead-%d", i),
					Kind: sources.KindForm, CreatedAt: at, UpdatedAt: at, Raw: []byte(`{"toy":true}`)})
			}
			p.Next = sources.Cursor(strconv.Itoa(to))
			if !yield(p, nil) {
				return
			}
			from = to
		}
	}
}

// toyAuth has no authorization pages: the test stores its grant directly.
type toyAuth struct{}

func (toyAuth) AuthCodeURL(state, _, _ string) string { return "http://127.0.0.1/toy?state=" + state }
func (toyAuth) Exchange(context.Context, string, string, string) (*oauth2.Token, error) {
	return nil, fmt.Errorf("toy: no authorization-code flow")
}

type toyRefresher struct{}

func (toyRefresher) Refresh(context.Context, string) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: "toy_at_2", RefreshToken: "toy_rt_2", Expiry: time.Now().Add(time.Hour)}, nil
}

func init() {
	vendors.Register(vendors.Vendor{
		Name: "toy", Title: "Toy CRM", Concurrency: 2,
		Options: func() config.Options { return new(toyOptions) },
		Open: func(c vendors.Conn) (vendors.Opened, error) {
			r := toyRefresher{}
			return vendors.Opened{Source: &toySource{o: c.Config.Options.(*toyOptions), tokens: c.Tokens(r)},
				Auth: toyAuth{}, Refresher: r}, nil
		},
	})
}

func TestToyVendorRegistersAndSyncs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "toy-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`state_dir: %q
http:
  listen: "off"
concurrency:
  toy: 3
connections:
  - name: toy-1
    source: toy
    client_id: toy-client
    client_secret: {file: %q}
    accounts: 3
    leads: 42
    lookback: 5m
`, filepath.Join(dir, "state"), secret)

	// The vendor's own keys are checked like every other: a typo, and another vendor's key.
	for _, bad := range []struct{ from, to, want string }{
		{"    lookback: 5m\n", "    leeds: 1\n", `connections[0].leeds (line 13): unknown field (did you mean "leads"?)`},
		{"    lookback: 5m\n", "    app_id: x\n", `connections[0].app_id (line 13): is a leadconnector option; this connection's source is toy`},
		{"accounts: 3", "accounts: 11", `connections[0].accounts (line 11): must be between 1 and 10, got 11`},
	} {
		_, err := config.Parse([]byte(strings.Replace(yaml, bad.from, bad.to, 1)), "toy.yaml")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.to, err, bad.want)
		}
	}

	cfg, err := config.Parse([]byte(yaml), "toy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Connections[0].Options.(*toyOptions)
	if o.Accounts != 3 || o.Leads != 42 || o.PageSize != 10 || o.Lookback.D() != 5*time.Minute || cfg.Connections[0].Concurrency != 3 {
		t.Fatalf("options %+v, concurrency %d", o, cfg.Connections[0].Concurrency)
	}
	ctx := context.Background()
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Store.Save(ctx, "toy-1", &oauth2.Token{AccessToken: "toy_at_1", RefreshToken: "toy_rt_1",
		Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	res, err := a.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce})
	if err != nil || !res.OK() {
		t.Fatalf("run: %v %s %v", err, res.Status, res.Failures)
	}
	if res.Stats.LeadsWritten != 3*42 {
		t.Fatalf("%d leads written, want %d", res.Stats.LeadsWritten, 3*42)
	}
	db, err := sql.Open("sqlite3", filepath.Join(dir, "state", "leads.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(DISTINCT account_id || '/' || lead_id) FROM leads WHERE source = 'toy'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3*42 {
		t.Fatalf("warehouse holds %d toy leads, want %d", n, 3*42)
	}
	// A second run resumes from the committed cursors: nothing new to write.
	res, err = a.Worker.Run(ctx, worker.RunOptions{Trigger: sink.TriggerOnce})
	if err != nil || !res.OK() || res.Stats.LeadsWritten != 0 {
		t.Fatalf("second run: %v %s, %d leads written", err, res.Status, res.Stats.LeadsWritten)
	}
}
