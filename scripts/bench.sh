#!/usr/bin/env bash
# `make bench` (after `make build`): runs the benchmarks side by side with
# auditd and bpftrace and rewrites docs/benchmarks.md. Short version by
# default (under 10 minutes); --full for the long one. Needs root.
#
#   scripts/bench.sh [--full] [extra wpbench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel-fs.sh
if [ "$(id -u)" != 0 ]; then
	echo "bench: loads BPF programs, audit rules and bpftrace: run as root (sudo make bench)" >&2
	exit 1
fi
for tool in go gcc; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is needed (the workloads are compiled at run time)" >&2; exit 1; }
done
mode=(-short)
if [ "${1:-}" = "--full" ]; then
	mode=()
	shift
fi
wp_mount_kernel_fs
tmp=$(mktemp -d)
trap 'wp_unmount_kernel_fs; rm -rf "$tmp"' EXIT
go build -o "$tmp/wpbench" ./scripts/bench/wpbench
"$tmp/wpbench" "${mode[@]}" -bin "${BIN:-bin}" -doc docs/benchmarks.md "$@"
