#!/usr/bin/env bash
# Starts the real node next to the local control plane: containerd (with runc
# and the CNI bridge plugin), a kubelet and kube-proxy, so Pods scheduled onto
# node `canary-gate-node` run real containers on a bridge of this machine and
# a Service's ClusterIP load-balances to them through kube-proxy's iptables
# rules. Called by up.sh once the API server is ready; test/cluster/node-down.sh
# removes all of it (processes, sandboxes, mounts, the bridge, iptables chains).
#
# The node is tainted canarygate.dev/real-node=true:NoSchedule and labelled
# canarygate.dev/node=real: only Pods that tolerate the taint run here, every
# other Pod stays on the kwok nodes (ADR 0007).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$root/.cluster}"
# shellcheck source=ports.env
. "$here/ports.env"
# shellcheck source=versions.env
. "$here/versions.env"
log() { echo "[node] $*" >&2; }
fail() { echo "[node] the real node cannot start: $*" >&2; exit 1; }

cache=${CANARY_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-gate}
images="$cache/images-podinfo-$PODINFO_VERSION"
node=canary-gate-node
nd="$dir/node"
pki="$dir/pki"
kc="$dir/kubeconfig"
kubectl() { "$dir/bin/kubectl" --kubeconfig "$kc" --request-timeout=10s "$@"; }

[ "$(id -u)" = 0 ] || fail "it needs root (a bridge, iptables rules and containers); run as root"
for b in containerd runc ctr iptables; do command -v "$b" >/dev/null || fail "$b is not installed (test/cluster/build.sh installs it)"; done
[ -x /usr/lib/cni/bridge ] || fail "the CNI plugins are not in /usr/lib/cni (Debian's containernetworking-plugins)"

net=${POD_CIDR%/*}
gw="${net%.*}.1"
[ "${POD_CIDR#*/}" = 24 ] || fail "POD_CIDR must be a /24 (got $POD_CIDR)"
if ip route show | grep -v "dev $NODE_BRIDGE" | grep -q "^${net%.*}\."; then
  fail "POD_CIDR $POD_CIDR collides with a route on this machine: $(ip route show | grep "^${net%.*}\.")"
fi

mkdir -p "$nd" "$dir/logs" "$dir/run"
run() { # name, then the command: runs it in the background, logs and pid under .cluster/
  local name=$1; shift
  nohup "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}
wait_for() { # description, seconds, then a command that succeeds when ready
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out waiting for $what; last log lines:"
      tail -n 30 "$dir/logs/containerd.log" "$dir/logs/kubelet.log" "$dir/logs/kube-proxy.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.3
  done
}

# --- identities: the kubelet as system:node:<name> (Node authorizer), kube-proxy as system:kube-proxy.
client_cert() { # name, subject
  [ -f "$pki/$1.crt" ] && return 0
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile client.ext 2>/dev/null
    rm -f "$1.csr"
  )
}
client_cert kubelet "/O=system:nodes/CN=system:node:$node"
client_cert kube-proxy "/CN=system:kube-proxy"
for who in kubelet kube-proxy; do
  sed -e "s#admin.crt#$who.crt#; s#admin.key#$who.key#; s#name: admin#name: $who#; s#user: admin#user: $who#" "$kc" >"$nd/$who.kubeconfig"
done

# --- the Pod network: a bridge with the node's address. Pods get an address on
# it and no default route, so they reach this machine's bridge address and
# each other, nothing else.
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge
  echo "$NODE_BRIDGE" >"$nd/bridge"
fi
ip addr replace "$gw/24" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
[ -f "$nd/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$nd/ip_forward.orig"
# A guard: a connection from this machine that kube-proxy DNATs anywhere but
# this Pod network (a kwok Pod's made-up address, say) is dropped here
# instead of leaving the machine.
iptables -w -N CANARY-GATE-GUARD 2>/dev/null || iptables -w -F CANARY-GATE-GUARD
iptables -w -A CANARY-GATE-GUARD -m conntrack --ctstate DNAT ! -d "$POD_CIDR" -j REJECT
iptables -w -C OUTPUT -j CANARY-GATE-GUARD 2>/dev/null || iptables -w -I OUTPUT -j CANARY-GATE-GUARD

mkdir -p "$nd/cni" "$nd/cni-ipam"
cat >"$nd/cni/10-canary-gate.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "canary-gate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$nd/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${net%.*}.10", "gateway": "$gw"}]]
      }
    }
  ]
}
CNI

# --- containerd: images in the cache (kept between runs), state under .cluster/node.
mkdir -p "$cache/containerd" "$nd/containerd"
sock="$nd/containerd.sock"
cat >"$nd/containerd.toml" <<TOML
version = 2
root = "$cache/containerd"
state = "$nd/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: a negative OOM score (the pause
  # container's) fails in runc unless it is clamped to ours.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni"
TOML
log "starting containerd"
run containerd containerd --config "$nd/containerd.toml" --log-level warn
wait_for containerd 30 ctr --address "$sock" version
crictl() { "$dir/bin/crictl" --runtime-endpoint "unix://$sock" --timeout 30s "$@"; }
# Sandboxes left by a run that was killed before node-down.sh: remove them.
crictl rmp -fa >/dev/null 2>&1 || true

have_image() { ctr --address "$sock" -n k8s.io images ls -q | grep -qx "$1"; }
import_image() { # ref, tar
  have_image "$1" && return 0
  log "importing $1 into containerd"
  ctr --address "$sock" -n k8s.io images import "$2" >/dev/null
  have_image "$1" || fail "importing $2 did not create image $1"
}
import_image "$PAUSE_IMAGE" "$images/pause.tar"
import_image "$PODINFO_IMAGE:$PODINFO_APP_VERSION-a" "$images/podinfo-a.tar"
import_image "$PODINFO_IMAGE:$PODINFO_APP_VERSION-b" "$images/podinfo-b.tar"

# --- kubelet
mkdir -p "$nd/kubelet" "$nd/pod-logs" "$nd/volume-plugins"
cat >"$nd/kubelet.yaml" <<KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $gw
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
# cgroup v1 here, no systemd: cgroupfs, no QoS cgroups, nothing reserved.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
localStorageCapacityIsolation: false
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# No cluster DNS: Pods get this machine's resolver (and have no route to it).
podLogsDir: $nd/pod-logs
volumePluginDir: $nd/volume-plugins
maxPods: 40
registerWithTaints:
- {key: canarygate.dev/real-node, value: "true", effect: NoSchedule}
KUBELET
log "starting kubelet (node $node, $gw)"
run kubelet "$dir/bin/kubelet" --config="$nd/kubelet.yaml" --kubeconfig="$nd/kubelet.kubeconfig" \
  --root-dir="$nd/kubelet" --cert-dir="$nd/kubelet/pki" --hostname-override="$node" --node-ip="$gw" \
  --node-labels=canarygate.dev/node=real --v=1
wait_for "node $node to register" 60 kubectl get node "$node"
# The node-lifecycle controller that would lift the not-ready taint is off.
kubectl taint node "$node" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true

# --- kube-proxy: iptables mode; ClusterIPs of this cluster DNAT to the Pods on the bridge.
cat >"$nd/kube-proxy.yaml" <<PROXY
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $node
bindAddress: $gw
clientConnection: {kubeconfig: $nd/kube-proxy.kubeconfig}
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
nodePortAddresses: ["$gw/32"]
# Leave this machine's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
PROXY
log "starting kube-proxy"
run kube-proxy "$dir/bin/kube-proxy" --config="$nd/kube-proxy.yaml" --v=1
wait_for "kube-proxy" 60 curl -sf "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
wait_for "node $node to be Ready" 90 kubectl wait --for=condition=Ready node "$node" --timeout=1s
log "node $node ready (Pods on $POD_CIDR, bridge $NODE_BRIDGE)"
