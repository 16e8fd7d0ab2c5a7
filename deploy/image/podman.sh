#!/usr/bin/env bash
# podman with the settings it needs on hosts with hybrid cgroups (v1
# controllers plus cgroup2 at /sys/fs/cgroup/unified) and limits that cannot
# be raised: runc instead of crun (crun refuses that layout), cgroupfs instead
# of systemd, and rlimits no higher than the host's. Containers and builds use
# the host network only (no bridge, no CNI); builds isolate with chroot.
#
#   deploy/image/podman.sh run --rm canary-gate:0.1.0 --help
#   deploy/image/podman.sh images
#
# PODMAN_ULIMITS overrides the rlimits given to `run` and `build`.
set -euo pipefail
ulimits=(${PODMAN_ULIMITS:---ulimit nofile=1024:1024 --ulimit nproc=1000:1000})
global=(--runtime runc --cgroup-manager cgroupfs)
[ $# -gt 0 ] || exec podman "${global[@]}"
sub=$1
shift
case "$sub" in
  run) exec podman "${global[@]}" run "${ulimits[@]}" --network host "$@" ;;
  build) exec podman "${global[@]}" build --isolation chroot "${ulimits[@]}" --network host "$@" ;;
  *) exec podman "${global[@]}" "$sub" "$@" ;;
esac
