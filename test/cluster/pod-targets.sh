#!/usr/bin/env bash
# Prometheus service discovery for the real node's Pods: on every change, lists
# the Pods on canary-gate-node annotated prometheus.io/scrape=true from the
# API server and writes them as file_sd targets (address podIP:prometheus.io/port,
# labels namespace and pod). Debian's Prometheus is built without
# kubernetes_sd_configs, so this plays that part. up.sh runs it, down.sh stops it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}"
out="$dir/prometheus/pods/real-node.json"
tpl='{range .items[?(@.metadata.annotations.prometheus\.io/scrape=="true")]}{.metadata.namespace} {.metadata.name} {.status.podIP} {.metadata.annotations.prometheus\.io/port} {.status.phase}{"\n"}{end}'
kubectl() { "$dir/bin/kubectl" --kubeconfig "$dir/prometheus.kubeconfig" "$@"; }
last=""
relist() {
  local list json
  list=$(kubectl --request-timeout=5s get pods -A --field-selector spec.nodeName=canary-gate-node -o jsonpath="$tpl" 2>/dev/null) || return 0
  json=$(awk 'BEGIN { printf "[" }
    $5 == "Running" && $3 != "" && $4 ~ /^[0-9]+$/ {
      printf "%s{\"targets\":[\"%s:%s\"],\"labels\":{\"job\":\"kubernetes-pods\",\"namespace\":\"%s\",\"pod\":\"%s\"}}", (n++ ? "," : ""), $3, $4, $1, $2
    }
    END { print "]" }' <<<"$list")
  if [ "$json" != "$last" ]; then
    printf '%s\n' "$json" >"$out.tmp" && mv "$out.tmp" "$out"
    last=$json
  fi
}
# List, then list again on every change the watch reports; the watch ends
# after five minutes (every call has a timeout) and starts over.
watch_pid=""
trap '[ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null; exit 0' TERM INT
while :; do
  relist
  exec 3< <(exec "$dir/bin/kubectl" --kubeconfig "$dir/prometheus.kubeconfig" --request-timeout=300s \
    get pods -A --field-selector spec.nodeName=canary-gate-node --watch-only -o name 2>/dev/null)
  watch_pid=$!
  while read -r _ <&3; do relist; done
  exec 3<&-
  watch_pid=""
  sleep 1
done
