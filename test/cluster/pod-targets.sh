#!/usr/bin/env bash
# Prometheus service discovery for the real node's Pods: every second, lists
# the Pods on canary-gate-node annotated prometheus.io/scrape=true from the
# API server and writes them as file_sd targets (address podIP:prometheus.io/port,
# labels namespace and pod). Debian's Prometheus is built without
# kubernetes_sd_configs, so this plays that part. up.sh runs it, down.sh stops it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="$(cd "$here/../.." && pwd)/.cluster"
out="$dir/prometheus/pods/real-node.json"
tpl='{range .items[?(@.metadata.annotations.prometheus\.io/scrape=="true")]}{.metadata.namespace} {.metadata.name} {.status.podIP} {.metadata.annotations.prometheus\.io/port} {.status.phase}{"\n"}{end}'
last=""
while :; do
  if list=$("$dir/bin/kubectl" --kubeconfig "$dir/prometheus.kubeconfig" --request-timeout=5s get pods -A \
    --field-selector spec.nodeName=canary-gate-node -o jsonpath="$tpl" 2>/dev/null); then
    json=$(awk 'BEGIN { printf "[" }
      $5 == "Running" && $3 != "" && $4 ~ /^[0-9]+$/ {
        printf "%s{\"targets\":[\"%s:%s\"],\"labels\":{\"job\":\"kubernetes-pods\",\"namespace\":\"%s\",\"pod\":\"%s\"}}", (n++ ? "," : ""), $3, $4, $1, $2
      }
      END { print "]" }' <<<"$list")
    if [ "$json" != "$last" ]; then
      printf '%s\n' "$json" >"$out.tmp" && mv "$out.tmp" "$out"
      last=$json
    fi
  fi
  sleep 1
done
