#!/usr/bin/env bash
# The flake gate (make flake): runs the timing-sensitive packages FLAKE_RUNS times (default 10)
# under -race while a parallel copy of the whole suite loads the CPUs, and counts failures per
# package. Any failure fails the gate; each failing run's output is kept in $FLAKE_DIR.
#
#   make flake                                  # the default packages, 10 runs each
#   make flake FLAKE_RUNS=20 FLAKE_PKGS=./store/...
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
RUNS=${FLAKE_RUNS:-10}
PKGS=${FLAKE_PKGS:-./store/... ./sources/... ./internal/simkit/... ./internal/ops/... ./sink/... ./worker/...}
DIR=${FLAKE_DIR:-$(mktemp -d -t leadsync-flake.XXXXXX)}
mkdir -p "$DIR/bin"

# Test binaries are built once: the runs then measure the tests, not the compiler.
mapfile -t pkgs < <($GO list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' $PKGS)
for p in "${pkgs[@]}"; do
  path=${p% *}
  if ! $GO test -race -c -o "$DIR/bin/$(basename "$path").$(echo "$path" | md5sum | cut -c1-8).test" "$path"; then
    echo "flake: $path does not build" >&2
    exit 1
  fi
done

# The load: the whole suite, again and again, until the gate ends. Its failures count too:
# they are the same tests, under even more load.
load_log="$DIR/load.log"
# In a session of its own, so that stopping it stops every test process it started.
GO=$GO setsid bash -c 'while true; do $GO test -race -count=1 ./... || echo "load: a run of the suite failed"; done' \
  >"$load_log" 2>&1 &
load=$!
trap 'kill -TERM -- -$load 2>/dev/null; wait $load 2>/dev/null' EXIT

total=0
printf '%-56s %5s %6s %8s\n' package runs failed seconds
for p in "${pkgs[@]}"; do
  path=${p% *} dir=${p#* }
  bin="$DIR/bin/$(basename "$path").$(echo "$path" | md5sum | cut -c1-8).test"
  failed=0 start=$SECONDS
  for i in $(seq 1 "$RUNS"); do
    out="$DIR/$(basename "$path")-$i.log"
    if (cd "$dir" && "$bin" -test.count=1 -test.timeout=20m >"$out" 2>&1); then
      rm -f "$out"
    else
      failed=$((failed + 1))
      grep -E -- '^(--- FAIL|panic:|FAIL)' "$out" | head -5 | sed 's/^/    /' >&2
    fi
  done
  total=$((total + failed))
  printf '%-56s %5d %6d %8d\n' "$path" "$RUNS" "$failed" $((SECONDS - start))
done
kill -TERM -- -$load 2>/dev/null; wait $load 2>/dev/null
# A package the gate stopped mid-run is not a failure; a test that failed is.
load_fails=$(grep -E -- '^--- FAIL' "$load_log" | sort | uniq -c)
echo "flake: $total failed run(s) of $((RUNS * ${#pkgs[@]})); the load ran $(grep -cE '^(ok|FAIL)[[:space:]]' "$load_log") package results, $(grep -cE -- '^--- FAIL' "$load_log") failed tests (log: $load_log)"
[ -n "$load_fails" ] && printf 'flake: failed in the load:\n%s\n' "$load_fails"
[ "$total" -eq 0 ] && [ -z "$load_fails" ]
