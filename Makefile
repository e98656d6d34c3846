# SMS gateway: build, test, lint, demo and benchmarks.
# Everything runs from a fresh clone with only Go (and Docker for the image
# targets) installed; tools are fetched through the Go module proxy.

SHELL        := /bin/bash
GO           ?= go
VERSION      ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
REVISION     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE   ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
CLI_PKG      := github.com/sensorsreport/smsgw/shared/cli
LDFLAGS      := -s -w -X $(CLI_PKG).Version=$(VERSION) -X $(CLI_PKG).Commit=$(REVISION) -X $(CLI_PKG).BuildDate=$(BUILD_DATE)
# services/<svc>/itest is a module of its own: the service's tests that use
# devstack's stand-ins, kept out of the service's go.mod (and so out of the
# image's module download). ./services/<svc>/... stops at that nested module,
# so it is listed on its own.
PKGS         := ./shared/... ./services/poller/... ./services/poller/itest/... \
                ./services/modem/... ./services/modem/itest/... ./services/devstack/...
MODULES      := shared services/poller services/poller/itest services/modem services/modem/itest services/devstack
STATICCHECK  := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOTESTFLAGS  ?= -race -count=1 -timeout 20m

.PHONY: all build test unit e2e e2e-docker lint fmt vet staticcheck tidy-check demo bench clean help

all: build

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# Static binaries, exactly as the images ship them (and as make bench measures).
build: export CGO_ENABLED = 0
build: ## build sms-poller, sms-modem and devstack into bin/
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sms-poller ./services/poller/cmd/sms-poller
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sms-modem ./services/modem/cmd/sms-modem
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/devstack ./services/devstack/cmd/devstack

test: unit e2e ## all tests under -race: unit, contract, simulator, fuzz seed corpora, end to end

unit: ## unit, contract and integration tests (fuzz seed corpora included), -race
	$(GO) test $(GOTESTFLAGS) $(PKGS)

e2e: build ## end-to-end tests: real binaries against the stand-ins
	SMSGW_BIN=$(CURDIR)/bin $(GO) test $(GOTESTFLAGS) -tags e2e ./services/devstack/e2e/...

e2e-docker: images ## build the images (no registry needed), run the compose demo profile, restart and kill containers mid-stream
	$(GO) test -count=1 -timeout 20m -tags e2edocker -run TestCompose ./services/devstack/e2e/...

lint: fmt vet staticcheck tidy-check ## gofmt, go vet, staticcheck, GOWORK=off builds

fmt:
	@out=$$(gofmt -l shared services); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

tidy-check: ## every module must build on its own (the Docker build uses GOWORK=off)
	@for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet ./...) || exit 1; done

demo: build ## run the whole gateway on the built-in stand-ins and watch SMS flow
	./bin/devstack demo --bin ./bin

bench: build ## measure overhead, utilisation, latency and footprint (BENCH_QUICK=1 for a short run)
	./bin/devstack bench --bin ./bin --out bench/results

clean:
	rm -rf bin .demo dist

-include mk/docker.mk
-include mk/deb.mk
