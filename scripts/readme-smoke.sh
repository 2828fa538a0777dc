#!/usr/bin/env bash
# Proves the README's first command on this checkout: runs it exactly as written (in the background, on a free
# loopback port and a temporary data directory), then, as a new user would, creates a sandbox with
# `npx sandpit create`, runs `npx sandpit exec ID -- echo ok`, removes the sandbox and stops the server.
# Run as root from the repository root: bash scripts/readme-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

serve_line='bash scripts/setup.sh && npx sandpit serve'
if ! grep -qxF "$serve_line" README.md; then
  echo "readme-smoke: the README no longer opens with \"$serve_line\": update this script with it" >&2
  exit 1
fi

port=$(node -e 'const s=require("node:net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
data_dir=$(mktemp -d /var/tmp/sandpit-readme-smoke.XXXXXX)
log="$data_dir.log"
export SANDPIT_LISTEN="127.0.0.1:$port" SANDPIT_DATA_DIR="$data_dir" SANDPIT_URL="http://127.0.0.1:$port"
# Templates are shared with the test suite (built once per machine); the CI's test run reuses this build.
export SANDPIT_TEMPLATES_DIR="${SANDPIT_TEMPLATES_DIR:-/var/lib/sandpit-test/templates}"
# A prefix and subnet of its own, so that the smoke run cannot meet a server or test already on this host.
export SANDPIT_NET_PREFIX=rs SANDPIT_SANDBOX_SUBNET=10.199.0.0
unset SANDPIT_API_KEY

server_pid=""
sandbox_id=""
finish() {
  status=$?
  if [[ -n $sandbox_id ]]; then npx sandpit rm "$sandbox_id" >/dev/null 2>&1 || true; fi
  if [[ -n $server_pid ]] && kill -0 -- "-$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
  if (( status != 0 )); then
    echo "readme-smoke: FAILED; the server's log ends with:" >&2
    tail -n 60 "$log" >&2 || true
  fi
  rm -rf "$data_dir" "$log"
  exit "$status"
}
trap finish EXIT

echo "readme-smoke: $serve_line   (SANDPIT_LISTEN=$SANDPIT_LISTEN, SANDPIT_DATA_DIR=$data_dir)"
# setsid: the server and everything it started form one process group, stopped together at the end.
setsid bash -c "$serve_line" >"$log" 2>&1 &
server_pid=$!

# The server prints a generated API key once on its first start, as the README says; a user copies it.
for _ in $(seq 1 1800); do
  kill -0 "$server_pid" 2>/dev/null || { echo "readme-smoke: the server exited before it was ready" >&2; exit 1; }
  key=$(grep -A2 'Sandpit API key for organisation "default"' "$log" | grep -oE '^  \S+' | tr -d ' ' || true)
  if [[ -n $key ]] && curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null; then break; fi
  sleep 0.5
done
[[ -n ${key:-} ]] || { echo "readme-smoke: no generated API key in the server's output" >&2; exit 1; }
export SANDPIT_API_KEY=$key
echo "readme-smoke: server up on port $port; generated key read from its output"

echo "readme-smoke: npx sandpit create"
sandbox_id=$(npx sandpit create)
echo "readme-smoke: created $sandbox_id"
out=$(npx sandpit exec "$sandbox_id" -- echo ok)
echo "readme-smoke: npx sandpit exec $sandbox_id -- echo ok  ->  $out"
[[ $out == ok ]] || { echo "readme-smoke: expected \"ok\"" >&2; exit 1; }
npx sandpit rm "$sandbox_id" >/dev/null
sandbox_id=""

# A normal stop leaves nothing of the server's on the host. The whole process group is waited for: the
# shell and npx in front of the server end at once on SIGTERM, the server only when it has cleaned up.
kill -TERM -- "-$server_pid"
stop_started=$(date +%s%N)
for _ in $(seq 1 300); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 -- "-$server_pid" 2>/dev/null; then echo "readme-smoke: the server did not stop on SIGTERM" >&2; exit 1; fi
echo "readme-smoke: the server stopped $(( ($(date +%s%N) - stop_started) / 1000000 )) ms after SIGTERM"
server_pid=""
if nft list table inet "sandpit_$SANDPIT_NET_PREFIX" >/dev/null 2>&1; then
  echo "readme-smoke: the server left its nftables table sandpit_$SANDPIT_NET_PREFIX behind" >&2
  nft delete table inet "sandpit_$SANDPIT_NET_PREFIX"
  exit 1
fi
if ip netns list | grep -q "^$SANDPIT_NET_PREFIX-"; then
  echo "readme-smoke: the server left network namespaces behind" >&2
  exit 1
fi
echo "readme-smoke: passed"
