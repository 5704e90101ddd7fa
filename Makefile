# Watchpost. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
BIN         ?= bin
CLANG       ?= clang-19
STRIP       ?= llvm-strip-19
GOTESTFLAGS ?=
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/watchpost/watchpost/internal/version.Version=$(VERSION)
STATIC      := CGO_ENABLED=0
DATA        ?= /var/lib/watchpost
KERNEL      ?=
CMDS        := ./agent/cmd/... $(if $(wildcard collector/cmd),./collector/cmd/...)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_-]+:.*?## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

GO_NEED     := $(shell awk '$$1 == "go" { print $$2; exit }' go.mod)

# check-go stops early, saying what to do, when Go is missing or older than go.mod's.
.PHONY: check-go
check-go:
	@v=$$($(GO) version 2>/dev/null | awk '{print $$3}'); \
	if [ -z "$$v" ]; then echo "Go is not installed: sudo make go (installs go.mod's Go $(GO_NEED) into /usr/local/go)" >&2; exit 1; fi; \
	if [ "$$(printf '%s\n%s\n' "$${v#go}" "$(GO_NEED)" | sort -V | head -1)" != "$(GO_NEED)" ]; then \
		echo "$$v is older than go.mod's $(GO_NEED): sudo make go (installs it into /usr/local/go)" >&2; exit 1; fi

.PHONY: go
go: ## Install the Go toolchain go.mod needs into /usr/local/go, from the Go module proxy (root)
	@scripts/install-go.sh

.PHONY: deps
deps: ## Install the build and test tools from Debian and the Go proxy (root)
	@scripts/install-deps.sh

.PHONY: generate
generate: ## Regenerate bpf2go output, protobuf code and the event JSON encoder with the pinned tools
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) $(GO) generate ./agent/kernel/...
	$(GO) generate ./agent/event
	@if [ -x scripts/gen-proto.sh ]; then scripts/gen-proto.sh; fi

.PHONY: build
build: check-go ## Build the static agent, collector and CLI into bin/
	@mkdir -p $(BIN)
	@if [ ! -x $(BIN)/watchpost-agent ]; then echo "build: first build: Go downloads the modules it needs and compiles about 500 packages (about 2 minutes on 2 cores; later builds take seconds); packages are listed as they compile"; fi
	$(STATIC) $(GO) build $(if $(wildcard $(BIN)/watchpost-agent),,-v) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

.PHONY: build-arm64
build-arm64: ## Cross-build the static binaries for arm64
	@mkdir -p $(BIN)/arm64
	$(STATIC) GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/arm64/ $(CMDS)

REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
# Image and package timestamps: the commit's time, so rebuilds are identical.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

.PHONY: image
image: build build-arm64 ## OCI images (agent, collector; amd64 + arm64 index) as layouts and archives in $(BIN)/image/
	$(GO) run ./deploy/cmd/wpimage -bin $(BIN) -out $(BIN)/image -version $(VERSION) -revision '$(REVISION)' -created $(SOURCE_DATE_EPOCH)

.PHONY: package
package: build build-arm64 ## Debian packages (watchpost-agent, watchpost-collector; amd64, arm64) in $(BIN)/packages/
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./deploy/cmd/wppackage -bin $(BIN) -out $(BIN)/packages -version $(VERSION) deploy/package/*.nfpm.yaml

.PHONY: run
run: build ## Build and start Watchpost on this host (root): events stream to the terminal; Ctrl-C stops it
	@$(GO) build -o $(BIN)/tools/foreground ./scripts/foreground
	@$(BIN)/tools/foreground scripts/run.sh

.PHONY: run-fleet
run-fleet: build ## Fleet mode on loopback (no root): PostgreSQL, 3-node JetStream, 2 collectors, a writer, simulated agents
	$(GO) run ./scripts/runfleet

.PHONY: bench-fleet
bench-fleet: build ## Fleet benchmark, 1000 simulated agents (AGENTS, RATE, PHASE); rewrites docs/benchmarks-fleet.md
	flock /tmp/wp-heavy.lock $(GO) run ./scripts/fleetbench -agents $(or $(AGENTS),1000) -rate $(or $(RATE),25) -phase $(or $(PHASE),30s) -out docs/benchmarks-fleet.md

.PHONY: test
test: check-go ## Run every test: unit, and privileged ones against this kernel (root)
	@scripts/test.sh

.PHONY: test-unit
test-unit: ## Run the unit tests only (no privileges)
	$(GO) test $(GOTESTFLAGS) ./...

.PHONY: screenshots
screenshots: ## Rewrite docs/dashboard/*.png from the dashboard's browser test (root, Chromium)
	@scripts/install-browser.sh
	WATCHPOST_SCREENSHOTS=docs $(GO) test -count=1 -run 'TestDashboardInBrowser|TestPoliciesInBrowser' ./collector/web/

.PHONY: vmtest
vmtest: ## Run the privileged tests on a matrix of kernels under qemu (KERNEL=6.1 for one)
	@vmtests/run.sh $(KERNEL)

.PHONY: bench
bench: build ## Run the benchmarks and rewrite docs/benchmarks.md
	@scripts/bench.sh

.PHONY: bench-before
bench-before: build ## This build's capture cost against an earlier revision's, in one run (REV=commit); rewrites docs/benchmarks-before.md
	@test -n "$(REV)" || { echo "bench-before: say which revision, e.g. make bench-before REV=HEAD~10" >&2; exit 2; }
	@scripts/bench-before.sh $(REV)

.PHONY: soak
soak: build ## Soak test, not in CI: real collector and shipper with spool (DURATION=10m RATE=2000 INTERVAL=60s)
	@scripts/soak.sh $(or $(DURATION),10m) $(or $(RATE),2000) $(or $(INTERVAL),60s)

.PHONY: fuzz
fuzz: ## Run every fuzz target briefly (FUZZTIME=10s each)
	@scripts/fuzz.sh

.PHONY: lint
lint: ## go vet, gofmt, and the arm64 build
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...
	$(STATIC) GOARCH=arm64 $(GO) build ./...

.PHONY: manifests
manifests: ## Render the Helm chart into deploy/kubernetes/ (plain manifests)
	$(GO) test ./deploy/helm -run '^TestPlainManifestsAreRendered$$' -count=1 -args -update

.PHONY: helm-lint
helm-lint: ## helm lint --strict the chart with every values file in its ci/ (helm built from Go modules)
	@for f in deploy/helm/watchpost/ci/*-values.yaml; do \
		$(GO) tool helm lint --strict deploy/helm/watchpost -f $$f --kube-version 1.33.0 || exit 1; \
	done

.PHONY: check-generated
check-generated: generate manifests ## Regenerate everything and fail if the committed output differs
	@$(CLANG) --version | head -1; dpkg-query -W -f='$${Package} $${Version}\n' libbpf-dev 2>/dev/null || true
	git diff --exit-code -- proto 'agent/kernel/*.go' agent/event/json_gen.go deploy/kubernetes
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && args=() && \
	for o in agent/kernel/wp_*_bpfel.o; do \
		git show "HEAD:$$o" >"$$tmp/$${o##*/}" && args+=("$$tmp/$${o##*/}" "$$o"); \
	done && $(GO) run ./scripts/objcmp "$${args[@]}"

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
