#!/usr/bin/env bash
# The offline base for images/ on machines with no container registry: a Debian bookworm rootfs
# (debootstrap, minbase) with this host's Node 20 and npm copied in (node needs only glibc and
# libstdc++), imported with `docker import`. Idempotent: an existing image is kept.
#   scripts/build-offline-base.sh [IMAGE]     default IMAGE: berth-offline-base:bookworm
set -euo pipefail
IMAGE=${1:-berth-offline-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "build-offline-base: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then log "needs root (debootstrap)"; exit 1; fi
command -v debootstrap >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }

node_bin=$(command -v node)
major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { log "host node is $("$node_bin" --version); need >= 20"; exit 1; }
npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..
npm_dir=$(readlink -f "$npm_dir")

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
log "debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker run --rm "$IMAGE" node --version))"
