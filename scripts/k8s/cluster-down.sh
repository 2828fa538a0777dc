#!/usr/bin/env bash
# Stops the cluster scripts/k8s/cluster-up.sh started and undoes its host changes: processes by PID,
# containers and their shims, pod network namespaces, the CNI bridge, kube-proxy's iptables rules and the
# tables they created, cgroups, mounts, saved sysctls, and the cluster's directory. The cache of built
# binaries and images ($SANDPIT_K8S_CACHE, containerd's image store included) stays. Safe to run twice or after a failed start.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/k8s/lib.sh

K8S_RUN=${SANDPIT_K8S_RUN:-/var/lib/sandpit-k8s-cluster}
containerd_state=/run/sandpit-k8s-containerd
bridge=spk8s0
[[ -d $K8S_RUN ]] || exit 0
export CONTAINERD_ADDRESS=$containerd_state/containerd.sock
ctr_k8s() { timeout 20 ctr -n k8s.io "$@"; }

k8s_step "stopping the kubelet and the control plane"
k8s_stop kubelet kube-scheduler kube-controller-manager

# The pods' containers: killed through containerd, then their shims (which reap what is left).
if [[ -f $K8S_RUN/pids/containerd ]]; then
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  for ((i = 0; i < 50; i++)); do
    [[ -z $(ctr_k8s tasks ls 2>/dev/null | awk 'NR>1 && $3=="RUNNING"') ]] && break
    sleep 0.2
  done
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks rm -f "$t" >/dev/null 2>&1; done
  for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers rm "$c" >/dev/null 2>&1; done
fi
k8s_step "containers removed"
for f in "$containerd_state"/io.containerd.runtime.v2.task/k8s.io/*/shim.pid; do
  [[ -f $f ]] && kill -9 "$(cat "$f")" 2>/dev/null
done

# kube-proxy removes its own chains; the iptables tables it had to create are removed below.
if [[ -x $K8S_BIN/kube-proxy && -f $K8S_RUN/pids/kube-proxy ]]; then
  k8s_stop kube-proxy
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
fi
k8s_stop kube-proxy kube-apiserver containerd etcd
k8s_step "processes stopped"

# Pod network namespaces (made by the CNI plugins through containerd) and the bridge.
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
  if grep -qx "$ns" "$K8S_RUN/netns.before" 2>/dev/null; then continue; fi
  ip netns delete "$ns" 2>/dev/null
done
ip link delete "$bridge" 2>/dev/null

# Mounts under the cluster's directories (pod volumes, container root filesystems), deepest first.
awk -v a="$K8S_RUN" -v b="$containerd_state" -v c="$SANDPIT_K8S_CACHE/containerd" \
  'index($2, a) == 1 || index($2, b) == 1 || index($2, c) == 1 {print $2}' /proc/mounts |
  sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done

# The kubelet's pod cgroups, deepest first (empty once the containers are gone).
for controller in /sys/fs/cgroup/*/; do
  [[ -d ${controller}kubepods ]] && find "${controller}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

# kube-proxy turned sysctls on; put back what they were, and remove the iptables tables that did not exist.
if [[ -f $K8S_RUN/sysctls.saved ]]; then
  while IFS='=' read -r key value; do echo "$value" >"/proc/sys/$key" 2>/dev/null; done <"$K8S_RUN/sysctls.saved"
fi
if [[ -f $K8S_RUN/nft-tables.before ]]; then
  nft list tables 2>/dev/null | while read -r _ family name; do
    [[ $family == ip || $family == ip6 ]] || continue
    [[ $name =~ ^(filter|nat|mangle|raw|security)$ ]] || continue
    grep -qx "table $family $name" "$K8S_RUN/nft-tables.before" || nft delete table "$family" "$name"
  done
fi

# The kubelet's container log files (always under /var/log, whatever its root directory).
for d in /var/log/pods/* /var/log/containers/*; do
  [[ -e $d || -L $d ]] || continue
  grep -qxF "$d" "$K8S_RUN/pod-logs.before" 2>/dev/null || rm -rf "$d"
done

# containerd's root stays in the cache for its images; what it knew of pods goes (the containers and their
# snapshots were removed above).
rm -rf "$SANDPIT_K8S_CACHE/containerd/io.containerd.grpc.v1.cri"
rm -rf "$containerd_state" "$K8S_RUN"
k8s_step "cluster down"
