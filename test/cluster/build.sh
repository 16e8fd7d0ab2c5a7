#!/usr/bin/env bash
# Builds (once) the real control-plane binaries the tests and the demo run on:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and kwok,
# and for the real node kubelet, kube-proxy and crictl, all from the Go module
# proxy; the sample app podinfo and a pause image as local container images;
# and installs Prometheus, containerd, runc, the CNI plugins and iptables from
# Debian's packages. Everything is cached outside the repository, keyed by
# version, so a warm run returns at once. Each step prints its time.
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

# k8s.io/kubernetes replaces each staging module with a local path, so it
# cannot be built with `go install`. This wrapper module requires it and
# points every staging module at its published v0.X.Y tag instead.
kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
wrapper_module() {
  mkdir -p "$work/etcd" "$bin"
  cd "$work"
  export GOFLAGS=-mod=mod CGO_ENABLED=0
  local t ok=1
  for t in "${kube_tools[@]}"; do grep -q "^tool k8s.io/kubernetes/cmd/$t\$" go.mod 2>/dev/null || ok=0; done
  [ "$ok" = 1 ] && [ -f etcd/main.go ] && return 0
  local kmod staging
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
    for t in "${kube_tools[@]}"; do
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
  go mod tidy
  grep -q "k8s.io/kubernetes $KUBE_VERSION" go.mod || { echo "module resolution moved k8s.io/kubernetes off $KUBE_VERSION"; exit 1; }
}

kube_ldflags() {
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local missing=0
  for b in "${want[@]}"; do [ -x "$bin/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  need_go
  log "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION (a cold build takes a long while)"
  wrapper_module
  go build -trimpath -ldflags "$(kube_ldflags)" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" ./etcd
}

# The real node: kubelet and kube-proxy from the same wrapper module (its Go
# build cache is warm after the control plane), crictl to clean up sandboxes.
build_node() {
  if [ ! -x "$bin/kubelet" ] || [ ! -x "$bin/kube-proxy" ]; then
    need_go
    log "building kubelet and kube-proxy $KUBE_VERSION"
    wrapper_module
    go build -trimpath -ldflags "$(kube_ldflags)" -o "$bin/" \
      k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy
  fi
  if [ ! -x "$bin/crictl" ]; then
    need_go
    log "building crictl $CRI_TOOLS_VERSION"
    GOBIN="$bin" CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
  fi
}

# Container images, built here and never pulled: a pause image for Pod
# sandboxes and two tags of podinfo (the same pinned build; the tags differ in
# the UI message and colour podinfo answers with). Each is a docker-archive tar
# (manifest.json, config, one layer) that `ctr images import` loads.
images="$cache/images-podinfo-$PODINFO_VERSION"
make_image() { # out.tar, name:tag, rootfs dir, image config (JSON)
  local out=$1 ref=$2 rootfs=$3 config=$4 tmp diff cfg
  tmp=$(mktemp -d)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$tmp/layer.tar" .
  diff=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(go env GOARCH)" "$config" "$diff" >"$tmp/config.json"
  cfg=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
  mv "$tmp/config.json" "$tmp/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$cfg" "$ref" >"$tmp/manifest.json"
  tar -C "$tmp" -cf "$out.tmp" manifest.json "$cfg.json" layer.tar
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

build_images() {
  [ -f "$images/.done" ] && return 0
  need_go
  log "building podinfo $PODINFO_VERSION and the pause image"
  mkdir -p "$images" "$cache/gowork/pause"
  local gobin="$images/bin" commit version
  mkdir -p "$gobin"
  # The pause container holds a Pod's namespaces: it waits for SIGTERM and
  # reaps orphans (it is PID 1 when the Pod shares its process namespace).
  cat >"$cache/gowork/pause/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  printf 'module canarygate.dev/pause\n\ngo 1.22\n' >"$cache/gowork/pause/go.mod"
  (cd "$cache/gowork/pause" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags "-s -w" -o "$gobin/pause" .)
  commit=${PODINFO_VERSION##*-}
  GOBIN="$gobin" CGO_ENABLED=0 GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X github.com/stefanprodan/podinfo/pkg/version.REVISION=$commit" \
    "github.com/stefanprodan/podinfo/cmd/podinfo@$PODINFO_VERSION"
  version=$("$gobin/podinfo" --version 2>/dev/null | tail -n 1)
  [ "$version" = "$PODINFO_APP_VERSION" ] ||
    { echo "podinfo $PODINFO_VERSION reports version '$version', versions.env says $PODINFO_APP_VERSION"; exit 1; }
  local root="$images/rootfs"
  rm -rf "$root" && mkdir -p "$root/pause" "$root/podinfo/tmp"
  cp "$gobin/pause" "$root/pause/pause"
  cp "$gobin/podinfo" "$root/podinfo/podinfo"
  chmod 1777 "$root/podinfo/tmp"
  make_image "$images/pause.tar" "$PAUSE_IMAGE" "$root/pause" '{"Entrypoint":["/pause"],"User":"65534"}'
  local tag color
  for tag in a b; do
    [ "$tag" = a ] && color='#34577c' || color='#2e8b57'
    make_image "$images/podinfo-$tag.tar" "$PODINFO_IMAGE:$PODINFO_APP_VERSION-$tag" "$root/podinfo" \
      "{\"Entrypoint\":[\"/podinfo\"],\"Cmd\":[\"--port=9898\",\"--port-metrics=9797\",\"--level=info\"],\"User\":\"65534\",\"Env\":[\"PODINFO_UI_MESSAGE=podinfo $PODINFO_APP_VERSION-$tag\",\"PODINFO_UI_COLOR=$color\"],\"ExposedPorts\":{\"9898/tcp\":{},\"9797/tcp\":{}}}"
  done
  rm -rf "$root"
  touch "$images/.done"
}

# containerd, runc, the CNI plugins (bridge, host-local, loopback) and
# iptables for the real node, from Debian's packages.
install_node_packages() {
  local missing=() p
  for p in containerd runc containernetworking-plugins iptables conntrack iproute2; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  apt_install "${missing[@]}"
}

apt_updated=0
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  [ "$apt_updated" = 1 ] || { $sudo apt-get update -qq >/dev/null; apt_updated=1; }
  # Package services are never started here; the harness runs its own processes.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
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

# A traffic provider's CRDs from its own Go module, pinned in versions.env:
# name, module@version, then paths inside the module (files or globs). They
# land in $cache/provider-crds/<name>-<version>/, which up.sh applies, so the
# API server validates every object a router writes against the provider's
# real schema.
fetch_module_crds() {
  local name=$1 modver=$2
  shift 2
  local out="$cache/provider-crds/$name-${modver##*@}"
  [ -f "$out/.done" ] && return 0
  need_go
  log "fetching the $name CRDs from $modver"
  local d f n=0
  d=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "$modver" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -n "$d" ] || { echo "go mod download $modver gave no directory"; exit 1; }
  mkdir -p "$out"
  for f in "$@"; do
    # shellcheck disable=SC2086 # the path may be a glob
    for g in $d/$f; do
      [ -f "$g" ] || { echo "$modver has no $f"; exit 1; }
      n=$((n + 1))
      cp "$g" "$out/$n-$(basename "$g")"
    done
  done
  chmod u+w "$out"/*
  touch "$out/.done"
}

provider_crds() {
  # One line per provider (the routers of reconciler/routers/).
  fetch_module_crds istio "istio.io/api@$ISTIO_API_VERSION" kubernetes/customresourcedefinitions.gen.yaml
  fetch_module_crds osm "github.com/openservicemesh/osm@$OSM_VERSION" cmd/osm-bootstrap/crds/smi_traffic_split.yaml cmd/osm-bootstrap/crds/smi_http_route_group.yaml
  fetch_module_crds contour "github.com/projectcontour/contour@$CONTOUR_VERSION" examples/contour/01-crds.yaml
  fetch_module_crds traefik "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml
}

# Traefik for the real-traffic tests: its module has replace and exclude
# directives (forks of a few dependencies), which only a main module may
# carry, so `go install pkg@version` refuses it. A wrapper module requires
# Traefik and repeats its replace and exclude blocks, as for Kubernetes above.
traefik_bin="$cache/traefik-$TRAEFIK_VERSION/bin"
build_traefik() {
  [ -x "$traefik_bin/traefik" ] && return 0
  need_go
  log "building Traefik $TRAEFIK_VERSION"
  local w="$cache/gowork/traefik-$TRAEFIK_VERSION" tmod
  mkdir -p "$w" "$traefik_bin"
  tmod=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [ -n "$tmod" ] || { echo "go mod download of Traefik $TRAEFIK_VERSION gave no go.mod"; exit 1; }
  {
    echo "module canarygate.dev/test-traefik"
    echo
    grep '^go ' "$tmod"
    echo
    echo "require github.com/traefik/traefik/v3 $TRAEFIK_VERSION"
    echo
    # The tool directive keeps `go mod tidy` from dropping the requirement.
    echo "tool github.com/traefik/traefik/v3/cmd/traefik"
    echo
    # The replace ( ... ) blocks and single replace/exclude lines of Traefik's go.mod.
    awk '/^replace \(/{on=1} on{print} on&&/^\)/{on=0} /^(replace|exclude) [^(]/{print}' "$tmod"
  } >"$w/go.mod"
  (
    cd "$w"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod tidy
    grep -q "github.com/traefik/traefik/v3 $TRAEFIK_VERSION" go.mod || { echo "module resolution moved Traefik off $TRAEFIK_VERSION"; exit 1; }
    go build -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" -o "$traefik_bin/traefik" github.com/traefik/traefik/v3/cmd/traefik
  )
}

# Flux's source-controller and kustomize-controller, for the GitOps tests.
# Each module replaces its api submodule with a local path (and a few
# dependencies with forks), so, as for Traefik, a wrapper module requires the
# controller and repeats its replace and exclude lines, minus the local-path
# ones (the api submodule resolves to its published version instead). The
# wrapper also repeats the controller's own require blocks and go.sum, and is
# not tidied: tidy would resolve the controller's test-only dependencies too,
# and the module proxy does not serve all of them. Extra replace lines
# (versions.env, FLUX_*_REPLACE: "module=version ...") swap a dependency
# version the proxy does not serve for the nearest one it does.
flux_dir="$cache/flux-sc-$FLUX_SOURCE_CONTROLLER_VERSION-kc-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
flux_bin="$flux_dir/bin"
flux_crds="$flux_dir/crds"
build_flux_controller() { # name (the module's last element), version, extra replaces
  local name=$1 version=$2 extra=$3 module="github.com/fluxcd/$1"
  [ -x "$flux_bin/$name" ] && return 0
  local w="$cache/gowork/flux-$name-$version" dir r
  mkdir -p "$w" "$flux_bin" "$flux_crds"
  dir=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -n "$dir" ] || { echo "go mod download of $module@$version gave no directory"; exit 1; }
  {
    echo "module canarygate.dev/test-flux-$name"
    echo
    grep '^go ' "$dir/go.mod"
    echo
    echo "require $module $version"
    echo "require $module/api $(sed -n "s#^[[:space:]]*$module/api \(v[^ ]*\).*#\1#p" "$dir/go.mod" | head -n 1)"
    echo
    awk -v api="$module/api " '/^require \(/{on=1} on&&index($0, api)==0{print} on&&/^\)/{on=0}' "$dir/go.mod"
    echo
    echo "tool $module"
    echo
    awk '/^replace \(/{on=1} on&&!/=> \.\//{print} on&&/^\)/{on=0} /^(replace|exclude) [^(]/&&!/=> \.\//{print}' "$dir/go.mod"
    for r in $extra; do echo "replace ${r%%=*} => ${r%%=*} ${r#*=}"; done
  } >"$w/go.mod"
  cp "$dir/go.sum" "$w/go.sum"
  chmod u+w "$w/go.sum"
  (
    cd "$w"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go build -trimpath -ldflags "-s -w" -o "$flux_bin/$name.tmp" "$module"
    mv "$flux_bin/$name.tmp" "$flux_bin/$name"
  )
  cp "$dir"/config/crd/bases/*.yaml "$flux_crds/"
  chmod u+w "$flux_crds"/*.yaml
}

# The loopback git server the GitOps tests push to: Debian's git
# http-backend behind Go's CGI handler (no dependency). A push to a
# repository that does not exist yet creates it, bare.
build_git_server() {
  [ -x "$flux_bin/git-server" ] && return 0
  need_go
  log "building the loopback git server"
  local w="$cache/gowork/git-server"
  mkdir -p "$w" "$flux_bin"
  cat >"$w/main.go" <<'GO'
// git-server serves the bare repositories under -root over smart HTTP
// (git http-backend), fetch and push, on a loopback address.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
)

var repoName = regexp.MustCompile(`^/([A-Za-z0-9][A-Za-z0-9._-]*\.git)(/|$)`)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to serve on")
	root := flag.String("root", "", "folder of the bare repositories")
	backend := flag.String("backend", "/usr/lib/git-core/git-http-backend", "git http-backend")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	var mu sync.Mutex
	cgiHandler := &cgi.Handler{
		Path: *backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + *root, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=git"},
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m := repoName.FindStringSubmatch(r.URL.Path)
		if m == nil {
			http.Error(w, "no such repository: the path is /<name>.git", http.StatusNotFound)
			return
		}
		repo := filepath.Join(*root, m[1])
		mu.Lock()
		_, err := os.Stat(repo)
		if os.IsNotExist(err) {
			out, initErr := exec.Command("git", "init", "--quiet", "--bare", repo).CombinedOutput()
			if initErr == nil {
				out, initErr = exec.Command("git", "-C", repo, "config", "http.receivepack", "true").CombinedOutput()
			}
			err = initErr
			if err != nil {
				log.Printf("creating %s: %v: %s", m[1], err, out)
			}
		}
		mu.Unlock()
		if err != nil {
			http.Error(w, "cannot create the repository", http.StatusInternalServerError)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	})
	log.Printf("serving %s on http://%s", *root, *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
GO
  printf 'module canarygate.dev/git-server\n\ngo 1.22\n' >"$w/go.mod"
  (cd "$w" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags "-s -w" -o "$flux_bin/git-server" .)
}

# lua-health: runs an Argo CD resource health check (Lua, as in argocd-cm's
# resource.customizations.health.*) against objects with gopher-lua, the
# interpreter Argo CD embeds: the object is the global `obj`, the script's
# return value the health. Reads a JSON array of objects on stdin, prints a
# JSON array of {status, message}.
build_lua_health() {
  [ -x "$flux_bin/lua-health" ] && return 0
  need_go
  log "building lua-health (gopher-lua $GOPHER_LUA_VERSION)"
  local w="$cache/gowork/lua-health-$GOPHER_LUA_VERSION"
  mkdir -p "$w" "$flux_bin"
  cat >"$w/main.go" <<'GO'
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := L.NewTable()
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	}
	return lua.LNil
}

func field(t *lua.LTable, key string) any {
	if v := t.RawGetString(key); v != lua.LNil {
		return v.String()
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lua-health SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var objects []map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "stdin: a JSON array of objects:", err)
		os.Exit(1)
	}
	out := []map[string]any{}
	for i, o := range objects {
		L := lua.NewState()
		L.SetGlobal("obj", toLua(L, o))
		if err := L.DoString(string(script)); err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", i, err)
			os.Exit(1)
		}
		hs, ok := L.Get(-1).(*lua.LTable)
		if !ok {
			fmt.Fprintf(os.Stderr, "object %d: the script returned %s, not a table\n", i, L.Get(-1).Type())
			os.Exit(1)
		}
		out = append(out, map[string]any{"status": field(hs, "status"), "message": field(hs, "message")})
		L.Close()
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
GO
  printf 'module canarygate.dev/lua-health\n\ngo 1.22\n\nrequire github.com/yuin/gopher-lua %s\n' "$GOPHER_LUA_VERSION" >"$w/go.mod"
  (cd "$w" && export GOFLAGS=-mod=mod CGO_ENABLED=0 && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$flux_bin/lua-health" .)
}

build_flux() {
  if [ ! -x "$flux_bin/source-controller" ] || [ ! -x "$flux_bin/kustomize-controller" ]; then
    need_go
    log "building Flux source-controller $FLUX_SOURCE_CONTROLLER_VERSION and kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION (a cold build takes minutes)"
    build_flux_controller source-controller "$FLUX_SOURCE_CONTROLLER_VERSION" "$FLUX_SOURCE_CONTROLLER_REPLACE"
    build_flux_controller kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" "$FLUX_KUSTOMIZE_CONTROLLER_REPLACE"
  fi
  build_git_server
  build_lua_health
}

install_prometheus() {
  [ -x /usr/bin/prometheus ] && return 0
  log "installing Prometheus from Debian's packages"
  apt_install prometheus
}

step() { # name, then the function: runs it and prints its time
  local name=$1 t0=$SECONDS
  shift
  "$@"
  log "$name: $((SECONDS - t0))s"
}

step "control plane" build_kubernetes
step kwok build_kwok
step "gateway api crds" fetch_gateway_api_crds
step "provider crds" provider_crds
step prometheus install_prometheus
step "node packages" install_node_packages
step "kubelet, kube-proxy, crictl" build_node
step images build_images
step traefik build_traefik
# FLUX_BUILD=1 (up.sh sets it with FLUX=1, as does `make cluster-build`).
[ "${FLUX_BUILD:-0}" = 1 ] && step flux build_flux
echo "$bin"
