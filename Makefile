# Takt: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
GO ?= go
# Every module of the workspace, in go.work order.
MODULES = $(shell $(GO) list -m -f '{{.Dir}}')
TEST_TIMEOUT ?= 20m
# make test fuzzes every target for this many inputs (a count, not a time: a time-bound
# run can end in "context deadline exceeded" while a worker is busy); make fuzz, FUZZTIME.
TEST_FUZZTIME ?= 500x

.PHONY: all deps build vet test bench fuzz demo tidy package image

all: build

deps:
	@./scripts/ensure-deps.sh

build:
	@set -e; for d in $(MODULES); do echo "== build $$(basename $$d)"; (cd $$d && $(GO) build ./... && GOWORK=off $(GO) build ./...); done

vet:
	@set -e; for d in $(MODULES); do echo "== vet $$(basename $$d)"; (cd $$d && $(GO) vet ./...); done

# Every module's tests, with the race detector, against real servers that the tests
# start privately (see testkit/).
test: deps build vet
	@set -e; for d in $(MODULES); do echo "== test $$(basename $$d)"; (cd $$d && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...); done
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

# The Debian packages (takt-agent, takt-services) for amd64, arm64 and armhf, into dist/.
VERSION ?= 0.1.0
package:
	@cd packaging && $(GO) run ./cmd/takt-package -version $(VERSION) -out ../dist

# The services' container image for amd64, arm64 and armhf, as an OCI layout in
# dist/takt-services.oci (no container daemon needed; see deploy/kubernetes/README.md).
image:
	@cd packaging && $(GO) run ./cmd/takt-package image -version $(VERSION) -out ../dist/takt-services.oci

# Benchmarks; prints `BENCH <name> <value> <unit>` lines (full output on stderr).
bench: deps
	@./scripts/bench.sh

# A run of every fuzz target, FUZZTIME each (make test runs each for TEST_FUZZTIME).
FUZZTIME ?= 30s
FUZZ_TARGETS = schemas:.:FuzzDecode schemas:.:FuzzFastPathAgrees schemas:.:FuzzParseTimestamp schemas:.:FuzzDecodeStatus schemas:.:FuzzParseTopic \
	edge-agent:./internal/config:FuzzParse edge-agent:./internal/buffer:FuzzRecoverSegment \
	edge-agent:./internal/buffer:FuzzRecoverHead edge-agent:./internal/opcua:FuzzDataValue \
	edge-agent:./internal/modbus:FuzzDecode \
	plant:./oee:FuzzComputeNanoseconds api:./internal/server:FuzzParameters api:./internal/server:FuzzBodies
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do mod=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; fn=$${rest#*:}; \
		echo "== fuzz $$mod $$pkg $$fn"; (cd $$mod && $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg); done

# The pipeline with embedded defaults; Ctrl-C stops it.
demo: deps
	@mkdir -p bin
	$(GO) build -o bin/ ./testkit/cmd/takt-demo ./edge-agent/cmd/plcsim ./edge-agent/cmd/takt-agent ./ingest/cmd/takt-ingest ./aggregator/cmd/takt-aggregator ./api/cmd/takt-api
	@./bin/takt-demo -bin ./bin

tidy:
	@set -e; for d in $(MODULES); do (cd $$d && GOWORK=off $(GO) mod tidy); done
