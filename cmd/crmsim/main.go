// Command crmsim serves a stateful sandbox of the LeadConnector, LocaliQ and Less Annoying
// CRM APIs on loopback, for trying leadsync (or anything else) without a production CRM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/leadsync/leadsync/internal/sandbox"
	"github.com/leadsync/leadsync/internal/simkit"
	"github.com/leadsync/leadsync/sources/leadconnector/lctest"
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
		fmt.Fprint(fs.Output(), `crmsim serves a stateful sandbox of three CRM APIs on one loopback port:
LeadConnector (HighLevel) under /leadconnector, LocaliQ under /localiq, Less Annoying CRM under
/lacrm, each with its OAuth flows (auto-approving authorization pages), single-use rotating
refresh tokens, rate limits, HIPAA 403s and injectable faults; ground truth and counters
under /_admin/. Data is generated deterministically from --seed.

Usage: crmsim [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:8970", "listen address (loopback by default; the sandbox has no real security)")
	seed := fs.Uint64("seed", 1, "seed of the generated data")
	locations := fs.Int("locations", 5, "LeadConnector: installed locations")
	contacts := fs.Int("contacts", 200, "LeadConnector: contacts per location")
	forbidden := fs.Int("forbidden-locations", 0, "LeadConnector: locations whose contacts answer 403")
	advertisers := fs.Int("advertisers", 6, "LocaliQ: advertisers (about a quarter HIPAA-protected)")
	interactions := fs.Int("interactions", 120, "LocaliQ: contact interactions per advertiser")
	lacrmContacts := fs.Int("lacrm-contacts", 120, "LACRM: contacts")
	lacrmItems := fs.Int("lacrm-pipeline-items", 60, "LACRM: pipeline items")
	lcBurst := fs.Int("lc-burst", 0, "LeadConnector: requests per interval per resource (0: the vendor's 100)")
	lcInterval := fs.Duration("lc-interval", 0, "LeadConnector: the rate-limit interval (0: the vendor's 10s)")
	lcDaily := fs.Int("lc-daily", 0, "LeadConnector: requests per day per resource (0: the vendor's 200000)")
	ttl := fs.Duration("token-ttl", 0, "access token lifetime for every vendor (0: each vendor's real lifetime)")
	f429 := fs.Float64("fault-429", 0, "fraction of API requests answered 429")
	f5xx := fs.Float64("fault-5xx", 0, "fraction of API requests answered 502")
	fReset := fs.Float64("fault-reset", 0, "fraction of API answers cut by a dropped connection mid-body")
	fTrunc := fs.Float64("fault-truncate", 0, "fraction of API answers with truncated JSON")
	latency := fs.Duration("latency", 0, "extra latency added to --latency-rate of requests")
	latencyRate := fs.Float64("latency-rate", 0, "fraction of requests delayed by --latency")
	dropRefresh := fs.Int("drop-refresh", 0, "number of refreshes that rotate the token but drop the response")
	writeConfig := fs.String("write-config", "", "write a leadsync configuration (config.yaml + secret files) pointing at this sandbox into this directory")
	warehouse := fs.String("warehouse", "sqlite://leadsync.db", "with --write-config: the warehouse URL to put in it")
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
	sb := sandbox.New(sandbox.Options{Seed: *seed, TokenTTL: *ttl,
		Locations: *locations, ContactsPerLocation: *contacts, ForbiddenLocations: *forbidden,
		Advertisers: *advertisers, InteractionsPerAdv: *interactions,
		LACRMContacts: *lacrmContacts, LACRMPipelineItems: *lacrmItems,
		LeadConnector: lctest.Options{Burst: *lcBurst, Interval: *lcInterval, Daily: *lcDaily},
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
		path, err := sb.WriteConfig(*writeConfig, srv.URL, *warehouse)
		if err != nil {
			fmt.Fprintln(stderr, "crmsim:", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s; authorize and sync with:\n", path)
		fmt.Fprintf(stdout, "  leadsync auth login sandbox-leadconnector --config %s\n", path)
		fmt.Fprintf(stdout, "  leadsync auth password sandbox-localiq --config %s\n", path)
		fmt.Fprintf(stdout, "  leadsync auth login sandbox-lacrm --config %s\n", path)
		fmt.Fprintf(stdout, "  leadsync run --once --config %s\n\n", path)
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(stdout, "crmsim: stopping")
	return 0
}
