#!/usr/bin/env bash
# What a change costs the host, as ratios within one run: builds the agent
# of an earlier revision beside this tree's (make build) and runs the
# overhead phase of wpbench with both, interleaved in the same rounds, into
# docs/benchmarks-before.md. Needs root, go, gcc and git.
#
#   scripts/bench-before.sh REV [extra wpbench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel-fs.sh
if [ $# -lt 1 ]; then
	echo "usage: scripts/bench-before.sh REV [wpbench flags]   (REV: the earlier revision, e.g. a commit)" >&2
	exit 2
fi
rev=$1
shift
if [ "$(id -u)" != 0 ]; then
	echo "bench-before: loads BPF programs: run as root" >&2
	exit 1
fi
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "bench-before: $rev is not a revision of this repository" >&2; exit 2; }
short=$(git rev-parse --short "$commit")
wp_mount_kernel_fs
tmp=$(mktemp -d)
cleanup() {
	git worktree remove --force "$tmp/src" 2>/dev/null || true
	wp_unmount_kernel_fs
	rm -rf "$tmp"
}
trap cleanup EXIT
make build
git worktree add --detach --quiet "$tmp/src" "$commit"
echo "bench-before: building the agent at $short"
(cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$tmp/bin/" ./agent/cmd/watchpost-agent)
go build -o "$tmp/wpbench" ./scripts/bench/wpbench
"$tmp/wpbench" -short -phases overhead \
	-conditions none,watchpost-full,before-full,watchpost-default,before-default,control \
	-bin "${BIN:-bin}" -before "$tmp/bin" -via "scripts/bench-before.sh $short" \
	-doc docs/benchmarks-before.md "$@"
