#!/usr/bin/env bash
# The README's test command (`sudo make test`): unit tests, and as root the
# privileged tests that load Watchpost's programs into this kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kernel-fs.sh

if ! command -v go >/dev/null; then
	echo "test: Go is not installed: sudo make go (installs the Go that go.mod names)" >&2
	exit 1
fi

if [ "$(id -u)" = 0 ]; then
	export WATCHPOST_REQUIRE_PRIVILEGED=1
	# The dashboard's browser test drives Debian's Chromium.
	if [ -x scripts/install-browser.sh ]; then scripts/install-browser.sh; fi
	wp_mount_kernel_fs
	trap wp_unmount_kernel_fs EXIT
else
	echo "test: not root: privileged tests will be skipped (run: sudo make test)" >&2
fi
# The fleet tests start a private PostgreSQL and nats-server processes on
# loopback (internal/services); as root they must run, not skip.
if [ -z "$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null)" ]; then
	echo "test: PostgreSQL server missing: the PostgreSQL store and fleet tests need it (scripts/install-deps.sh installs postgresql-15)" >&2
fi

# Packages run one at a time: privileged tests attach to the same kernel
# hooks and count host-wide events; running them in parallel only adds noise.
go test -count=1 -p 1 -timeout 20m ${GOTESTFLAGS:-} ./...
