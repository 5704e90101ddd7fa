#!/usr/bin/env bash
# Installs the tools that regenerate code (clang, llvm, bpftool, protoc and
# the pinned protoc plugins) and the daemons the fleet-mode tests start on
# loopback: Debian's PostgreSQL 15 server (never started as a system
# service: the tests initdb a private directory) and nats-server, built from
# its Go module into the user's cache directory. Building and the unit tests
# need only Go: generated code is committed.
set -euo pipefail
need=()
for p in clang-19 llvm-19 libbpf-dev bpftool protobuf-compiler postgresql-15; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Debian's package starts a "main" cluster; the tests use their own servers.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q ' online '; then
	echo "install-deps: note: a system PostgreSQL cluster is running; the tests do not use it"
fi

# nats-server for the JetStream fault tests and `make run-fleet`; the tests
# build it themselves when it is missing (internal/services.NATSServerBinary).
nats_version=v2.15.2
nats_dir="${XDG_CACHE_HOME:-$HOME/.cache}/watchpost/nats-server-$nats_version"
if [ ! -x "$nats_dir/nats-server" ]; then
	echo "install-deps: building nats-server $nats_version into $nats_dir"
	(cd "$(mktemp -d)" && GOBIN="$nats_dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install "github.com/nats-io/nats-server/v2@$nats_version")
fi
