#!/usr/bin/env bash
# Stops, kills or restarts one part of a running local control plane, with
# the command line up.sh started it with: the fault tests take the API server
# or etcd away in the middle of a rollout and bring it back.
#
#   test/cluster/component.sh kill|stop|start|restart NAME
#
# kill is SIGKILL (a crash: nothing is flushed or closed politely), stop is
# SIGTERM and a wait. start runs the recorded command again (same flags, same
# data directory); its log is appended to. CANARY_GATE_CLUSTER_DIR names the
# cluster's folder, as for up.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="${CANARY_GATE_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}"
action=${1:?usage: component.sh kill|stop|start|restart NAME}
name=${2:?usage: component.sh kill|stop|start|restart NAME}
pidfile="$dir/run/$name.pid"
cmdfile="$dir/run/$name.cmd"
[ -f "$cmdfile" ] || { echo "component.sh: no recorded command for $name in $dir/run (was it started by up.sh?)" >&2; exit 2; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

halt() { # signal
  running || return 0
  local pid; pid=$(cat "$pidfile")
  kill "-$1" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

start() {
  if running; then echo "component.sh: $name is already running" >&2; return 0; fi
  # The recorded line is this script's own printf %q output: eval only re-splits it.
  eval "nohup $(cat "$cmdfile") >>\"\$dir/logs/\$name.log\" 2>&1 &"
  echo $! >"$pidfile"
}

case "$action" in
  kill) halt KILL ;;
  stop) halt TERM ;;
  start) start ;;
  restart) halt TERM; start ;;
  *) echo "component.sh: unknown action $action (kill|stop|start|restart)" >&2; exit 2 ;;
esac
