#!/usr/bin/env bash
# Regenerate the protobuf and gRPC Go code under proto/ with the pinned
# generators. Idempotent: CI runs it and diffs the output.
set -euo pipefail

PROTOC_VERSION="3.21.12"
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"

cd "$(dirname "$0")/.."
GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH"

if ! command -v protoc >/dev/null; then
	echo "gen-proto: protoc missing: apt-get install protobuf-compiler" >&2
	exit 1
fi
have="$(protoc --version | awk '{print $2}')"
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "gen-proto: protoc $have found, $PROTOC_VERSION required" >&2
	exit 1
fi

# plugin_version prints the version a plugin reports, or nothing.
plugin_version() { "$1" --version 2>/dev/null | awk '{print $NF}'; }

if [ "$(plugin_version protoc-gen-go)" != "$PROTOC_GEN_GO_VERSION" ]; then
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [ "$(plugin_version protoc-gen-go-grpc)" != "${PROTOC_GEN_GO_GRPC_VERSION#v}" ] &&
	[ "$(plugin_version protoc-gen-go-grpc)" != "$PROTOC_GEN_GO_GRPC_VERSION" ]; then
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

rm -f proto/watchpost/v1/*.pb.go
protoc -I proto \
	--go_out=proto --go_opt=paths=source_relative \
	--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	proto/watchpost/v1/*.proto
echo "gen-proto: regenerated proto/watchpost/v1"
