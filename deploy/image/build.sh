#!/usr/bin/env bash
# `make image`: builds deploy/Dockerfile into the local image store as
# canary-gate:<package.json version>, without Docker and without pulling:
#   1. installs podman, buildah, runc and mmdebstrap with apt when missing;
#   2. makes (once) the local Node.js base image (base.sh);
#   3. podman build with that base as NODE_IMAGE (layers are cached, so a
#      warm build only recompiles what changed).
# Each step prints its time. NODE_IMAGE=node:20-slim uses a public base instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "[image] $*" >&2; }
step() { # description, then the command; prints how long it took
  local what=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  log "$what: $(( $(date +%s) - t0 ))s"
}

install_tools() {
  local missing=() p
  for p in podman buildah runc mmdebstrap; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${missing[@]}" >/dev/null
}

version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
tag=${CANARY_GATE_IMAGE:-canary-gate:$version}
t_all=$(date +%s)
step "tools (podman, buildah, runc, mmdebstrap)" install_tools
base=${NODE_IMAGE:-}
if [ -z "$base" ]; then
  t0=$(date +%s)
  base=$("$here/base.sh")
  log "base image $base: $(( $(date +%s) - t0 ))s"
fi
# Everything the build reads, and the base: an image built from the same
# inputs is kept as it is (podman's own layer cache takes about 10 s to say so).
inputs=(deploy/Dockerfile package.json package-lock.json tsconfig.json core webhook reconciler certs deploy)
digest=$(cd "$root" && {
  "$here/podman.sh" image inspect --format '{{.Id}}' "$base" 2>/dev/null || echo "$base"
  find "${inputs[@]}" -path deploy/image -prune -o -type f -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
if [ "$("$here/podman.sh" image inspect --format '{{index .Labels "canarygate.dev/inputs"}}' "$tag" 2>/dev/null)" = "$digest" ]; then
  log "$tag is up to date (inputs $digest): $(( $(date +%s) - t_all ))s"
  exit 0
fi
# A locally made base is in the store already; a public one may be pulled.
pull=(--pull=never)
[ -n "${NODE_IMAGE:-}" ] && pull=()
# npm inside the build trusts the same extra CAs as this machine's Node.
secret=()
[ -r "${NODE_EXTRA_CA_CERTS:-}" ] && secret=(--secret "id=node_extra_ca,src=$NODE_EXTRA_CA_CERTS")
build() {
  "$here/podman.sh" build --layers "${pull[@]}" "${secret[@]}" \
    --build-arg "NODE_IMAGE=$base" \
    --label "org.opencontainers.image.version=$version" --label "canarygate.dev/inputs=$digest" \
    -f "$root/deploy/Dockerfile" -t "$tag" "$root"
}
step "podman build $tag from $base" build
log "$tag built in $(( $(date +%s) - t_all ))s ($("$here/podman.sh" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
