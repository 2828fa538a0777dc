#!/usr/bin/env bash
# Installs the host packages Sandpit needs on Debian 12 (bookworm) or 13 (trixie), as root; with --test
# also those its test suite needs.
# runsc comes from Debian 13: bookworm's build has broken bind mounts and no systrap platform.
# The trixie source is pinned low so that nothing else is upgraded from it.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "install-system-deps: must run as root" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

if [[ $codename != trixie ]]; then
  if [[ ! -f /etc/apt/sources.list.d/sandpit-trixie.sources ]]; then
    cat > /etc/apt/sources.list.d/sandpit-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat > /etc/apt/preferences.d/sandpit-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    apt_updated=""
  fi
fi

# What the server needs.
# attr (setfattr) marks opaque directories of unpacked image layers; zstd unpacks zstd layers; conntrack
# counts the bytes of the egress audit log.
# python3-pip, -venv, -setuptools and -wheel install the Python SDK (packages/sdk-python) into a venv
# without PyPI: `pip install --no-build-isolation` builds it with Debian's setuptools and wheel.
packages=(nftables iproute2 mmdebstrap e2fsprogs util-linux musl-tools make gcc libc6-dev
  ca-certificates curl git tar gzip procps sqlite3 conntrack
  attr zstd python3 python3-pip python3-venv python3-setuptools python3-wheel)
# With --test, what the test suite needs as well:
# docker-registry, apache2-utils (htpasswd) and busybox-static are for the image tests: they run their
# own registries on loopback and build a tiny image from busybox.
# chromium is for the web console's browser tests (headless, driven by playwright-core); tmux drives the
# interactive `sandpit shell` test.
# postgresql is for the PostgreSQL store's tests: they start throwaway clusters of their own (initdb,
# pg_ctl) on unix sockets, so the cluster the package makes is stopped and disabled (below).
if [[ ${1:-} == --test ]]; then
  packages+=(docker-registry apache2-utils busybox-static chromium tmux postgresql)
fi
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
# Output is captured before it is matched: a pipe into `grep -q` or `head` can end runsc with SIGPIPE,
# which `pipefail` turns into a failure.
runsc_version=$(runsc --version 2>/dev/null || true)
runsc_ok=""
if [[ $runsc_version =~ 20(2[4-9]|[3-9][0-9])[0-9]{4} ]]; then
  runsc_ok=1
fi

if (( ${#missing[@]} )) || [[ -z $runsc_ok ]]; then
  apt-get update -qq
  if (( ${#missing[@]} )); then
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [[ -z $runsc_ok ]]; then
    if [[ $codename == trixie ]]; then
      apt-get install -y -qq --no-install-recommends runsc
    else
      apt-get install -y -qq --no-install-recommends -t trixie runsc
    fi
  fi
fi

# The package's own registry service is not wanted (tests start theirs on loopback ports).
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# Only when this script installed PostgreSQL: its default cluster is not wanted. A PostgreSQL that was
# there before is left alone (it may be the one SANDPIT_DATABASE_URL points to).
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
  # Without systemd, the package started its cluster through pg_ctlcluster.
  while read -r version cluster _ status _; do
    if [[ $status == online ]]; then
      pg_ctlcluster "$version" "$cluster" stop || true
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
fi

runsc_version=$(runsc --version)
echo "${runsc_version%%$'\n'*}"
