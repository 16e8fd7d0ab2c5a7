#!/usr/bin/env bash
# Makes, once, a local Node.js base image for deploy/Dockerfile on machines
# that cannot pull node:20-slim: a minimal Debian bookworm root filesystem
# from Debian's own packages (mmdebstrap --variant=minbase), plus this
# machine's Node.js binary and npm, imported into the local image store.
# Prints the image name. Idempotent: an existing image is reused.
#
#   deploy/image/base.sh            # -> localhost/canary-gate-node:v20.20.2-bookworm
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
podman=("$here/podman.sh")
log() { echo "[image] $*" >&2; }

node_path=$(command -v node) || { echo "node (20.19 or newer) is required to make the base image" >&2; exit 1; }
node_bin=$(readlink -f "$node_path")
node_version=$("$node_bin" --version)
major=${node_version#v}; major=${major%%.*}
minor=${node_version#v*.}; minor=${minor%%.*}
if [ "$major" -lt 20 ] || { [ "$major" = 20 ] && [ "$minor" -lt 19 ]; }; then
  echo "node $node_version is too old for canary-gate (package.json engines: >=20.19)" >&2
  exit 1
fi
npm_dir=$(dirname "$(dirname "$node_bin")")/lib/node_modules/npm
[ -f "$npm_dir/bin/npm-cli.js" ] || { echo "npm not found next to $node_bin (looked in $npm_dir)" >&2; exit 1; }

image=${CANARY_GATE_BASE_IMAGE:-localhost/canary-gate-node:$node_version-bookworm}
if "${podman[@]}" image exists "$image"; then
  echo "$image"
  exit 0
fi

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: make image (deploy/image/build.sh) installs it" >&2; exit 1; }
done
t0=$(date +%s)
log "making $image: Debian bookworm (minbase) from Debian's packages, node $node_version and npm $("$node_bin" "$npm_dir/bin/npm-cli.js" --version) from this machine"
# The copied binary must find every library it links in the new root: the
# hook fails the build when ldd reports one missing.
mmdebstrap --quiet --variant=minbase --include=ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='mkdir -p "$1/usr/local/bin" "$1/usr/local/lib/node_modules"' \
  --customize-hook="copy-in $node_bin /usr/local/bin" \
  --customize-hook="copy-in $npm_dir /usr/local/lib/node_modules" \
  --customize-hook='ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
  --customize-hook='ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
  --customize-hook='if chroot "$1" ldd /usr/local/bin/node | grep "not found"; then echo "node needs libraries the base lacks" >&2; exit 1; fi' \
  --customize-hook='chroot "$1" node --version >/dev/null' \
  bookworm - |
  "${podman[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    --message "Debian bookworm minbase with node $node_version" \
    - "$image" >/dev/null
log "base image $image made in $(( $(date +%s) - t0 ))s"
echo "$image"
