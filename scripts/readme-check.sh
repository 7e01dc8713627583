#!/usr/bin/env bash
# make readme-check (part of make ci): README's "The sandbox" and "Running it for real" blocks,
# run as written from a fresh clone in a temporary directory, with the sandbox standing in for
# the vendors. What the test changes, and nothing else:
#   - /etc/leadsync is a directory under the temporary one ($LEADSYNC_CONFIG, which README
#     documents, points the commands there);
#   - $(go env GOPATH)/bin is a temporary GOBIN, put on PATH as README says;
#   - the editor step ($EDITOR) writes what an operator would: the sandbox's endpoints, client
#     ids and secrets, taken from the configuration `crmsim --write-config` wrote;
#   - <connection> is each connection the step applies to; the browser ($BROWSER) is curl,
#     which follows the sandbox's auto-approving pages back to the loopback callback;
#   - `leadsync run` (the daemon) gets SIGTERM once its /healthz answers, and must exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
start=$(date +%s)
fail() {
	echo "readme-check: FAIL: $*" >&2
	exit 1
}
command -v curl >/dev/null || fail "needs curl (the test's browser): apt-get install curl"

tmp=$(mktemp -d)
pids=()
cleanup() {
	# Each background command leads its own process group: `go run` leaves its child behind.
	for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# block HEADING: the first ```sh block after the heading, one command per line (a line that
# starts with spaces continues a comment).
block() {
	awk -v h="$1" '$0 == h {in_s=1; next} in_s && /^```sh$/ {in_b=1; next} in_b && /^```$/ {exit} in_b' README.md |
		grep -v '^ ' | sed 's/[[:space:]]*#.*$//' | grep -v '^$'
}
sandbox_block=$(block "## The sandbox")
real_block=$(block "## Running it for real")
[ -n "$sandbox_block" ] && [ -n "$real_block" ] || fail "README has no sandbox or running-it-for-real block"

git clone -q "$PWD" "$tmp/src"
cd "$tmp/src"
export GOBIN=$tmp/gobin PATH=$tmp/gobin:$PATH
export LEADSYNC_CONFIG=$tmp/etc/leadsync/config.yaml
etc=$tmp/etc/leadsync
log=$tmp/log
: >"$log"

run() { # run CMD...: one README command, its output kept for the failure message
	echo "readme-check: \$ $*"
	local rc=0
	"$@" >>"$log" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { tail -n 40 "$log" >&2; fail "$* (exit $rc)"; }
}

# The sandbox block: --help, then the server that writes its configuration (the plain server
# of the middle line is the same one, without the configuration: it is started by the last).
while read -r line; do
	case $line in
	*--help*) run bash -c "$line" ;;
	*--write-config*)
		echo "readme-check: \$ $line &"
		setsid bash -c "exec $line" >>"$log" 2>&1 &
		pids+=($!)
		for _ in $(seq 1 600); do
			[ -f sandbox/config.yaml ] && curl -fs http://127.0.0.1:8970/_admin/ >/dev/null 2>&1 && break
			sleep 0.2
		done
		[ -f sandbox/config.yaml ] || { tail -n 40 "$log" >&2; fail "crmsim wrote no sandbox/config.yaml"; }
		;;
	*) ;;
	esac
done <<<"$sandbox_block"
git status --porcelain | grep . && fail "the sandbox left files git sees (README says .gitignore covers them)"

# The operator's edit: the sandbox's connections (endpoints, ids, secrets) in place of the
# ones init wrote, in the configuration init wrote (its state_dir and warehouse kept).
cat >"$tmp/editor" <<EOF
#!/usr/bin/env bash
set -euo pipefail
{ sed -n '/^connections:/q;p' "\$1"; sed -n '/^connections:/,\$p' "$PWD/sandbox/config.yaml"; } >"\$1.new"
mv "\$1.new" "\$1"
EOF
chmod +x "$tmp/editor"
export EDITOR=$tmp/editor
cat >"$tmp/browser" <<'EOF'
#!/usr/bin/env bash
exec curl -fsSL -o /dev/null "$1"
EOF
chmod +x "$tmp/browser"
export BROWSER=$tmp/browser

conns() { # the connections of the configuration, with their sources
	awk '/^  - name:/ {n=$3} /^    source:/ {print n, $2}' "$LEADSYNC_CONFIG"
}

while read -r line; do
	line=${line//\/etc\/leadsync/$etc}
	line=${line//\$EDITOR/$EDITOR}
	case $line in
	"leadsync run")
		echo "readme-check: $ leadsync run & (SIGTERM once /healthz answers: it must stop cleanly)"
		leadsync run >>"$log" 2>&1 &
		daemon=$!
		pids+=("$daemon")
		# Up (its health endpoint answers on the default http.listen), then stopped.
		for _ in $(seq 1 300); do
			curl -fs http://127.0.0.1:9464/healthz >/dev/null 2>&1 && break
			kill -0 "$daemon" 2>/dev/null || break
			sleep 0.2
		done
		curl -fs http://127.0.0.1:9464/healthz >/dev/null 2>&1 || { tail -n 40 "$log" >&2; fail "leadsync run never answered on 127.0.0.1:9464/healthz"; }
		kill -TERM "$daemon"
		rc=0
		wait "$daemon" || rc=$?
		[ "$rc" -eq 0 ] || { tail -n 40 "$log" >&2; fail "leadsync run exited $rc on SIGTERM"; }
		;;
	*"auth login <connection>"*)
		while read -r name source; do
			[ "$source" = localiq ] || run bash -c "${line//<connection>/$name}"
		done < <(conns)
		;;
	*"auth password <connection>"*)
		while read -r name source; do
			[ "$source" != localiq ] || run bash -c "${line//<connection>/$name}"
		done < <(conns)
		;;
	*) run bash -c "$line" ;;
	esac
done <<<"$real_block"

out=$(leadsync status --json)
grep -q '"access": "ok"' <<<"$out" || fail "after README's steps no account is ok: $out"
echo "readme-check: ok in $(($(date +%s) - start)) s"
