#!/usr/bin/env bash
# Installs everything Sandpit needs that is missing on a Debian 12/13 host (as root): host packages,
# runsc, Node.js if absent or too old, npm dependencies, host limits for many sandboxes; then builds the agent and the TypeScript packages.
# --test: also the host packages the test suite needs (a registry, chromium, tmux, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh "$@"
bash scripts/host-limits.sh

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( node_major < 20 )); then
  echo "setup: installing Node.js 20 from Debian 13" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends -t trixie nodejs npm
fi

if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm run build
