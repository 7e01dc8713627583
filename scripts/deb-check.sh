#!/usr/bin/env bash
# make deb-check (part of make ci): the .deb that make dist builds, for this machine's
# architecture, installed for real. After dpkg -i, `leadsync version` must show this build's
# version and revision, the postinst must have made the leadsync user and its directories, and
# the installed units must pass `systemd-analyze verify` with nothing to say; after dpkg
# --purge, the package's files must be gone. What the check itself created (the user, the
# directories) is removed again, so that it can run twice.
#
# Needs root (or passwordless sudo), dpkg and systemd-analyze (.ci/run installs what is
# missing). Refuses to run where a leadsync package is installed: it would replace and purge it.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
start=$(date +%s)

fail() {
	echo "deb-check: FAIL: $*" >&2
	exit 1
}

if [ "$(id -u)" -eq 0 ]; then
	as_root=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	as_root=sudo
else
	fail "dpkg -i needs root: run as root or with passwordless sudo"
fi
command -v dpkg >/dev/null 2>&1 || fail "no dpkg: this check needs a Debian system"
command -v systemd-analyze >/dev/null 2>&1 || fail "no systemd-analyze: apt-get install systemd"
if [ "$(dpkg-query -W -f='${db:Status-Status}' leadsync 2>/dev/null)" = installed ]; then
	fail "a leadsync package is installed on this machine; the check would replace and purge it"
fi

# nfpm's own module (packaging/go.mod), held to the same rule as leadsync's.
$GO -C packaging mod tidy -diff || fail "packaging/go.mod: go mod tidy would change it"

arch=$($GO env GOHOSTARCH)
[ "$(dpkg --print-architecture)" = "$arch" ] ||
	fail "dpkg's architecture $(dpkg --print-architecture) is not Go's $arch"

# What exists before, so that only what the package made is removed afterwards.
had_user=$(getent passwd leadsync >/dev/null && echo yes || echo no)
had_group=$(getent group leadsync >/dev/null && echo yes || echo no)
had_etc=$([ -e /etc/leadsync ] && echo yes || echo no)
had_state=$([ -e /var/lib/leadsync ] || [ -L /var/lib/leadsync ] && echo yes || echo no)

tmp=$(mktemp -d)
installed=no
cleanup() {
	if [ "$installed" = yes ]; then
		$as_root dpkg --purge leadsync >/dev/null || true
	fi
	[ "$had_state" = yes ] || $as_root rmdir /var/lib/leadsync 2>/dev/null || true
	[ "$had_etc" = yes ] || $as_root rmdir /etc/leadsync 2>/dev/null || true
	[ "$had_user" = yes ] || ! getent passwd leadsync >/dev/null || $as_root userdel leadsync
	[ "$had_group" = yes ] || ! getent group leadsync >/dev/null || $as_root groupdel leadsync
	rm -rf "$tmp"
}
trap cleanup EXIT

ARCHES=$arch DIST=$tmp/dist BUILDFLAGS='' GO=$GO bash scripts/dist.sh >"$tmp/dist.log" 2>&1 ||
	{ cat "$tmp/dist.log" >&2; fail "scripts/dist.sh"; }
debs=("$tmp"/dist/*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
	fail "dist made no single .deb: ${debs[*]}"
fi
deb=${debs[0]}
echo "deb-check: dpkg -i $(basename "$deb")"
installed=yes
$as_root dpkg -i "$deb" || fail "dpkg -i"

# The version is the one dist stamped; the revision is this commit's.
want_version=$(git describe --tags --always)$([ -z "$(git status --porcelain)" ] || echo -dirty)
want_revision=$(git rev-parse HEAD)
out=$(/usr/bin/leadsync version) || fail "/usr/bin/leadsync version: exit status $?"
echo "$out" | sed 's/^/  /'
head -n1 <<<"$out" | grep -qxF "leadsync $want_version" ||
	fail "leadsync version does not say version $want_version"
grep -qE "^ +revision +$want_revision\$" <<<"$out" ||
	fail "leadsync version does not show the revision $want_revision"
[ -x /usr/bin/crmsim ] || fail "no /usr/bin/crmsim"

# The postinst's user and directories, as the units expect them (User=leadsync,
# StateDirectory=leadsync with StateDirectoryMode=0700, the config under /etc/leadsync).
getent passwd leadsync >/dev/null || fail "postinst made no leadsync user"
getent group leadsync >/dev/null || fail "postinst made no leadsync group"
if [ "$had_etc" = no ]; then
	got=$(stat -c '%a %U:%G' /etc/leadsync)
	[ "$got" = "750 root:leadsync" ] || fail "/etc/leadsync is $got, not 750 root:leadsync"
fi
if [ "$had_state" = no ]; then
	got=$(stat -c '%a %U:%G' /var/lib/leadsync)
	[ "$got" = "700 leadsync:leadsync" ] || fail "/var/lib/leadsync is $got, not 700 leadsync:leadsync"
fi
cmp -s /etc/leadsync/config.example.yaml config.example.yaml ||
	fail "/etc/leadsync/config.example.yaml is not config.example.yaml"
[ ! -e /etc/leadsync/config.yaml ] || [ "$had_etc" = yes ] ||
	fail "the package installed a config.yaml"
echo "ok   postinst: user leadsync, /etc/leadsync, /var/lib/leadsync"

# The installed units, as systemd would load them: silence is success (systemd/check.sh).
units=/usr/lib/systemd/system
grep -q '^ExecStart=/usr/bin/leadsync ' "$units/leadsync.service" ||
	fail "$units/leadsync.service does not run /usr/bin/leadsync"
ln -s "$units/leadsync-once@.service" "$tmp/leadsync-once@agency.service" # a template verifies as an instance
for unit in "$units/leadsync.service" "$tmp/leadsync-once@agency.service"; do
	out=$(systemd-analyze verify --man=false "$unit" 2>&1) || fail "verify $unit (exit status): $out"
	[ -z "$out" ] || fail "verify $unit: $out"
	echo "ok   verify $unit"
done

$as_root dpkg --purge leadsync || fail "dpkg --purge"
installed=no
for f in /usr/bin/leadsync /usr/bin/crmsim "$units/leadsync.service" "$units/leadsync-once@.service" \
	/etc/leadsync/config.example.yaml; do
	[ ! -e "$f" ] || fail "dpkg --purge left $f"
done
[ "$had_etc" = yes ] || [ ! -e /etc/leadsync ] || fail "dpkg --purge left the empty /etc/leadsync"
[ "$had_state" = yes ] || [ ! -e /var/lib/leadsync ] || fail "dpkg --purge left the empty /var/lib/leadsync"
echo "ok   purge"
echo "deb-check: ok ($(($(date +%s) - start))s)"
