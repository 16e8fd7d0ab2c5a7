#!/usr/bin/env bash
# Starts a real Traefik v3 (built by build.sh) next to the local control
# plane, as a process on this machine: providers kubernetesCRD
# (IngressRoute, TraefikService) and kubernetesGateway (GatewayClass
# canary-gate-traefik, whose Gateways it serves on its one entry point)
# against the local API server, with an identity of its own (a client
# certificate bound to the roles Traefik's own RBAC manifests ask for).
# It proxies to the Pod IPs of the real node, which the bridge makes
# reachable from this machine.
#
#   test/cluster/traefik-up.sh          start (idempotent), prints the ports
#   test/cluster/traefik-up.sh --down   stop
#
# Entry point `web` on 127.0.0.1:$TRAEFIK_PORT; ping, Prometheus metrics and the
# API (what Traefik has in force: /api/http/services) on 127.0.0.1:$TRAEFIK_ADMIN_PORT.
# Log and pid under .cluster/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$root/.cluster}"
# shellcheck source=ports.env
. "$here/ports.env"
# shellcheck source=versions.env
. "$here/versions.env"
TRAEFIK_PORT=${TRAEFIK_PORT:-$((PROMETHEUS_PORT + 2))}
TRAEFIK_ADMIN_PORT=${TRAEFIK_ADMIN_PORT:-$((PROMETHEUS_PORT + 3))}
log() { echo "[traefik] $*" >&2; }
pidfile="$dir/run/traefik.pid"

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
if [ "${1:-}" = "--down" ]; then
  stop
  log "stopped"
  exit 0
fi

ready() { curl -sf "http://127.0.0.1:$TRAEFIK_ADMIN_PORT/ping" >/dev/null 2>&1; }
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && ready; then
  echo "$TRAEFIK_PORT $TRAEFIK_ADMIN_PORT"
  exit 0
fi
stop

[ -f "$dir/kubeconfig" ] || { echo "no local cluster: run test/cluster/up.sh first"; exit 1; }
cache=${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}
traefik="$cache/traefik-$TRAEFIK_VERSION/bin/traefik"
[ -x "$traefik" ] || "$here/build.sh" >/dev/null
kubectl() { "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

pki="$dir/pki"
if [ ! -f "$pki/traefik.crt" ]; then
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout traefik.key -out traefik.csr -subj "/CN=canary-gate-test-traefik" 2>/dev/null
    openssl x509 -req -in traefik.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out traefik.crt -days 3650 -extfile client.ext 2>/dev/null
    rm -f traefik.csr
  )
fi
sed -e "s#admin.crt#traefik.crt#; s#admin.key#traefik.key#; s#name: admin#name: traefik#; s#user: admin#user: traefik#" \
  "$dir/kubeconfig" >"$dir/traefik.kubeconfig"

# The ClusterRoles of Traefik's own RBAC manifests (the first document of
# each), renamed and bound to this identity.
mod=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
rbac="$mod/docs/content/reference/dynamic-configuration"
{
  for f in crd gateway; do
    awk '/^---/{exit} {print}' "$rbac/kubernetes-$f-rbac.yml" | sed -e "0,/^  name: .*/s//  name: canary-gate-test-traefik-$f/"
    echo "---"
    cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: canary-gate-test-traefik-$f}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: canary-gate-test-traefik-$f}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: canary-gate-test-traefik}
---
YAML
  done
  # The Gateways of this class are Traefik's to serve.
  cat <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: canary-gate-traefik}
spec: {controllerName: traefik.io/gateway-controller}
YAML
} | kubectl apply --server-side --force-conflicts --field-manager=canary-gate-cluster -f - >/dev/null

mkdir -p "$dir/logs" "$dir/run"
log "starting Traefik $TRAEFIK_VERSION on 127.0.0.1:$TRAEFIK_PORT (ping, metrics on 127.0.0.1:$TRAEFIK_ADMIN_PORT)"
# Outside a cluster, Traefik's Kubernetes providers read KUBECONFIG.
env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT KUBECONFIG="$dir/traefik.kubeconfig" \
  nohup "$traefik" \
  --global.checkNewVersion=false --global.sendAnonymousUsage=false \
  --entryPoints.web.address="127.0.0.1:$TRAEFIK_PORT" \
  --entryPoints.traefik.address="127.0.0.1:$TRAEFIK_ADMIN_PORT" \
  --ping=true --ping.entryPoint=traefik \
  --api=true --api.insecure=true --api.dashboard=false \
  --metrics.prometheus=true --metrics.prometheus.entryPoint=traefik \
  --metrics.prometheus.addServicesLabels=true --metrics.prometheus.addRoutersLabels=true \
  --providers.kubernetescrd=true \
  --providers.kubernetesgateway=true \
  --log.level=INFO --log.noColor=true \
  >"$dir/logs/traefik.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 100); do
  ready && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 20 "$dir/logs/traefik.log" >&2; echo "Traefik exited"; exit 1; }
  sleep 0.2
done
ready || { tail -n 20 "$dir/logs/traefik.log" >&2; echo "Traefik did not answer /ping within 20 s"; exit 1; }
echo "$TRAEFIK_PORT $TRAEFIK_ADMIN_PORT"
