#!/usr/bin/env bash
# Starts Flux next to the local control plane, as processes on this machine:
# a loopback git server (git http-backend; a push to a new repository creates
# it), and Flux's source-controller and kustomize-controller (built by
# build.sh) against the local API server, with their CRDs and an identity
# each (a client certificate bound to the roles of the controller's own RBAC
# manifests; kustomize-controller also to cluster-admin, as Flux's install
# binds it). They act on GitRepository and Kustomization objects in any
# namespace. Writes .cluster/flux.env:
#
#   GIT_PUSH_URL   where `git push` goes (any branch)
#   GIT_REPO_URL   what a GitRepository's spec.url reads (the same repository)
#
#   test/cluster/flux-up.sh          start (idempotent)
#   test/cluster/flux-up.sh --down   stop
#
# Ports sit beside Prometheus' (PROMETHEUS_PORT + 10 ... + 15), so a shifted
# port block shifts them too; override any of them in the environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$root/.cluster}"
# shellcheck source=ports.env
. "$here/ports.env"
# shellcheck source=versions.env
. "$here/versions.env"
FLUX_GIT_PORT=${FLUX_GIT_PORT:-$((PROMETHEUS_PORT + 10))}
FLUX_STORAGE_PORT=${FLUX_STORAGE_PORT:-$((PROMETHEUS_PORT + 11))}
FLUX_SOURCE_METRICS_PORT=${FLUX_SOURCE_METRICS_PORT:-$((PROMETHEUS_PORT + 12))}
FLUX_SOURCE_HEALTH_PORT=${FLUX_SOURCE_HEALTH_PORT:-$((PROMETHEUS_PORT + 13))}
FLUX_KUSTOMIZE_METRICS_PORT=${FLUX_KUSTOMIZE_METRICS_PORT:-$((PROMETHEUS_PORT + 14))}
FLUX_KUSTOMIZE_HEALTH_PORT=${FLUX_KUSTOMIZE_HEALTH_PORT:-$((PROMETHEUS_PORT + 15))}
flux_port_vars=(FLUX_GIT_PORT FLUX_STORAGE_PORT FLUX_SOURCE_METRICS_PORT FLUX_SOURCE_HEALTH_PORT FLUX_KUSTOMIZE_METRICS_PORT FLUX_KUSTOMIZE_HEALTH_PORT)
# The ports a running Flux was started with (see below), to find it again.
# shellcheck disable=SC1091
[ -f "$dir/flux/ports.env" ] && . "$dir/flux/ports.env"
FLUX_NAMESPACE=flux-system
log() { echo "[flux] $*" >&2; }
procs=(kustomize-controller source-controller git-server)

stop() {
  local name f pid
  for name in "${procs[@]}"; do
    f="$dir/run/flux-$name.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  rm -f "$dir/flux.env"
}
if [ "${1:-}" = "--down" ]; then
  stop
  rm -rf "$dir/flux"
  log "stopped"
  exit 0
fi

ready() {
  curl -sf "http://127.0.0.1:$FLUX_SOURCE_HEALTH_PORT/readyz" >/dev/null 2>&1 &&
    curl -sf "http://127.0.0.1:$FLUX_KUSTOMIZE_HEALTH_PORT/readyz" >/dev/null 2>&1 &&
    curl -s -o /dev/null "http://127.0.0.1:$FLUX_GIT_PORT/" 2>/dev/null
}
alive() {
  local name
  for name in "${procs[@]}"; do
    [ -f "$dir/run/flux-$name.pid" ] && kill -0 "$(cat "$dir/run/flux-$name.pid")" 2>/dev/null || return 1
  done
}
[ -f "$dir/kubeconfig" ] || { echo "no local cluster: run test/cluster/up.sh first"; exit 1; }
cache=${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}
flux_dir="$cache/flux-sc-$FLUX_SOURCE_CONTROLLER_VERSION-kc-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
for b in kustomize-controller source-controller git-server lua-health; do
  [ -x "$flux_dir/bin/$b" ] || { FLUX_BUILD=1 "$here/build.sh" >/dev/null; break; }
done
mkdir -p "$dir/bin"
for b in "$flux_dir"/bin/*; do ln -sf "$b" "$dir/bin/$(basename "$b")"; done
if alive && ready && [ -f "$dir/flux.env" ]; then
  log "reusing the running Flux (.cluster/flux.env)"
  exit 0
fi
stop

kubectl() { "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
t0=$SECONDS

log "installing the Flux CRDs (source-controller $FLUX_SOURCE_CONTROLLER_VERSION, kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION)"
kubectl apply --server-side --force-conflicts --field-manager=canary-gate-cluster -f "$flux_dir/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$flux_dir/crds/" >/dev/null

# An identity per controller, bound to the ClusterRole of its own module's
# config/rbac/role.yaml (renamed).
pki="$dir/pki"
module_dir() {
  (cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/fluxcd/$1@$2" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
}
{
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata: {name: $FLUX_NAMESPACE}"
  for c in source-controller:"$FLUX_SOURCE_CONTROLLER_VERSION" kustomize-controller:"$FLUX_KUSTOMIZE_CONTROLLER_VERSION"; do
    name=${c%%:*} version=${c#*:}
    user="canary-gate-test-flux-$name"
    if [ ! -f "$pki/flux-$name.crt" ]; then
      (
        cd "$pki"
        openssl req -newkey rsa:2048 -nodes -keyout "flux-$name.key" -out "flux-$name.csr" -subj "/CN=$user" 2>/dev/null
        openssl x509 -req -in "flux-$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "flux-$name.crt" -days 3650 -extfile client.ext 2>/dev/null
        rm -f "flux-$name.csr"
      )
    fi
    sed -e "s#admin.crt#flux-$name.crt#; s#admin.key#flux-$name.key#; s#name: admin#name: flux-$name#; s#user: admin#user: flux-$name#" \
      "$dir/kubeconfig" >"$dir/flux-$name.kubeconfig"
    echo "---"
    sed -e "s/^  name: manager-role$/  name: $user/" "$(module_dir "$name" "$version")/config/rbac/role.yaml" | grep -v '^---$'
    roles=("$user")
    [ "$name" = kustomize-controller ] && roles+=(cluster-admin)
    for role in "${roles[@]}"; do
      cat <<YAML
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: $user-$role}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: $role}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: $user}
YAML
    done
  done
} | kubectl apply --server-side --force-conflicts --field-manager=canary-gate-cluster -f - >/dev/null

mkdir -p "$dir/logs" "$dir/run" "$dir/flux/git" "$dir/flux/storage"
run() { # name, then the command
  local name=$1; shift
  nohup "$@" >"$dir/logs/flux-$name.log" 2>&1 &
  echo $! >"$dir/run/flux-$name.pid"
}
# These ports sit in the kernel's ephemeral range, where any outgoing
# connection may hold one as its local port for a while (seen: a clean-clone
# run whose git server could not bind). A port that cannot be bound now is
# replaced by one the kernel hands out; flux.env tells every user the result.
bindable() { node -e 'const s=require("net").createServer();s.once("error",()=>process.exit(1));s.listen(Number(process.argv[1]),"127.0.0.1",()=>s.close(()=>process.exit(0)))' "$1"; }
any_free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
: >"$dir/flux/ports.env"
for var in "${flux_port_vars[@]}"; do
  if ! bindable "${!var}"; then
    new_port=$(any_free_port)
    log "port ${!var} ($var) is taken; using $new_port"
    printf -v "$var" '%s' "$new_port"
  fi
  echo "$var=${!var}" >>"$dir/flux/ports.env"
done
log "starting the git server on 127.0.0.1:$FLUX_GIT_PORT, source-controller and kustomize-controller"
run git-server "$flux_dir/bin/git-server" -listen "127.0.0.1:$FLUX_GIT_PORT" -root "$dir/flux/git"
# RUNTIME_NAMESPACE is where a controller records its own Events and leases;
# outside a cluster, controller-runtime reads KUBECONFIG.
KUBECONFIG="$dir/flux-source-controller.kubeconfig" RUNTIME_NAMESPACE=$FLUX_NAMESPACE run source-controller "$flux_dir/bin/source-controller" \
  --enable-leader-election=false --watch-all-namespaces=true \
  --storage-path="$dir/flux/storage" \
  --storage-addr="127.0.0.1:$FLUX_STORAGE_PORT" --storage-adv-addr="127.0.0.1:$FLUX_STORAGE_PORT" \
  --metrics-addr="127.0.0.1:$FLUX_SOURCE_METRICS_PORT" --health-addr="127.0.0.1:$FLUX_SOURCE_HEALTH_PORT" \
  --events-addr= --log-level=info --concurrent=4
KUBECONFIG="$dir/flux-kustomize-controller.kubeconfig" RUNTIME_NAMESPACE=$FLUX_NAMESPACE run kustomize-controller "$flux_dir/bin/kustomize-controller" \
  --enable-leader-election=false --watch-all-namespaces=true \
  --metrics-addr="127.0.0.1:$FLUX_KUSTOMIZE_METRICS_PORT" --health-addr="127.0.0.1:$FLUX_KUSTOMIZE_HEALTH_PORT" \
  --events-addr= --log-level=info --concurrent=4

for _ in $(seq 1 150); do
  ready && break
  alive || { tail -n 20 "$dir"/logs/flux-*.log >&2; echo "a Flux process exited (logs in .cluster/logs/flux-*.log)"; stop; exit 1; }
  sleep 0.2
done
ready || { tail -n 20 "$dir"/logs/flux-*.log >&2; echo "Flux did not become ready within 30 s"; stop; exit 1; }

repo="http://127.0.0.1:$FLUX_GIT_PORT/fleet.git"
cat >"$dir/flux.env" <<ENV
# Written by test/cluster/flux-up.sh: source it (shell syntax).
GIT_PUSH_URL=$repo
GIT_REPO_URL=$repo
GIT_SERVER_URL=http://127.0.0.1:$FLUX_GIT_PORT
FLUX_NAMESPACE=$FLUX_NAMESPACE
FLUX_SOURCE_METRICS_URL=http://127.0.0.1:$FLUX_SOURCE_METRICS_PORT/metrics
FLUX_KUSTOMIZE_METRICS_URL=http://127.0.0.1:$FLUX_KUSTOMIZE_METRICS_PORT/metrics
ENV
log "ready in $((SECONDS - t0))s: git push $repo; . $dir/flux.env"
