#!/usr/bin/env bash
# Builds the images deploy/kubernetes runs, without a registry, as OCI archives for `ctr images import`:
#   localhost/sandpit-node:dev      Debian 13 + node, runsc, nftables, iproute2, mmdebstrap… + this
#                                   checkout, built (`npm run build` first), with production dependencies
#   localhost/sandpit-postgres:dev  Debian 13 + postgresql, with an entrypoint that follows the official
#                                   postgres image's conventions (POSTGRES_USER/PASSWORD/DB, PGDATA)
# Root filesystems come from Debian's archive with mmdebstrap and are cached, packed as a base layer,
# per package list; only the layer holding the checkout is made again when the code changes. umoci packs
# the OCI images.
#
# Usage: scripts/k8s/build-image.sh [--import]   (--import: into containerd's k8s.io namespace, at
#        $CONTAINERD_ADDRESS or containerd's default socket). Prints the archives' paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
source scripts/k8s/lib.sh

import=""
[[ ${1:-} == --import ]] && import=1

mirror=${SANDPIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
images=$SANDPIT_K8S_CACHE/images
mkdir -p "$images"
k8s_apt_install mmdebstrap umoci

[[ -x packages/agent/build/sandpit-agent && -x packages/server/native/build/sandpit-runsc-launch &&
  -f packages/server/dist/index.js && -f packages/console/dist/index.html ]] ||
  k8s_die "build the checkout first (npm ci && npm run build)"

# What the server runs besides node: see scripts/install-system-deps.sh (the same list, minus the
# compilers that build the agent, which the image gets built). tini is PID 1: every sandbox's runsc
# process is re-parented to PID 1 when `runsc run -detach` returns, and node does not reap orphans, so
# without an init their zombies would make `runsc delete` wait forever.
node_packages=(tini nodejs runsc nftables iproute2 mmdebstrap e2fsprogs util-linux mount ca-certificates curl git tar
  gzip xz-utils procps conntrack attr zstd)
postgres_packages=(postgresql postgresql-client ca-certificates)

# A Debian 13 root filesystem with the packages given, packed once as a one-layer OCI layout (tag `dev`)
# and cached under a name made of its package list. Prints the layout's path.
base_layout() { # name packages...
  local name=$1
  shift
  local key
  key=$(printf '%s\n' "$mirror" "$@" | sha256sum | cut -c1-12)
  local layout=$images/$name-base-$key
  if [[ ! -d $layout ]]; then
    k8s_step "mmdebstrap $name root filesystem ($*)"
    local work
    work=$(mktemp -d "$images/.base-$name.XXXXXX")
    local hooks=(--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*')
    # The package makes a cluster of its own; the image's entrypoint makes one in PGDATA instead.
    [[ $name == postgres ]] &&
      hooks+=(--customize-hook='chroot "$1" sh -c "pg_lsclusters -h | while read v c rest; do pg_dropcluster \$v \$c; done"')
    mmdebstrap -q --format=tar --variant=minbase --include="$(
      IFS=,
      echo "$*"
    )" "${hooks[@]}" trixie "$work/rootfs.tar" "$mirror"
    umoci init --layout "$work/oci"
    umoci new --image "$work/oci:dev"
    umoci unpack --image "$work/oci:dev" "$work/bundle" >/dev/null
    tar -C "$work/bundle/rootfs" -xf "$work/rootfs.tar"
    umoci repack --image "$work/oci:dev" "$work/bundle"
    umoci gc --layout "$work/oci"
    mv "$work/oci" "$layout"
    rm -rf "$work"
  fi
  echo "$layout"
}

# An OCI archive $images/NAME.tar: the base layout plus one layer holding the top-level entries of a
# staging directory (added verbatim, so rebuilding it costs only that layer), entrypoint and env set.
pack() { # name base-layout staging-dir "entrypoint words" env...
  local name=$1 base=$2 stage=$3 entrypoint=$4
  shift 4
  local work
  work=$(mktemp -d "$images/.pack-$name.XXXXXX")
  # Blobs are content-addressed and never rewritten, so the copy links them; index.json is copied.
  mkdir "$work/oci"
  cp -al "$base/blobs" "$work/oci/blobs"
  cp "$base/index.json" "$base/oci-layout" "$work/oci/"
  # Top-level entries only: an entry for "." would give the image's / the staging directory's mode.
  (cd "$stage" && tar --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" -- *)
  umoci raw add-layer --image "$work/oci:dev" "$work/layer.tar"
  local config=(--config.workingdir /) word e
  for word in $entrypoint; do config+=(--config.entrypoint "$word"); done
  for e in "$@"; do config+=(--config.env "$e"); done
  umoci config --image "$work/oci:dev" "${config[@]}"
  umoci gc --layout "$work/oci"
  tar -C "$work/oci" -cf "$images/$name.tar.tmp" .
  mv "$images/$name.tar.tmp" "$images/$name.tar"
  rm -rf "$work"
}

path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The node image: the checkout as built, with only production dependencies (pruned from the installed
# node_modules: offline, and native modules such as better-sqlite3 stay as built for this node major).
k8s_step "staging the checkout"
stage=$(mktemp -d "$images/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
app=$stage/opt/sandpit
mkdir -p "$app/packages/agent/build" "$app/packages/server/native/build"
cp package.json package-lock.json "$app/"
cp packages/agent/build/sandpit-agent "$app/packages/agent/build/"
cp packages/server/native/build/sandpit-runsc-launch "$app/packages/server/native/build/"
cp -a packages/agent/code packages/agent/desktop "$app/packages/agent/"
for p in contract server sdk cli console; do
  mkdir -p "$app/packages/$p"
  cp packages/$p/package.json "$app/packages/$p/"
  cp -a packages/$p/dist "$app/packages/$p/"
  [[ -d packages/$p/bin ]] && cp -a packages/$p/bin "$app/packages/$p/"
done
cp -a node_modules "$app/"
(cd "$app" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts >/dev/null)
k8s_step "packing localhost/sandpit-node:dev ($(du -sh "$app" | cut -f1) of Sandpit)"
node_base=$(base_layout node "${node_packages[@]}")
pack sandpit-node "$node_base" "$stage" "/usr/bin/tini -- node /opt/sandpit/packages/cli/bin/sandpit.js serve" \
  "$path_env" SANDPIT_DATA_DIR=/var/lib/sandpit SANDPIT_LISTEN=0.0.0.0:8080

pg_tar=$images/sandpit-postgres.tar
if [[ ! -f $pg_tar || scripts/k8s/postgres-entrypoint.sh -nt $pg_tar || scripts/k8s/build-image.sh -nt $pg_tar ]]; then
  k8s_step "packing localhost/sandpit-postgres:dev"
  pgstage=$(mktemp -d "$images/.stage-pg.XXXXXX")
  install -D -m755 scripts/k8s/postgres-entrypoint.sh "$pgstage/usr/local/bin/docker-entrypoint.sh"
  pg_base=$(base_layout postgres "${postgres_packages[@]}")
  pack sandpit-postgres "$pg_base" "$pgstage" /usr/local/bin/docker-entrypoint.sh \
    "$path_env" PGDATA=/var/lib/postgresql/data
  rm -rf "$pgstage"
fi

if [[ -n $import ]]; then
  for name in sandpit-node sandpit-postgres; do
    k8s_step "importing localhost/$name:dev into containerd"
    ctr -n k8s.io images import --base-name "localhost/$name" "$images/$name.tar" >/dev/null
  done
fi
echo "$images/sandpit-node.tar"
echo "$images/sandpit-postgres.tar"
