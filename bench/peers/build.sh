#!/usr/bin/env bash
# Builds the bench's peers into DIR from their Go modules: Traefik (its rateLimit middleware is
# built in) and Caddy with github.com/mholt/caddy-ratelimit (through xcaddy).
#
#   bench/peers/build.sh DIR [traefik] [caddy]     (both when neither is named)
#
# Then: go run ./bench -traefik DIR/traefik -caddy DIR/caddy (or put DIR on PATH).
# Each build takes several minutes and a few GB of module cache; it needs the Go module proxy.
set -euo pipefail

TRAEFIK_VERSION=v3.6.12
CADDY_VERSION=v2.11.9
XCADDY_VERSION=v0.4.5
RATELIMIT_VERSION=v0.1.0 # the newest caddy-ratelimit the module proxy serves as a version

if [ $# -lt 1 ]; then
	echo "usage: $0 DIR [traefik] [caddy]" >&2
	exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift
which=("$@")
if [ ${#which[@]} -eq 0 ]; then which=(traefik caddy); fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" # outside any module: nothing here touches a go.mod

build_traefik() {
	# `go install …@version` refuses Traefik: its go.mod has replace directives. So: the
	# module's source from the module cache, copied where it can be written, built there.
	local src
	src=$(go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ]; then
		echo "go mod download gave no directory for traefik $TRAEFIK_VERSION" >&2
		exit 1
	fi
	cp -r "$src" "$work/traefik"
	chmod -R u+w "$work/traefik"
	(cd "$work/traefik" && go build -trimpath \
		-ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
		-o "$dir/traefik" ./cmd/traefik)
	"$dir/traefik" version
}

build_caddy() {
	GOBIN="$work/bin" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
	"$work/bin/xcaddy" build "$CADDY_VERSION" \
		--with "github.com/mholt/caddy-ratelimit@$RATELIMIT_VERSION" \
		--output "$dir/caddy"
	"$dir/caddy" version
	if ! "$dir/caddy" list-modules | grep -qx 'http.handlers.rate_limit'; then
		echo "the caddy built has no http.handlers.rate_limit module" >&2
		exit 1
	fi
}

for peer in "${which[@]}"; do
	case "$peer" in
	traefik) build_traefik ;;
	caddy) build_caddy ;;
	*)
		echo "unknown peer $peer (traefik or caddy)" >&2
		exit 2
		;;
	esac
done
