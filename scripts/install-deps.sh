#!/usr/bin/env bash
# Installs the tools that regenerate code (clang, llvm, bpftool, protoc and
# the pinned protoc plugins). Building and testing need only Go: generated
# code is committed.
set -euo pipefail
need=()
for p in clang-19 llvm-19 libbpf-dev bpftool protobuf-compiler; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
