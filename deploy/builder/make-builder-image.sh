#!/bin/sh
# make-builder-image.sh IMAGE [GOROOT]
#
# Builds a Go builder image from the Go toolchain installed on this host and
# `docker import`s it as IMAGE (default smsgw-builder:local). It exists for
# machines that cannot pull from any registry (CI here): the Dockerfiles'
# build stage is `FROM ${BUILDER_IMAGE}`, and pointing BUILDER_IMAGE at this
# image lets `docker build` run with no pull at all, because every other
# stage is `FROM scratch`.
#
# The image holds only what the build stage's RUN lines use: the Go toolchain
# at /usr/local/go (the official golang image's layout), /bin/sh plus the
# shared libraries it links (the RUN lines need a shell to map TARGETARCH and
# TARGETVARIANT to GOARCH/GOARM), the host's CA bundle (go mod download talks
# HTTPS to the module proxy) and a world-writable /tmp. No git: modules come
# from GOPROXY, never from VCS.
#
# It is idempotent: when IMAGE already carries the same Go version label it
# does nothing.
set -eu

image=${1:-smsgw-builder:local}
goroot=${2:-$(go env GOROOT)}
gover=$("$goroot/bin/go" env GOVERSION)

have=$(docker image inspect -f '{{index .Config.Labels "org.golang.version"}}' "$image" 2>/dev/null || true)
if [ "$have" = "$gover" ]; then
	echo "$image is up to date ($gover)"
	exit 0
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM

mkdir -p "$stage/bin" "$stage/tmp" "$stage/root" "$stage/go" "$stage/etc/ssl/certs"
chmod 1777 "$stage/tmp"

sh=$(readlink -f /bin/sh)
cp "$sh" "$stage/bin/sh"
# ldd prints "not a dynamic executable" (exit 1) for a static shell; then
# there is nothing to copy.
for lib in $(ldd "$sh" 2>/dev/null | grep -o '/[^ ]*' || true); do
	cp -L --parents "$lib" "$stage"
done

for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
	if [ -f "$ca" ]; then
		cp -L "$ca" "$stage/etc/ssl/certs/ca-certificates.crt"
		break
	fi
done

base=$(basename "$goroot")
echo "importing $goroot ($gover) as $image ..."
# One tar stream for both trees: --transform moves the toolchain to
# usr/local/go whatever the host calls it; the staging members all start
# with "./", so the pattern cannot touch them. test/ and doc/ are never read
# by `go build`.
tar -c -f - --numeric-owner --owner=0 --group=0 \
	--exclude="$base/test" --exclude="$base/doc" \
	--transform "s,^$base,usr/local/go," \
	-C "$stage" . \
	-C "$(dirname "$goroot")" "$base" |
	docker import \
		--change 'ENV PATH=/usr/local/go/bin:/go/bin:/bin' \
		--change 'ENV GOPATH=/go HOME=/root GOTOOLCHAIN=local' \
		--change "LABEL org.golang.version=$gover" \
		--change 'LABEL org.opencontainers.image.description="Go builder made from the host toolchain by deploy/builder/make-builder-image.sh"' \
		--change 'WORKDIR /' \
		--change 'CMD ["/bin/sh"]' \
		- "$image"
