#!/usr/bin/env bash
# Removes everything test/cluster/node-up.sh started or created: the kubelet,
# every Pod sandbox (through the CRI, so the CNI plugin removes its veth and
# address), kube-proxy and its iptables rules, containerd and its shims, the
# mounts under .cluster/node, the bridge and the guard chain. Images stay in
# the containerd store in the cache.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}"
nd="$dir/node"
# shellcheck source=ports.env
. "$here/ports.env"
[ -d "$nd" ] || exit 0

stop() { # name: the process whose pid file up.sh wrote
  local f="$dir/run/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

sock="$nd/containerd.sock"
stop kubelet
if [ -S "$sock" ] && [ -x "$dir/bin/crictl" ]; then
  # Stops and removes every sandbox: CNI DEL removes the veth and the address.
  "$dir/bin/crictl" --runtime-endpoint "unix://$sock" --timeout 30s rmp -fa >/dev/null 2>&1 || true
fi
stop kube-proxy
[ -x "$dir/bin/kube-proxy" ] && "$dir/bin/kube-proxy" --cleanup >/dev/null 2>&1
stop containerd
# Shims outlive containerd: each wrote its pid into the state folder.
for f in "$nd"/containerd/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
done
for f in "$nd"/containerd/io.containerd.runtime.v2.task/*/*/init.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
done

# Mounts under .cluster/node (volumes, sandbox shm, network namespaces, rootfs), deepest first.
awk -v p="$nd/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
done

# The bridge node-up.sh created (its veths went with the sandboxes' namespaces).
if [ -f "$nd/bridge" ]; then
  ip link del "$(cat "$nd/bridge")" 2>/dev/null
fi
# iptables: the guard chain, and the KUBE-* chains kubelet and kube-proxy
# leave (no other kubelet or kube-proxy runs on this machine).
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  "$ipt" -w -D OUTPUT -j CANARY-GATE-GUARD 2>/dev/null
  for t in filter nat mangle; do
    "$ipt" -w -t "$t" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CANARY-GATE-)' |
      while read -r rule; do
        # shellcheck disable=SC2086
        "$ipt" -w -t "$t" -D ${rule#-A } 2>/dev/null
      done
    for c in $("$ipt" -w -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\|CANARY-GATE-[A-Z-]*\)$/\1/p'); do
      "$ipt" -w -t "$t" -F "$c" 2>/dev/null
    done
    for c in $("$ipt" -w -t "$t" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\|CANARY-GATE-[A-Z-]*\)$/\1/p'); do
      "$ipt" -w -t "$t" -X "$c" 2>/dev/null
    done
  done
done
[ -f "$nd/ip_forward.orig" ] && cat "$nd/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward 2>/dev/null
rm -rf "$nd"
echo "[node] stopped" >&2
