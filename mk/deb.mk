# Native install: Debian packages, ARM tests under QEMU, and the packaged
# end-to-end test. Included from the top-level Makefile.
#
#   make deb       dist/smsgw_<version>_{amd64,arm64,armhf}.deb (nfpm)
#   make test-arm  unit tests of the bit-level packages for arm64 and ARMv6
#   make e2e-deb   install the amd64 package in a Debian container running
#                  systemd and prove delivery, restart, remove and purge

NFPM          ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
DIST          ?= dist
DEB_ARCHES    ?= amd64 arm64 armhf
# Debian versions start with a digit: a tag v1.2.3 gives 1.2.3 (1.2.3+4.gabc
# past it), an untagged tree 0.0.0+git<commit time>.<commit>.
DEB_VERSION   ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null); \
	if [ -n "$$v" ]; then echo "$${v\#v}" | sed 's/-\([0-9]*\)-g/+\1.g/'; \
	else echo "0.0.0+git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; fi)
# The debootstrap rootfs for e2e-deb is cached here (gitignored): only the
# first run downloads Debian packages.
DEB_CACHE     ?= .cache/deb
DEB_SUITE     ?= bookworm
DEB_MIRROR    ?= http://deb.debian.org/debian
DEB_ROOTFS    := $(DEB_CACHE)/$(DEB_SUITE)-minbase-systemd.tar
DEB_IMAGE     ?= smsgw-deb-rootfs:$(DEB_SUITE)
# Packages whose tests do bit-level or byte-order work (relative to services/modem),
# and those whose tests live in the itest module (relative to services/modem/itest).
ARM_TEST_PKGS       ?= ./internal/pdu/... ./internal/at/... ./internal/ledger/...
ARM_ITEST_TEST_PKGS ?= ./sender/...

.PHONY: deb $(addprefix deb-,$(DEB_ARCHES)) test-arm deb-rootfs e2e-deb

deb: $(addprefix deb-,$(DEB_ARCHES)) ## Debian packages for amd64, arm64 and armhf (ARMv6: every Pi) into dist/

# GOWORK=off, as in the images: each service's go.mod must stand alone.
$(addprefix deb-,$(DEB_ARCHES)): deb-%:
	@set -e; case $* in \
		amd64) goarch=amd64; goarm= ;; \
		arm64) goarch=arm64; goarm= ;; \
		armhf) goarch=arm; goarm=6 ;; \
		*) echo "unknown Debian architecture $*"; exit 2 ;; \
	esac; \
	bin='$(abspath $(DIST))/build/$*'; mkdir -p "$$bin"; \
	for svc in poller modem; do \
		( cd services/$$svc && GOWORK=off CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=$$goarm \
			$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o "$$bin/sms-$$svc" ./cmd/sms-$$svc ); \
	done; \
	out='$(DIST)/smsgw_$(DEB_VERSION)_$*.deb'; \
	sed "s|@DEB_BIN@|$$bin|" deploy/deb/nfpm.yaml > "$$bin/nfpm.yaml"; \
	DEB_ARCH=$* DEB_VERSION='$(DEB_VERSION)' \
		$(GO) run $(NFPM) package --config "$$bin/nfpm.yaml" --packager deb --target "$$out"; \
	echo "built $$out"

# go test -exec runs each test binary under user-mode QEMU; no binfmt_misc
# registration is needed. No -race: the race detector is amd64/arm64-only
# and not supported under QEMU. GOWORK=off, CGO_ENABLED=0 and -trimpath as
# in `make cross` and `make deb`, so the dependencies compiled there (the
# embedded nats-server above all) are reused from the build cache.
ARM_TEST_ENV := GOWORK=off CGO_ENABLED=0
test-arm: ## unit tests of pdu, at, ledger and sender for linux/arm64 and linux/arm/v6 under qemu-user-static
	@command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null || \
		{ echo "test-arm needs qemu-user-static (apt-get install qemu-user-static)"; exit 1; }
	cd services/modem && $(ARM_TEST_ENV) GOARCH=arm64 $(GO) test -trimpath -count=1 -exec qemu-aarch64-static $(ARM_TEST_PKGS)
	cd services/modem/itest && $(ARM_TEST_ENV) GOARCH=arm64 $(GO) test -trimpath -count=1 -exec qemu-aarch64-static $(ARM_ITEST_TEST_PKGS)
	cd services/modem && $(ARM_TEST_ENV) GOARCH=arm GOARM=6 $(GO) test -trimpath -count=1 -exec qemu-arm-static $(ARM_TEST_PKGS)
	cd services/modem/itest && $(ARM_TEST_ENV) GOARCH=arm GOARM=6 $(GO) test -trimpath -count=1 -exec qemu-arm-static $(ARM_ITEST_TEST_PKGS)

# The imported image outlives checkouts (CI clones afresh), so it is reused
# when present; to refresh it: docker image rm $(DEB_IMAGE), rm $(DEB_ROOTFS).
deb-rootfs: ## Debian rootfs with systemd for e2e-deb (debootstrap, cached in .cache/deb), imported as $(DEB_IMAGE)
	@if $(DOCKER) image inspect '$(DEB_IMAGE)' >/dev/null 2>&1; then echo "using image $(DEB_IMAGE)"; \
	else $(MAKE) --no-print-directory '$(DEB_ROOTFS)' && $(DOCKER) import '$(DEB_ROOTFS)' '$(DEB_IMAGE)'; fi

$(DEB_ROOTFS):
	@command -v debootstrap >/dev/null || { echo "deb-rootfs needs debootstrap (apt-get install debootstrap)"; exit 1; }
	@mkdir -p '$(DEB_CACHE)'
	rm -rf '$(DEB_CACHE)/rootfs'
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus '$(DEB_SUITE)' '$(DEB_CACHE)/rootfs' '$(DEB_MIRROR)'
	tar -C '$(DEB_CACHE)/rootfs' --numeric-owner -cf '$@.tmp' .
	rm -rf '$(DEB_CACHE)/rootfs'
	mv '$@.tmp' '$@'

e2e-deb: deb-amd64 deb-rootfs build ## install the amd64 .deb in a systemd container: delivery, kill+restart, remove, purge
	SMSGW_DEB='$(abspath $(DIST))/smsgw_$(DEB_VERSION)_amd64.deb' SMSGW_DEB_IMAGE='$(DEB_IMAGE)' \
		SMSGW_BIN='$(CURDIR)/bin' $(GO) test -count=1 -timeout 15m -tags e2edeb -run TestDeb -v ./services/devstack/e2e/...
