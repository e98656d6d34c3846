# Container images, cross-compiled binaries and compose checks.
# Included from the top-level Makefile; also usable on its own:
#   make -f mk/docker.mk images image-sizes
#
# Works on a machine with no container registry: `images` builds the build
# stage from smsgw-builder:local, an image made from the installed Go
# toolchain (`builder-image`), and every final stage is FROM scratch.
# Set BUILDER_IMAGE=golang:1.26-bookworm to use the official image instead.

DOCKER                  ?= docker
GO                      ?= go
VERSION                 ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
REVISION                ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE              ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE_PREFIX            ?= smsgw
IMAGE_TAG               ?= latest
LOCAL_BUILDER_IMAGE     ?= smsgw-builder:local
BUILDER_IMAGE           ?= $(LOCAL_BUILDER_IMAGE)
DOCKER_BUILD_FLAGS      ?=
# Multi-arch images need buildx and a builder image for every platform, so
# they use the official Go image (and a registry to pull it from).
PLATFORMS               ?= linux/arm64,linux/arm/v7
MULTIARCH_BUILDER_IMAGE ?= golang:1.26-bookworm
MULTIARCH_FLAGS         ?=
IMAGE_MAX_MB            ?= 25
CROSS_DIR               ?= bin/cross
# linux-<name>: arm64 (Pi 3/4/5, 64-bit OS), armv7 (32-bit OS on Pi 2/3/4),
# armv6 (Pi Zero/1).
CROSS_TARGETS           ?= arm64 armv7 armv6
# The Docker build uses GOWORK=off, so cross does too: it proves each
# service's go.mod is complete on its own.
CROSS_GOWORK            ?= off

ifeq ($(origin COMPOSE),undefined)
COMPOSE := $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo "$(DOCKER) compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
endif

DOCKER_LDFLAGS = -s -w -X github.com/sensorsreport/smsgw/shared/cli.Version=$(VERSION) \
	-X github.com/sensorsreport/smsgw/shared/cli.Commit=$(REVISION) -X github.com/sensorsreport/smsgw/shared/cli.BuildDate=$(BUILD_DATE)

IMAGE_NAME_poller   := sms-poller
IMAGE_NAME_modem    := sms-modem
IMAGE_NAME_devstack := devstack
IMAGE_TARGETS       := image-poller image-modem image-devstack
# Only the local builder image has to be made first.
IMAGE_DEPS := $(if $(filter $(LOCAL_BUILDER_IMAGE),$(BUILDER_IMAGE)),builder-image)

.PHONY: builder-image images $(IMAGE_TARGETS) images-multiarch cross image-sizes compose-config

builder-image: ## local Go builder image from the installed toolchain (no registry)
	@sh deploy/builder/make-builder-image.sh '$(LOCAL_BUILDER_IMAGE)' "$$($(GO) env GOROOT)"

images: $(IMAGE_TARGETS) ## build the sms-poller, sms-modem and devstack images for this machine

$(IMAGE_TARGETS): image-%: $(IMAGE_DEPS)
	$(DOCKER) build --force-rm -f Dockerfile.$* \
		--build-arg BUILDER_IMAGE='$(BUILDER_IMAGE)' \
		--build-arg VERSION='$(VERSION)' \
		--build-arg REVISION='$(REVISION)' \
		--build-arg BUILD_DATE='$(BUILD_DATE)' \
		$(DOCKER_BUILD_FLAGS) \
		-t '$(IMAGE_PREFIX)/$(IMAGE_NAME_$*):$(IMAGE_TAG)' .

images-multiarch: ## poller+modem images for PLATFORMS with buildx (MULTIARCH_FLAGS=--push publishes)
	@if $(DOCKER) buildx version >/dev/null 2>&1; then run=; else \
		echo "docker buildx is not installed: nothing built. With buildx this target runs:"; run=echo; fi; \
	for svc in poller modem; do \
		$$run $(DOCKER) buildx build --platform '$(PLATFORMS)' -f Dockerfile.$$svc \
			--build-arg BUILDER_IMAGE='$(MULTIARCH_BUILDER_IMAGE)' \
			--build-arg VERSION='$(VERSION)' --build-arg REVISION='$(REVISION)' --build-arg BUILD_DATE='$(BUILD_DATE)' \
			-t "$(IMAGE_PREFIX)/sms-$$svc:$(IMAGE_TAG)" $(MULTIARCH_FLAGS) . || exit 1; \
	done

cross: ## GOWORK=off arm64/armv7/armv6 builds of sms-poller and sms-modem into bin/cross/
	@set -e; for t in $(CROSS_TARGETS); do \
		case $$t in \
			arm64) arch=arm64; arm= ;; \
			armv7) arch=arm; arm=7 ;; \
			armv6) arch=arm; arm=6 ;; \
			*) echo "unknown cross target $$t (arm64, armv7, armv6)"; exit 2 ;; \
		esac; \
		for svc in poller modem; do \
			out='$(abspath $(CROSS_DIR))'/linux-$$t/sms-$$svc; \
			echo "GOOS=linux GOARCH=$$arch$${arm:+ GOARM=$$arm} -> $$out"; \
			( cd services/$$svc && GOWORK='$(CROSS_GOWORK)' CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm \
				$(GO) build -trimpath -ldflags '$(DOCKER_LDFLAGS)' -o "$$out" ./cmd/sms-$$svc ); \
		done; \
	done

image-sizes: ## print image sizes; fail if sms-poller or sms-modem is over IMAGE_MAX_MB (25)
	@fail=0; for name in sms-poller sms-modem devstack; do \
		img='$(IMAGE_PREFIX)/'$$name':$(IMAGE_TAG)'; \
		if ! size=$$($(DOCKER) image inspect -f '{{.Size}}' "$$img" 2>/dev/null); then \
			printf '%-28s missing\n' "$$img"; \
			[ $$name = devstack ] || fail=1; continue; \
		fi; \
		mb=$$(awk -v s="$$size" 'BEGIN { printf "%.1f", s / 1000000 }'); \
		verdict=; if [ $$name != devstack ] && [ "$$size" -ge $$(( $(IMAGE_MAX_MB) * 1000000 )) ]; then \
			verdict="  OVER $(IMAGE_MAX_MB) MB"; fail=1; fi; \
		printf '%-28s %6s MB%s\n' "$$img" "$$mb" "$$verdict"; \
	done; exit $$fail

# The secret file of .env.example does not exist in a checkout; the demo's does.
COMPOSE_CHECK_ENV := NATS_PASSWORD_HOST_FILE=./deploy/demo-nats-password

compose-config: ## validate docker-compose.yml and its variants (base, demo, hot-plug, legacy, privileged, second modem, TLS broker, modem-only Pi, balena)
	@test -n '$(COMPOSE)' || { echo "neither 'docker compose' nor docker-compose found"; exit 1; }
	$(COMPOSE_CHECK_ENV) $(COMPOSE) --env-file .env.example config -q
	$(COMPOSE) --env-file deploy/demo.env --profile demo config -q
	$(COMPOSE_CHECK_ENV) MODEM_HOST_DEVICE=/dev/null MODEM_DEVICE=/host/dev/sms-modem \
		$(COMPOSE) --env-file .env.example -f docker-compose.yml -f deploy/docker-compose.hotplug.yml config -q
	$(COMPOSE_CHECK_ENV) CONFIG_INI=./deploy/config.ini.example \
		$(COMPOSE) --env-file .env.example -f docker-compose.yml -f deploy/docker-compose.legacy.yml config -q
	$(COMPOSE_CHECK_ENV) $(COMPOSE) --env-file .env.example -f docker-compose.yml -f deploy/docker-compose.privileged.yml config -q
	$(COMPOSE_CHECK_ENV) $(COMPOSE) --env-file .env.example --profile modem2 config -q
	$(COMPOSE_CHECK_ENV) $(COMPOSE) --env-file .env.example --profile modem2 -f docker-compose.yml -f deploy/docker-compose.tls.yml config -q
	$(COMPOSE_CHECK_ENV) POLLER_PI_ADDRESS=192.0.2.10 $(COMPOSE) --env-file .env.example -f docker-compose.yml -f deploy/docker-compose.remote-modem.yml config -q
	$(COMPOSE) --project-directory . -f deploy/balena/docker-compose.yml config -q
