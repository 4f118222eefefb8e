#!/usr/bin/env bash
# Builds the small offline images the integration tests run (no registry needed):
#   berth-test-busybox:latest  a static busybox rootfs (sh, sleep, trap, nc ...) plus the host's git, for scripted agents
# Idempotent: an image that exists is left alone. Needs busybox-static (installed from Debian as root).
set -euo pipefail

IMAGE=${BERTH_TEST_BUSYBOX_IMAGE:-berth-test-busybox:latest}
# Bump when the rootfs below changes, so machines with an older image rebuild it.
VERSION=3
log() { echo "build-test-images: $*" >&2; }

have=$(docker image inspect -f '{{index .Config.Labels "dev.berth.test.version"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$VERSION" ]; then
  exit 0
fi

bb=$(command -v busybox || true)
is_static() { local out; out=$(LC_ALL=C ldd "$1" 2>&1 || true); grep -q "not a dynamic executable\|statically linked" <<<"$out"; }
if [ -z "$bb" ] || ! is_static "$bb"; then
  if [ "$(id -u)" = 0 ]; then
    log "installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    }
    bb=/bin/busybox
  else
    log "need a static busybox: sudo apt-get install busybox-static"
    exit 1
  fi
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,workspace,shared,agent,proc,sys,dev}
# /agent is each session's own volume; a new volume copies this directory's mode, so any agent uid can write it.
chmod 1777 "$root/tmp" "$root/agent"
cp "$bb" "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
  [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
done
# git (for agents that commit) with the shared libraries it needs, copied from this host.
copy_with_libs() {
  local bin=$1
  mkdir -p "$root$(dirname "$bin")"
  cp -L "$bin" "$root$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
if command -v git >/dev/null 2>&1; then
  copy_with_libs "$(command -v git)"
fi
printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/agent:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin:/usr/bin' \
  --change 'WORKDIR /workspace' \
  --change 'LABEL dev.berth.test=true' \
  --change "LABEL dev.berth.test.version=$VERSION" \
  --change 'CMD ["sh"]' \
  - "$IMAGE" >/dev/null
log "built $IMAGE"
