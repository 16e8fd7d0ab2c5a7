#!/usr/bin/env bash
# Stops every process test/cluster/up.sh started and removes the cluster's state
# (certificates are kept so a restart is quicker).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}"
"$here/node-down.sh"
[ -d "$dir/run" ] || exit 0
for name in flux-kustomize-controller flux-source-controller flux-git-server traefik pod-targets prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$dir/run/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done
rm -rf "$dir/etcd" "$dir/prometheus/data" "$dir/flux" "$dir/flux.env" "$dir/nodes-ready" "$dir/started-by-e2e"
echo "[cluster] stopped" >&2
