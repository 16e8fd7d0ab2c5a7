#!/usr/bin/env bash
# Starts a real, Docker-less Kubernetes control plane on 127.0.0.1:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake
# nodes whose Pods really become Running/Ready), a real node (containerd,
# kubelet, kube-proxy: node-up.sh) and Prometheus.
# Idempotent: a healthy running cluster is reused. State lives in .cluster/
# (CANARY_GATE_CLUSTER_DIR names another folder: a second control plane, with
# its own ports from ports.env and REAL_NODE=0).
#
#   KUBECONFIG=$PWD/.cluster/kubeconfig PATH=$PWD/.cluster/bin:$PATH kubectl get nodes
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$root/.cluster}"
# shellcheck source=ports.env
. "$here/ports.env"
# shellcheck source=versions.env
. "$here/versions.env"
log() { echo "[cluster] $*" >&2; }

healthy() {
  [ -f "$dir/kubeconfig" ] && [ -f "$dir/reconciler.kubeconfig" ] && [ -x "$dir/bin/kubectl" ] &&
    "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}
# FLUX=1: Flux's controllers and a git server too (flux-up.sh, .cluster/flux.env).
flux_up() { [ "${FLUX:-0}" != 1 ] || "$here/flux-up.sh"; }
if healthy && [ "$(cat "$dir/nodes-ready" 2>/dev/null)" = yes ]; then
  log "reusing the running cluster (.cluster/kubeconfig)"
  flux_up
  exit 0
fi
# A half-started or dead cluster from before: clear it away.
"$here/down.sh" >/dev/null 2>&1 || true

# Every part of the harness listens on a fixed port inside the kernel's
# ephemeral range, where any outgoing connection may hold one as its local
# port (seen in clean-clone runs: Traefik and Flux's git server, started
# mid-suite, could not bind). Reserved ports are never handed out to outgoing
# connections and can still be bound by listeners. Best effort: without the
# right to write the setting, say so and go on.
reserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur ours
  ours="$ETCD_PORT,$ETCD_PEER_PORT,$APISERVER_PORT,$CONTROLLER_MANAGER_PORT,$SCHEDULER_PORT,$KWOK_PORT,$DEMO_GATE_PORT"
  ours="$ours,$PROMETHEUS_PORT-$((PROMETHEUS_PORT + 20)),$KUBELET_HEALTHZ_PORT-$KUBE_PROXY_HEALTHZ_PORT"
  cur=$(cat "$f" 2>/dev/null) || { log "cannot read $f: harness ports are not reserved"; return 0; }
  echo "${cur:+$cur,}$ours" >"$f" 2>/dev/null || log "cannot write $f: harness ports are not reserved (an outgoing connection may take one)"
}
reserve_ports

bin=$(FLUX_BUILD=${FLUX:-0} "$here/build.sh")
mkdir -p "$dir/bin" "$dir/pki" "$dir/logs" "$dir/run"
for b in "$bin"/*; do ln -sf "$b" "$dir/bin/$(basename "$b")"; done
rm -f "$dir/bin/prometheus"
ln -sf "$(PATH=${PATH//$dir\/bin/} command -v prometheus)" "$dir/bin/prometheus"
start_ts=$(date +%s)

# --- PKI: a CA, the apiserver serving cert, an admin client and the service-account keys.
pki="$dir/pki"
if [ ! -f "$pki/admin.crt" ]; then
  log "creating certificates"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=canary-gate-test-ca" 2>/dev/null
    cat > apiserver.ext <<EXT
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EXT
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
  )
fi
if [ ! -f "$pki/reconciler.crt" ]; then
  # The reconciler's own identity, so tests run it with its real, least-privilege RBAC.
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout reconciler.key -out reconciler.csr -subj "/CN=canary-gate-reconciler" 2>/dev/null
    openssl x509 -req -in reconciler.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out reconciler.crt -days 3650 -extfile client.ext 2>/dev/null
    rm -f reconciler.csr
  )
fi

kc="$dir/kubeconfig"
cat > "$kc" <<EOF2
apiVersion: v1
kind: Config
clusters:
- name: canary-gate-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: canary-gate-test
  context: {cluster: canary-gate-test, user: admin}
current-context: canary-gate-test
EOF2

sed -e "s#admin.crt#reconciler.crt#; s#admin.key#reconciler.key#; s#name: admin#name: reconciler#; s#user: admin#user: reconciler#" \
  "$kc" > "$dir/reconciler.kubeconfig"

run() { # name, then the command: runs it in the background, logs and pid under .cluster/
  local name=$1; shift
  # The command line is kept so that component.sh can restart this one part (fault tests).
  printf '%q ' "$@" >"$dir/run/$name.cmd"
  nohup "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}
wait_for() { # description, seconds, then a command that succeeds when ready
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out waiting for $what; last log lines:"
      tail -n 30 "$dir/logs/"*.log >&2 || true
      exit 1
    fi
    sleep 0.3
  done
}

log "starting etcd"
rm -rf "$dir/etcd"
run etcd "$dir/bin/etcd" --name=test --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="test=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level=warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

log "starting kube-apiserver"
run kube-apiserver "$dir/bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
  --authorization-mode=Node,RBAC --endpoint-reconciler-type=none \
  --enable-priority-and-fairness=false --profiling=false \
  --kubelet-preferred-address-types=InternalIP
wait_for kube-apiserver 60 "$dir/bin/kubectl" --kubeconfig "$kc" get --raw /readyz

log "starting kube-controller-manager, kube-scheduler and kwok"
run kube-controller-manager "$dir/bin/kube-controller-manager" --kubeconfig="$kc" \
  --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
  --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" --leader-elect=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route' \
  --concurrent-deployment-syncs=10 --concurrent-replicaset-syncs=10 \
  --kube-api-qps=200 --kube-api-burst=400
run kube-scheduler "$dir/bin/kube-scheduler" --kubeconfig="$kc" \
  --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
  --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false
# kwok manages only its own nodes (annotation kwok.x-k8s.io/node=fake): the
# real node's Pods are the kubelet's.
run kwok "$dir/bin/kwok" --kubeconfig="$kc" --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr=10.244.0.0/16 --node-ip=10.0.0.1 --server-address="127.0.0.1:$KWOK_PORT"

for n in 1 2 3; do
  "$dir/bin/kubectl" --kubeconfig "$kc" apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$n
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-$n, kubernetes.io/os: linux, type: kwok}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "5000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "5000"}
NODE
done
# The API server taints new nodes not-ready; the node-lifecycle controller that
# would lift the taint is off (kwok keeps no leases), so lift it here.
for n in 1 2 3; do
  "$dir/bin/kubectl" --kubeconfig "$kc" taint node "kwok-node-$n" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
done
wait_for "nodes to become Ready" 60 "$dir/bin/kubectl" --kubeconfig "$kc" wait --for=condition=Ready node --all --timeout=1s
log "installing the Gateway API $GATEWAY_API_VERSION CRDs"
"$dir/bin/kubectl" --kubeconfig "$kc" apply --server-side --field-manager=canary-gate-cluster \
  -f "${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}/gateway-api-$GATEWAY_API_VERSION/" >/dev/null
# The traffic providers' CRDs (build.sh fetched them from their modules), if any.
for d in "${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}"/provider-crds/*/; do
  [ -d "$d" ] || continue
  log "installing the CRDs of $(basename "$d")"
  "$dir/bin/kubectl" --kubeconfig "$kc" apply --server-side --force-conflicts --field-manager=canary-gate-cluster -f "$d" >/dev/null
done
wait_for "the default ServiceAccount" 60 "$dir/bin/kubectl" --kubeconfig "$kc" -n default get serviceaccount default

# REAL_NODE=0: a control plane without the real node, for a second cluster on
# the same machine (only one real node fits: one containerd, one kube-proxy's
# iptables). The real-traffic tests then fail, saying the node is missing.
if [ "${REAL_NODE:-1}" = 0 ]; then
  log "REAL_NODE=0: not starting the real node"
else
  "$here/node-up.sh"
fi

log "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT"
mkdir -p "$dir/prometheus"
# Scrape targets are files the tests write (file_sd), so a test can point
# Prometheus at the exporter it starts without restarting it.
mkdir -p "$dir/prometheus/targets"
# Prometheus' own identity: it may list and watch Pods, nothing else.
if [ ! -f "$pki/prometheus.crt" ]; then
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout prometheus.key -out prometheus.csr -subj "/CN=canary-gate-test-prometheus" 2>/dev/null
    openssl x509 -req -in prometheus.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out prometheus.crt -days 3650 -extfile client.ext 2>/dev/null
    rm -f prometheus.csr
  )
fi
"$dir/bin/kubectl" --kubeconfig "$kc" apply --server-side --field-manager=canary-gate-cluster -f - >/dev/null <<RBAC
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: canary-gate-test-prometheus}
  rules:
  - {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: canary-gate-test-prometheus}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: canary-gate-test-prometheus}
  subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: canary-gate-test-prometheus}
RBAC
cat > "$dir/prometheus/prometheus.yml" <<PROM
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: test-exporters
  scrape_interval: 1s
  file_sd_configs:
  - files: ['$dir/prometheus/targets/*.json']
    refresh_interval: 1s
# The real node's Pods, from test/cluster/pod-targets.sh (Debian's Prometheus
# has no kubernetes_sd_configs). podinfo labels its HTTP status "status"; it
# is copied to "code", the label the built-in metrics read.
- job_name: kubernetes-pods
  scrape_interval: 1s
  file_sd_configs:
  - files: ['$dir/prometheus/pods/*.json']
    refresh_interval: 1s
  metric_relabel_configs:
  - {source_labels: [status], regex: '(.+)', target_label: code, replacement: '\$1'}
PROM
mkdir -p "$dir/prometheus/pods"
sed -e "s#admin.crt#prometheus.crt#; s#admin.key#prometheus.key#; s#name: admin#name: prometheus#; s#user: admin#user: prometheus#" "$kc" >"$dir/prometheus.kubeconfig"
run pod-targets "$here/pod-targets.sh"
run prometheus "$dir/bin/prometheus" --config.file="$dir/prometheus/prometheus.yml" \
  --storage.tsdb.path="$dir/prometheus/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
  --storage.tsdb.retention.time=2h --log.level=warn
wait_for prometheus 30 curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"

echo yes >"$dir/nodes-ready"
flux_up
log "ready in $(( $(date +%s) - start_ts ))s: export KUBECONFIG=$dir/kubeconfig PATH=$dir/bin:\$PATH"
