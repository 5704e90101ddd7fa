#!/usr/bin/env bash
# Runs the privileged Go tests inside a matrix of Debian kernels under qemu.
#
#   vmtests/run.sh [flags] [KERNEL...]     e.g. vmtests/run.sh 6.1; no KERNEL runs all
#   vmtests/run.sh -h                      lists the flags
#
# VMTEST_PACKAGES picks the Go packages whose tests run in the guests: by default the
# agent's kernel-facing packages (the spool and shipper are user-space transport, with
# timing-heavy fault tests that run on the host); the runner's own smoke test,
# ./vmtests/selftest, always runs first.
# WATCHPOST_VMTEST_CACHE (default vmtests/.cache) holds kernels, builds and results:
# results/<kernel>.log, results/<kernel>.console.log and results/summary.md.
# See docs/vmtests.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VMTEST_PACKAGES="${VMTEST_PACKAGES:-./agent/kernel ./agent/pipeline ./agent/proctable ./agent/app ./agent/cmd/... ./agent/config ./agent/industrial ./agent/metrics}"

die() { echo "vmtests/run.sh: $*" >&2; exit 1; }

# Debian packages the runner needs: command -> package.
declare -A NEED=(
	[qemu-system-x86_64]=qemu-system-x86
	[timeout]=coreutils
	[dpkg-deb]=dpkg
	[apt-get]=apt
	[zstd]=zstd
	[lz4]=lz4
	[xz]=xz-utils
	[gzip]=gzip
	[bzip2]=bzip2
)
missing=()
for cmd in "${!NEED[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# The guest needs a static busybox; Debian's "busybox" package is dynamic.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
	missing+=(busybox-static)
fi
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root to install them, or apt-get install them)"
	command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get: this runner needs a Debian host"
	echo "vmtests/run.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}"; } ||
		die "apt-get install ${missing[*]} failed"
fi
command -v go >/dev/null 2>&1 || die "go is not on PATH"

cache="${WATCHPOST_VMTEST_CACHE:-vmtests/.cache}"
mkdir -p "$cache"
go build -o "$cache/vmrun" ./vmtests/cmd/vmrun || die "building vmtests/cmd/vmrun failed"
exec "$cache/vmrun" -packages "$VMTEST_PACKAGES" "$@"
