#!/usr/bin/env bash
# make bench: every benchmark `go test -bench` finds, once, each reporting its figure as a ratio
# against a baseline measured in the same run (rate-limit utilization = achieved ÷ allowed and
# the 429 share per vendor; sink upserts ÷ a raw insert floor per dialect; end-to-end leads/s
# and peak RSS; requests per account of a no-op incremental run). The raw output goes to
# bench.out (gitignored); a summary table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${BENCH_OUT:-bench.out}

{
  echo "# leadsync benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -sm), $(nproc) CPUs, $($GO version | cut -d' ' -f3)"
  # The sink's benchmarks run 20 pages each so x_floor is not one page's noise; everything
  # else once (the rate benchmarks run 30 s of wall time by themselves).
  # shellcheck disable=SC2046
  $GO test -run '^$' -bench . -benchtime 1x -timeout 60m $($GO list ./... | grep -v '/sink$')
  $GO test -run '^$' -bench . -benchtime 20x -timeout 30m ./sink/
} 2>&1 | tee "$OUT"

echo
echo "summary (full output in $OUT):"
awk '
  /^pkg: / { pkg = $2; sub(/^github.com\/leadsync\/leadsync\//, "", pkg) }
  /^Benchmark/ && NF >= 4 {
    name = $1; sub(/-[0-9]+$/, "", name)
    m = ""
    for (i = 3; i < NF; i += 2) if ($(i+1) != "ns/op") m = m sprintf("%s %s   ", $i, $(i+1))
    if (m == "") m = sprintf("%s ns/op", $3)
    printf "  %-24s %-48s %s\n", pkg, name, m
  }
  /^(FAIL|---)/ { print "  " $0 }
' "$OUT"
