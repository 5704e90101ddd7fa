#!/usr/bin/env bash
# Installs the Go toolchain that go.mod asks for (its `go` line) on a
# Debian machine that has an older Go or none: `sudo make go`.
#
# Debian bookworm ships Go 1.19, too old to build Watchpost and too old to
# switch toolchains by itself (GOTOOLCHAIN came with 1.21). This script uses
# whatever Go is there (installing Debian's golang-go when there is none)
# only as a download client: `go mod download golang.org/toolchain@...`
# fetches the official release from the Go module proxy, verified against
# the checksum database, exactly as newer Go versions fetch toolchains. The
# release is copied to $PREFIX/go (default /usr/local/go) and linked as
# $PREFIX/bin/go, which comes before /usr/bin in Debian's PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
armv7l | armv6l) arch=armv6l ;;
*) echo "install-go: no Go release for $(uname -m)" >&2; exit 1 ;;
esac

have() { "$1" env GOVERSION 2>/dev/null || "$1" version 2>/dev/null | awk '{print $3}'; }
# newer: whether Go version $1 (go1.26.8) is at least $2 (1.26.8).
newer() { [ "$(printf '%s\n%s\n' "${1#go}" "$2" | sort -V | head -1)" = "$2" ]; }

for g in "$PREFIX/go/bin/go" "$(command -v go || true)"; do
	if [ -n "$g" ] && [ -x "$g" ] && v=$(have "$g") && newer "$v" "$want"; then
		echo "install-go: $g is $v, go.mod needs $want: nothing to do"
		exit 0
	fi
done
if [ "$(id -u)" != 0 ] && [ ! -w "$PREFIX" ]; then
	echo "install-go: installing into $PREFIX needs root (sudo make go)" >&2
	exit 1
fi

boot=$(command -v go || true)
if [ -z "$boot" ]; then
	echo "install-go: no Go at all: installing Debian's golang-go (Go $(apt-cache policy golang-go 2>/dev/null | awk '/Candidate/ {print $2}')) to download the toolchain with"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends golang-go ca-certificates >/dev/null
	boot=$(command -v go)
fi
mod="golang.org/toolchain@v0.0.1-go$want.linux-$arch"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
echo "install-go: downloading Go $want for linux/$arch (about 70 MB) with $boot ($(have "$boot"))"
dir=$(cd "$tmp" && GOPATH="$tmp/gopath" GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw GO111MODULE=on GOTOOLCHAIN=local \
	"$boot" mod download -json "$mod" | awk -F'"' '$2 == "Dir" { print $4 }')
if [ -z "$dir" ] || [ ! -f "$dir/bin/go" ]; then
	echo "install-go: the download of $mod failed" >&2
	exit 1
fi
if [ -e "$PREFIX/go" ]; then
	old="$PREFIX/go.$(have "$PREFIX/go/bin/go" || echo old)"
	echo "install-go: keeping the previous $PREFIX/go as $old"
	rm -rf "$old"
	mv "$PREFIX/go" "$old"
fi
mkdir -p "$PREFIX/bin"
cp -a "$dir" "$PREFIX/go"
# Module zips keep no file modes: the programs are made executable again,
# as the go command does when it switches toolchains.
chmod -R a+rX,u+w "$PREFIX/go"
find "$PREFIX/go/bin" "$PREFIX/go/pkg/tool" -type f -exec chmod a+x {} +
ln -sfn "$PREFIX/go/bin/go" "$PREFIX/bin/go"
ln -sfn "$PREFIX/go/bin/gofmt" "$PREFIX/bin/gofmt"
echo "install-go: installed $("$PREFIX/go/bin/go" version | awk '{print $3}') in $PREFIX/go ($PREFIX/bin/go links to it)"
