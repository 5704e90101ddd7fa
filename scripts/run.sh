#!/usr/bin/env bash
# The README's run command (`sudo make run`): starts the agent on this host
# and streams its events to the terminal as JSON lines until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel-fs.sh
if [ "$(id -u)" != 0 ]; then
	echo "run: the agent loads BPF programs: run as root (sudo make run)" >&2
	exit 1
fi
wp_mount_kernel_fs
trap wp_unmount_kernel_fs EXIT
echo "run: watchpost-agent is starting; type commands in another shell to see their events (Ctrl-C stops)" >&2
bin/watchpost-agent --output stdout "$@"
