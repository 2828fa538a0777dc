#!/usr/bin/env bash
# `npm run test:k8s`: a real single-node Kubernetes on this host (scripts/k8s/cluster-up.sh), the node and
# PostgreSQL images built and imported (scripts/k8s/build-image.sh), deploy/kubernetes/with-postgres
# applied (through tests/k8s/overlay), then sandboxes driven through the Service with the CLI and SDK
# (tests/k8s/service.k8s.ts), then everything torn down. Root; the checkout built (npm run build).
# Binaries and root filesystems are cached under /var/cache/sandpit-k8s; the node pod uses the test
# suite's built templates (tests/helpers/global-setup.ts builds any that are missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
source scripts/k8s/lib.sh

[[ $(id -u) == 0 ]] || k8s_die "test:k8s must run as root"
[[ -f packages/cli/dist/main.js ]] || k8s_die "build the checkout first (npm run build)"
test_dir=/var/lib/sandpit-k8s-test
export SANDPIT_K8S_RUN=/var/lib/sandpit-k8s-cluster
kubectl=$K8S_BIN/kubectl

# The sandboxes' cgroups live in the host's tree under /sandpit/<id>, named after the runsc containers in
# the node's data directory; anything a failed run left there is removed with them.
remove_sandbox_cgroups() {
  local state=$test_dir/data/runsc id controller
  [[ -d $state ]] || return 0
  for id in $(ls "$state" 2>/dev/null); do
    [[ $id =~ ^sbx_ ]] || continue
    for controller in /sys/fs/cgroup/*/sandpit/"$id"; do [[ -d $controller ]] && rmdir "$controller" 2>/dev/null; done
  done
}

status=1
cleanup() {
  set +e
  if [[ $status != 0 && -f $SANDPIT_K8S_RUN/env ]]; then
    echo "--- test:k8s failed; cluster state and logs:" >&2
    "$kubectl" get nodes,pods,pvc,svc -A -o wide >&2
    "$kubectl" -n sandpit describe pods 2>&1 | tail -n 60 >&2
    # Container logs straight from the kubelet's files: the apiserver cannot reach this kubelet for
    # `kubectl logs` (it listens on loopback, which a node cannot advertise).
    for log in /var/log/pods/sandpit_*/*/*.log; do
      [[ -f $log ]] || continue
      echo "--- $log (last lines)" >&2
      tail -n 20 "$log" >&2
    done
    for log in "$SANDPIT_K8S_RUN"/logs/*.log; do
      echo "--- $(basename "$log") (last lines)" >&2
      tail -n 8 "$log" >&2
    done
  fi
  k8s_step "tearing down"
  bash scripts/k8s/cluster-down.sh
  remove_sandbox_cgroups
  awk -v d="$test_dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$test_dir"
  k8s_step "test:k8s $([[ $status == 0 ]] && echo passed || echo FAILED)"
}
trap cleanup EXIT

s=$SECONDS
bash scripts/k8s/cluster-up.sh
up_seconds=$((SECONDS - s))
source "$SANDPIT_K8S_RUN/env"

s=$SECONDS
bash scripts/k8s/build-image.sh --import >/dev/null
image_seconds=$((SECONDS - s))

k8s_step "deploying deploy/kubernetes/with-postgres"
s=$SECONDS
"$kubectl" label node "$SANDPIT_K8S_NODE" sandpit.dev/node=true >/dev/null
mkdir -p "$test_dir"
# Volumes for the two claims (a real cluster has a provisioner; this one has none): host directories.
pv() { # name namespace/claim path access-mode
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: $1}
spec:
  capacity: {storage: 100Gi}
  accessModes: [$4]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: ""
  claimRef: {namespace: ${2%/*}, name: ${2#*/}}
  hostPath: {path: $3, type: DirectoryOrCreate}
---
EOF
}
{
  pv sandpit-k8s-test-shared sandpit/sandpit-shared "$test_dir/shared" ReadWriteMany
  pv sandpit-k8s-test-postgres sandpit/data-sandpit-postgres-0 "$test_dir/postgres" ReadWriteOnce
} | "$kubectl" apply -f - >/dev/null
"$kubectl" apply -k tests/k8s/overlay
# No cluster DNS here: the database URL names the PostgreSQL Service by its ClusterIP. The nodes wait
# (CreateContainerConfigError) until this secret exists.
pg_ip=$("$kubectl" -n sandpit get service sandpit-postgres -o 'jsonpath={.spec.clusterIP}')
pg_password=$(openssl rand -hex 24)
api_key=$(openssl rand -hex 32)
"$kubectl" -n sandpit create secret generic sandpit --from-literal=api-key="$api_key" \
  --from-literal=cluster-secret="$(openssl rand -hex 32)" --from-literal=postgres-password="$pg_password" \
  --from-literal=database-url="postgres://sandpit:$pg_password@$pg_ip:5432/sandpit" >/dev/null
"$kubectl" -n sandpit rollout status statefulset/sandpit-postgres --timeout=300s
# (`rollout status` does not follow an OnDelete DaemonSet.)
nodes_ready() {
  local counts
  counts=$("$kubectl" -n sandpit get daemonset sandpit-node -o 'jsonpath={.status.desiredNumberScheduled} {.status.numberReady}')
  [[ $counts =~ ^([1-9][0-9]*)\ ([0-9]+)$ && ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]]
}
k8s_wait_for 300 "the node pods to be ready" "" nodes_ready
deploy_seconds=$((SECONDS - s))

svc_ip=$("$kubectl" -n sandpit get service sandpit -o 'jsonpath={.spec.clusterIP}')
k8s_step "Service sandpit at http://$svc_ip (cluster up ${up_seconds}s, images ${image_seconds}s, deploy ${deploy_seconds}s)"
k8s_wait_for 60 "the Service to answer" "" curl -sf "http://$svc_ip/v1/health"

SANDPIT_K8S_URL=http://$svc_ip SANDPIT_K8S_API_KEY=$api_key SANDPIT_K8S_KUBECTL=$kubectl \
  SANDPIT_K8S_DATABASE_URL="postgres://sandpit:$pg_password@$pg_ip:5432/sandpit" \
  npx vitest run --config tests/k8s/vitest.config.ts
status=0
