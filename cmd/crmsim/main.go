// Command crmsim serves a stateful sandbox of the CRM APIs leadsync syncs (every registered
// vendor's fake) on loopback, for trying leadsync (or anything else) without a production CRM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/internal/vendors"
	_ "github.com/leadsync/leadsync/sources/all" // every vendor's fake
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crmsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `crmsim serves a stateful sandbox of CRM APIs on one loopback port:
%s, each with its OAuth flows (auto-approving authorization pages), single-use rotating
refresh tokens, rate limits, HIPAA 403s and injectable faults; ground truth and counters
under /_admin/. Data is generated deterministically from --seed. Vendors with static tokens
issue them under <vendor>/_admin/ (LeadConnector Private Integration Tokens, Less Annoying
CRM API keys); --write-config --static-auth writes connections that use them, which need no
authorization step.

Usage: crmsim [flags]

Flags:
`, servedVendors())
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:8970", "listen address (loopback by default; the sandbox has no real security)")
	seed := fs.Uint64("seed", 1, "seed of the generated data")
	vendorOpts := map[string]func() any{}
	for _, v := range vendors.All() {
		if v.Fake != nil && v.Fake.Flags != nil {
			vendorOpts[v.Name] = v.Fake.Flags(fs)
		}
	}
	ttl := fs.Duration("token-ttl", 0, "access token lifetime for every vendor (0: each vendor's real lifetime)")
	f429 := fs.Float64("fault-429", 0, "fraction of API requests answered 429")
	f5xx := fs.Float64("fault-5xx", 0, "fraction of API requests answered 502")
	fReset := fs.Float64("fault-reset", 0, "fraction of API answers cut by a dropped connection mid-body")
	fTrunc := fs.Float64("fault-truncate", 0, "fraction of API answers with truncated JSON")
	latency := fs.Duration("latency", 0, "extra latency added to --latency-rate of requests")
	latencyRate := fs.Float64("latency-rate", 0, "fraction of requests delayed by --latency")
	dropRefresh := fs.Int("drop-refresh", 0, "number of refreshes that rotate the token but drop the response")
	writeConfig := fs.String("write-config", "", "write a leadsync configuration (config.yaml + secret files) pointing at this sandbox into this directory")
	warehouse := fs.String("warehouse", "", "with --write-config: the warehouse URL to put in it (default: leads.db in the written state directory)")
	staticAuth := fs.Bool("static-auth", false, "with --write-config: connect the vendors that have static tokens with tokens issued now (one per account where needed) instead of OAuth")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "crmsim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *staticAuth && *writeConfig == "" {
		fmt.Fprintln(stderr, "crmsim: --static-auth needs --write-config")
		return 2
	}
	perVendor := map[string]any{}
	for name, get := range vendorOpts {
		perVendor[name] = get()
	}
	sb := sandbox.New(sandbox.Options{Seed: *seed, TokenTTL: *ttl, Vendor: perVendor,
		Faults: simkit.FaultSettings{Rate429: *f429, Rate5xx: *f5xx, RateReset: *fReset, RateTruncate: *fTrunc,
			Latency: *latency, LatencyRate: *latencyRate, DropRefreshResponses: *dropRefresh}})
	srv, err := sb.Start(*addr)
	if err != nil {
		fmt.Fprintln(stderr, "crmsim:", err)
		return 1
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "crmsim serving on %s (seed %d)\n\n%s\n", srv.URL, *seed, sb.Describe(srv.URL))
	if *writeConfig != "" {
		wo := sandbox.WriteOptions{Static: *staticAuth}
		path, err := sb.WriteConfigWith(*writeConfig, srv.URL, *warehouse, wo)
		if err != nil {
			fmt.Fprintln(stderr, "crmsim:", err)
			return 1
		}
		logins := sb.LoginCommandsWith(path, wo)
		if len(logins) > 0 {
			fmt.Fprintf(stdout, "wrote %s; authorize and sync with:\n", path)
		} else {
			fmt.Fprintf(stdout, "wrote %s; sync with:\n", path)
		}
		for _, c := range logins {
			fmt.Fprintf(stdout, "  %s\n", c)
		}
		fmt.Fprintf(stdout, "  leadsync run --once --config %s\n\n", path)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(stdout, "crmsim: stopping")
	return 0
}

// servedVendors names each vendor crmsim serves and its path.
func servedVendors() string {
	var parts []string
	for _, v := range vendors.All() {
		if v.Fake != nil {
			parts = append(parts, v.Title+" under "+v.Fake.Prefix)
		}
	}
	return strings.Join(parts, ", ")
}
