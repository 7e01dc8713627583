# leadsync — the two commands a newcomer needs:
#   go run ./cmd/leadsync demo     the demo: sandbox CRMs → ./leadsync-demo.db
#   make test                      vet + staticcheck + the race-enabled test suite
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 20000x

.PHONY: test vet staticcheck tidy unit fuzz bench proof-full flake systemd-check monitoring-check build install man dist deb-check readme-check ci

test: vet staticcheck tidy unit

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

# go.mod and go.sum must be what `go mod tidy` makes of them (it prints the diff otherwise).
tidy:
	$(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Every fuzz target, briefly (the long version: make fuzz FUZZTIME=10m (a duration, or an execution count like 3000x)).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Benchmarks, each reported as a ratio against a baseline measured in the same run: raw
# output in bench.out, a summary table at the end (figures kept in docs/performance.md).
bench:
	GO=$(GO) bash scripts/bench.sh

# The crash, fault and bad-input suites at full size (CI runs them reduced).
proof-full:
	LEADSYNC_PROOF_FULL=1 $(GO) test -count=1 -timeout 90m -run '^TestProof' -v ./cmd/leadsync/ ./worker/

# The flake gate: the timing-sensitive packages 10 times under -race, with the CPUs loaded by a
# parallel copy of the suite (FLAKE_RUNS, FLAKE_PKGS to change). Run it before resolving an issue.
flake:
	GO=$(GO) bash scripts/flake.sh

systemd-check:
	bash systemd/check.sh

# The Prometheus rules and the Grafana dashboard of docs/monitoring/: the rules checked and
# unit-tested by promtool (Debian's prometheus package), the dashboard read as JSON with its
# queries checked by promtool (TestMonitoringDashboard).
monitoring-check:
	promtool check rules docs/monitoring/leadsync.rules.yml
	promtool test rules docs/monitoring/leadsync.rules.test.yml
	$(GO) test -count=1 -run '^TestMonitoringDashboard$$' ./cmd/leadsync/

# -buildvcs=auto stamps the git revision into `leadsync version` and leadsync_build_info
# (some environments set GOFLAGS=-buildvcs=false).
build:
	$(GO) build -buildvcs=auto -o bin/ ./cmd/...

install:
	$(GO) install -buildvcs=auto ./cmd/leadsync ./cmd/crmsim

# Man pages for every command, from the same command tree as --help, into man/.
man:
	$(GO) run ./cmd/leadsync man man

# Release tarballs and .debs for linux/amd64 and linux/arm64, with SHA256SUMS, in dist/ (see
# scripts/dist.sh; arm64 needs the gcc-aarch64-linux-gnu cross compiler). ARCHES=amd64 for one.
dist:
	GO=$(GO) bash scripts/dist.sh

# Builds the amd64 .deb, installs it with dpkg, checks `leadsync version` and the installed
# units, and purges it (root, or sudo).
deb-check:
	GO=$(GO) bash scripts/deb-check.sh

# README's sandbox and "Running it for real" blocks, run as written from a fresh clone in a
# temporary directory, the sandbox standing in for the vendors (needs curl and port 8970).
readme-check:
	GO=$(GO) bash scripts/readme-check.sh

# What CI runs after `make test`.
ci: fuzz systemd-check monitoring-check deb-check readme-check
