#!/usr/bin/env bash
# Builds (once) the real control-plane binaries the tests and the demo run on:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and kwok,
# all from the Go module proxy, and installs Prometheus from Debian's packages.
# Everything is cached outside the repository, keyed by version, so a warm run
# returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache=${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}
bin="$cache/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
work="$cache/gowork/k8s-$KUBE_VERSION"
log() { echo "[build] $*" >&2; }

need_go() {
  command -v go >/dev/null || { echo "Go is required to build the control plane (https://go.dev/dl)"; exit 1; }
}

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local missing=0
  for b in "${want[@]}"; do [ -x "$bin/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  need_go
  log "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION (a cold build takes a long while)"
  mkdir -p "$work/etcd" "$bin"
  cd "$work"
  # k8s.io/kubernetes replaces each staging module with a local path, so it
  # cannot be built with `go install`. This wrapper module requires it and
  # points every staging module at its published v0.X.Y tag instead.
  local kmod staging minor
  kmod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod" | sort -u)
  [ -n "$staging" ] || { echo "could not read the staging modules from $kmod"; exit 1; }
  local v0="v0.${KUBE_VERSION#v1.}"
  {
    echo "module canarygate.dev/test-control-plane"
    echo
    echo "go 1.25.0"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $KUBE_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo ")"
    echo
    # tool directives keep `go mod tidy` from dropping the requirements.
    for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      echo "tool k8s.io/kubernetes/cmd/$t"
    done
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $v0"; done
    echo ")"
  } > go.mod
  cat > etcd/main.go <<'GO'
// etcd's own main package lives in a module with replace directives; its
// entry point is a single call we can make from here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  export GOFLAGS=-mod=mod CGO_ENABLED=0
  go mod tidy
  grep -q "k8s.io/kubernetes $KUBE_VERSION" go.mod || { echo "module resolution moved k8s.io/kubernetes off $KUBE_VERSION"; exit 1; }
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  go build -trimpath -ldflags "$ld" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" ./etcd
}

build_kwok() {
  [ -x "$bin/kwok" ] && return 0
  need_go
  log "building kwok $KWOK_VERSION"
  GOBIN="$bin" CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

fetch_gateway_api_crds() {
  # The standard-channel Gateway API CRDs ship inside the Go module; the API
  # server then validates every HTTPRoute the gatewayapi router writes.
  local out="$cache/gateway-api-$GATEWAY_API_VERSION"
  [ -f "$out/.done" ] && return 0
  need_go
  log "fetching the Gateway API $GATEWAY_API_VERSION CRDs"
  local d
  d=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  mkdir -p "$out"
  cp "$d"/config/crd/standard/*.yaml "$out/"
  chmod u+w "$out"/*.yaml
  touch "$out/.done"
}

install_prometheus() {
  [ -x /usr/bin/prometheus ] && return 0
  log "installing Prometheus from Debian's packages"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  # The package's service is never started here; the harness runs its own server.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

build_kubernetes
build_kwok
fetch_gateway_api_crds
install_prometheus
echo "$bin"
