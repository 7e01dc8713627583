#!/bin/sh
# Checks the leadsync units: `systemd-analyze verify` must print nothing,
# `systemd-analyze security` must rate each unit at an exposure of 1.5 or less, and the lines
# the daemon relies on (reload, working directory) must be there.
# Works without a running systemd (offline mode). Exit status 0 only when all is clean.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "check.sh: installing the systemd package for systemd-analyze" >&2
	apt-get update && apt-get install -y systemd
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0
for unit in leadsync.service leadsync-once@.service; do
	# verify wants the ExecStart binary to exist: check a copy that runs /bin/true instead.
	sed 's|^ExecStart=/usr/local/bin/leadsync |ExecStart=/bin/true |' "$here/$unit" >"$tmp/$unit"
	target=$tmp/$unit
	case $unit in
	*@.service) target=$tmp/${unit%@.service}@agency.service ;; # templates verify as an instance
	esac

	out=$(systemd-analyze verify --man=false "$target" 2>&1) || {
		echo "FAIL verify $unit (exit status):" >&2
		echo "$out" >&2
		fail=1
		continue
	}
	if [ -n "$out" ]; then
		echo "FAIL verify $unit: warnings:" >&2
		echo "$out" >&2
		fail=1
	else
		echo "ok   verify $unit"
	fi

	# --threshold=15 makes systemd-analyze exit non-zero above an exposure of 1.5.
	if out=$(systemd-analyze security --offline=true --threshold=15 --no-pager "$target" 2>&1); then
		echo "ok   security $unit: $(echo "$out" | grep -i 'overall exposure' | sed 's/.*→ *//; s/^ *//')"
	else
		echo "FAIL security $unit: exposure above 1.5:" >&2
		echo "$out" | grep -E '✗|Overall' >&2 || echo "$out" >&2
		fail=1
	fi
done

# What the daemon's protocol relies on (docs/operations.md, "The systemd protocol").
require() { # unit, line
	if grep -qxF "$2" "$here/$1"; then
		echo "ok   $1: $2"
	else
		echo "FAIL $1: no line $2" >&2
		fail=1
	fi
}
require leadsync.service 'ExecReload=/bin/kill -HUP $MAINPID'
require leadsync.service 'WorkingDirectory=%S/leadsync'
require leadsync-once@.service 'WorkingDirectory=%S/leadsync'
exit $fail
