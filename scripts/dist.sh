#!/usr/bin/env bash
# make dist: the release artifacts in dist/, for each architecture a tarball
# (leadsync_<version>_linux_<arch>.tar.gz: leadsync, crmsim, the systemd units, the example
# config, the docs, README, LICENSE and CHANGELOG) and a .deb (packaging/nfpm.yaml), then
# SHA256SUMS over them all.
#
#   ARCHES   the architectures (default "amd64 arm64")
#   DIST     where the artifacts go, replacing those there (default dist)
#   VERSION  the version the binaries report (default: git describe --tags --always, and
#            -dirty when git status shows changes)
#   BUILDFLAGS  more go build flags (default -trimpath: no build paths in the binaries; the
#            deb check sets it empty to reuse the build cache make test filled)
#
# leadsync links SQLite with cgo, so a foreign architecture needs a C cross compiler:
# aarch64-linux-gnu-gcc (Debian package gcc-aarch64-linux-gnu) for arm64 on amd64,
# x86_64-linux-gnu-gcc (gcc-x86-64-linux-gnu) for amd64 on arm64. CC_<arch> overrides it.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
ARCHES=${ARCHES:-amd64 arm64}
DIST=${DIST:-dist}
# Dirty as the go command's vcs.modified has it: any change git status shows, untracked files too.
modified=false
[ -z "$(git status --porcelain)" ] || modified=true
VERSION=${VERSION:-$(git describe --tags --always)$([ "$modified" = false ] || echo -dirty)}
revision=$(git rev-parse HEAD)
# Tarballs, packages and their files carry the commit's time, not the build's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export PKG_MAINTAINER=${PKG_MAINTAINER:-The leadsync authors}
host=$($GO env GOHOSTARCH)

die() {
	echo "dist: $*" >&2
	exit 1
}

# The C compiler for GOARCH $1: the default one for the host's own architecture.
cc_for() {
	local var=CC_$1
	if [ -n "${!var:-}" ]; then
		echo "${!var}"
	elif [ "$1" = "$host" ]; then
		$GO env CC
	else
		case $1 in
		amd64) echo x86_64-linux-gnu-gcc ;;
		arm64) echo aarch64-linux-gnu-gcc ;;
		esac
	fi
}

cc_package() {
	case $1 in
	amd64) echo gcc-x86-64-linux-gnu ;;
	arm64) echo gcc-aarch64-linux-gnu ;;
	esac
}

# A Debian version from git describe's: v1.2.0 → 1.2.0, v1.2.0-rc.1 → 1.2.0~rc.1 (before
# 1.2.0), v1.2.0-3-gabc1234 → 1.2.0+3.gabc1234 (after it), -dirty → +dirty; a bare commit (no
# tag yet) → 0.0.0+g<commit>.
deb_version() {
	local v=${1#v} suffix=
	if [[ $v == *-dirty ]]; then
		v=${v%-dirty}
		suffix=dirty
	fi
	if ! [[ $v =~ ^[0-9]+\.[0-9]+ ]]; then
		v=0.0.0+g$v
	elif [[ $v =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		v=${BASH_REMATCH[1]//-/\~}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}
	else
		v=${v//-/\~}
	fi
	if [ -n "$suffix" ]; then
		if [[ $v == *+* ]]; then v+=.$suffix; else v+=+$suffix; fi
	fi
	echo "$v"
}

# Fail before building anything when a compiler is missing.
for arch in $ARCHES; do
	case $arch in
	amd64 | arm64) ;;
	*) die "unsupported architecture $arch (amd64, arm64)" ;;
	esac
	cc=$(cc_for "$arch")
	command -v "${cc%% *}" >/dev/null 2>&1 ||
		die "linux/$arch needs the C compiler $cc (cgo, for SQLite): apt-get install $(cc_package "$arch")"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$DIST"
rm -f "$DIST"/leadsync_* "$DIST"/SHA256SUMS
dist=$(cd "$DIST" && pwd)
debversion=$(deb_version "$VERSION")
ldflags="-s -w -X main.version=$VERSION -X main.revision=$revision -X main.modified=$modified"

build() { # arch outdir
	echo "dist: building linux/$1 ($VERSION)"
	# shellcheck disable=SC2086 # BUILDFLAGS is a list of flags
	CGO_ENABLED=1 GOOS=linux GOARCH=$1 CC=$(cc_for "$1") \
		$GO build ${BUILDFLAGS--trimpath} -buildvcs=auto -ldflags "$ldflags" -o "$2/" ./cmd/leadsync ./cmd/crmsim
}

# Man pages and completion scripts come from a binary that runs here; the command tree is the
# same on every architecture.
gen=$tmp/gen
native=$tmp/native
if [[ " $ARCHES " == *" $host "* ]]; then
	native=$tmp/$host/bin
fi

for arch in $ARCHES; do
	stage=$tmp/$arch
	build "$arch" "$stage/bin"

	name=leadsync_${VERSION}_linux_$arch
	tree=$stage/$name
	mkdir -p "$tree/systemd"
	cp "$stage/bin/leadsync" "$stage/bin/crmsim" "$tree/"
	cp systemd/leadsync.service systemd/leadsync-once@.service "$tree/systemd/"
	cp -r config.example.yaml docs README.md LICENSE CHANGELOG.md "$tree/"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
		-C "$stage" -cf - "$name" | gzip -9n >"$dist/$name.tar.gz"

	if [ ! -d "$gen" ]; then
		[ -x "$native/leadsync" ] || build "$host" "$native"
		mkdir -p "$gen/man" "$gen/completions"
		"$native/leadsync" man "$gen/man"
		gzip -9n "$gen"/man/*.1
		"$native/leadsync" completion bash >"$gen/completions/leadsync.bash"
		"$native/leadsync" completion zsh >"$gen/completions/_leadsync"
		"$native/leadsync" completion fish >"$gen/completions/leadsync.fish"
	fi
	cp -r "$gen/man" "$gen/completions" "$stage/"

	# The packaged units run the packaged binary.
	mkdir -p "$stage/units"
	for unit in leadsync.service leadsync-once@.service; do
		sed 's|/usr/local/bin/leadsync|/usr/bin/leadsync|g' "systemd/$unit" >"$stage/units/$unit"
		grep -q '^ExecStart=/usr/bin/leadsync ' "$stage/units/$unit" ||
			die "systemd/$unit: no ExecStart=/usr/local/bin/leadsync to point at /usr/bin"
	done

	# The newest glibc symbol version the binary links against is the oldest glibc it runs on.
	libc=$(readelf --dyn-syms --wide "$stage/bin/leadsync" | grep -o 'GLIBC_[0-9][0-9.]*' |
		sed 's/GLIBC_//' | sort -uV | tail -n1)
	[ -n "$libc" ] || die "linux/$arch: no glibc symbol versions in leadsync"

	echo "dist: packaging leadsync_${debversion}_$arch.deb"
	(cd packaging && PKG_ARCH=$arch PKG_VERSION=$debversion PKG_STAGE=$stage PKG_LIBC=$libc \
		$GO tool nfpm package --config nfpm.yaml --packager deb --target "$dist/")
done

(cd "$dist" && sha256sum -- *.tar.gz *.deb >SHA256SUMS)
echo "dist: $DIST/"
(cd "$dist" && ls -l)
