#!/usr/bin/env bash
# A real single-node Kubernetes (1.20.2) on this host for `npm run test:k8s`: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy (built from Debian's source, cached),
# containerd + runc + the CNI bridge plugin from Debian, no registry (a pause image compiled from the
# Kubernetes source; pods use imagePullPolicy: Never). Stop it with scripts/k8s/cluster-down.sh.
#
# Everything listens on loopback: the apiserver and kubelet on 127.0.0.1, NodePorts only on 127.0.0.0/8.
# So `kubectl exec/logs/port-forward` do not work (the apiserver reaches a kubelet at an address the node
# advertises, and a node cannot advertise loopback); container logs are in /var/log/pods.
# Host changes, all undone by cluster-down.sh: the CNI bridge `spk8s0` (pods in 10.244.0.0/24), the
# iptables rules of kube-proxy (Services in 10.96.0.0/16), the cgroups under /kubepods, and the sysctls
# that kube-proxy sets (their old values are saved first).
#
# Only runc runs pods here: the Sandpit node pod is the gVisor *host* (it starts runsc itself), so no
# gVisor RuntimeClass or containerd-shim-runsc-v1 is needed.
#
# Writes $SANDPIT_K8S_RUN/env (KUBECONFIG, CONTAINERD_ADDRESS, the node's name) for the caller.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/k8s/lib.sh

K8S_RUN=${SANDPIT_K8S_RUN:-/var/lib/sandpit-k8s-cluster}
[[ -f $K8S_RUN/env ]] && k8s_die "a cluster is already up ($K8S_RUN/env); stop it with scripts/k8s/cluster-down.sh"
export K8S_NODE_NAME=sandpit-k8s-node
bridge=spk8s0
pod_cidr=10.244.0.0/24
service_cidr=10.96.0.0/16
containerd_state=/run/sandpit-k8s-containerd
# containerd's root (image content and unpacked layers) is kept in the cache: importing an image that is
# already there costs nothing, and cluster-down.sh does not have to delete a gigabyte of files.

k8s_step "host packages"
k8s_apt_install etcd-server containerd runc containernetworking-plugins iptables conntrack umoci mmdebstrap \
  openssl ca-certificates curl gcc libc6-dev
k8s_step "Kubernetes binaries (cached in $K8S_BIN)"
k8s_build kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy

# The pause image (the pod sandbox's PID 1), compiled statically from the Kubernetes source.
pause_tar=$SANDPIT_K8S_CACHE/images/pause.tar
if [[ ! -f $pause_tar ]]; then
  k8s_step "building the pause image"
  k8s_fetch_source
  work=$(mktemp -d)
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:3.2"
  umoci unpack --image "$work/oci:3.2" "$work/bundle" >/dev/null
  gcc -Os -static -o "$work/bundle/rootfs/pause" "$K8S_SRC/build/pause/linux/pause.c"
  strip "$work/bundle/rootfs/pause"
  umoci repack --image "$work/oci:3.2" "$work/bundle"
  umoci config --image "$work/oci:3.2" --config.entrypoint /pause
  umoci gc --layout "$work/oci"
  mkdir -p "$(dirname "$pause_tar")"
  tar -C "$work/oci" -cf "$pause_tar.tmp" .
  mv "$pause_tar.tmp" "$pause_tar"
  rm -rf "$work"
fi

mkdir -p "$K8S_RUN"/{pids,logs,cni,kubelet,manifests}
# What cluster-down.sh restores.
for s in net/ipv4/conf/all/route_localnet net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables; do
  [[ -f /proc/sys/$s ]] && echo "$s=$(cat "/proc/sys/$s")"
done >"$K8S_RUN/sysctls.saved"
nft list tables >"$K8S_RUN/nft-tables.before" 2>/dev/null || true
ip netns list 2>/dev/null | awk '{print $1}' >"$K8S_RUN/netns.before"
ls -d /var/log/pods/* /var/log/containers/* >"$K8S_RUN/pod-logs.before" 2>/dev/null || true

etcd_port=$(k8s_free_port)
etcd_peer_port=$(k8s_free_port)
export K8S_APISERVER_PORT
K8S_APISERVER_PORT=$(k8s_free_port)
kubelet_port=$(k8s_free_port)
proxy_healthz_port=$(k8s_free_port)
proxy_metrics_port=$(k8s_free_port)
# The address the apiserver advertises in the `kubernetes` Service (it must not be loopback); it still
# binds to loopback only.
node_ip=$(ip -4 -o route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[[ -n $node_ip ]] || k8s_die "cannot tell the host's IPv4 address"
k8s_make_pki "$K8S_RUN/pki" "IP:$node_ip"
pki=$K8S_RUN/pki
cat >"$K8S_RUN/env" <<EOF
export KUBECONFIG=$pki/admin.kubeconfig
export CONTAINERD_ADDRESS=$containerd_state/containerd.sock
export SANDPIT_K8S_NODE=$K8S_NODE_NAME
export SANDPIT_K8S_KUBECTL=$K8S_BIN/kubectl
EOF
source "$K8S_RUN/env"
kubectl=$K8S_BIN/kubectl

cat >"$K8S_RUN/containerd.toml" <<EOF
version = 2
root = "$SANDPIT_K8S_CACHE/containerd"
state = "$containerd_state"
[grpc]
  address = "$containerd_state/containerd.sock"
[ttrpc]
  address = "$containerd_state/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.2"
  # root here lacks CAP_SYS_RESOURCE: a negative oom_score_adj would fail with EPERM
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_RUN/cni"
EOF
cat >"$K8S_RUN/cni/10-sandpit-k8s.conflist" <<EOF
{ "cniVersion": "0.4.0", "name": "sandpit-k8s", "plugins": [
  { "type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
    "ipam": { "type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$K8S_RUN/cni-ipam" } },
  { "type": "loopback" } ] }
EOF

k8s_step "starting etcd, containerd"
k8s_start etcd etcd --name sandpit-k8s --data-dir "$K8S_RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "sandpit-k8s=http://127.0.0.1:$etcd_peer_port"
k8s_start containerd containerd --config "$K8S_RUN/containerd.toml"
k8s_wait_for 60 containerd containerd ctr version
ctr -n k8s.io images import --base-name localhost/pause "$pause_tar" >/dev/null
k8s_wait_for 60 etcd etcd curl -sf "http://127.0.0.1:$etcd_port/health"

k8s_step "starting kube-apiserver on 127.0.0.1:$K8S_APISERVER_PORT"
k8s_start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address "$node_ip" --secure-port "$K8S_APISERVER_PORT" --insecure-port 0 \
  --cert-dir "$K8S_RUN/apiserver-certs" --service-cluster-ip-range "$service_cidr" --allow-privileged=true \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
  --kubelet-preferred-address-types InternalIP --service-node-port-range 30000-32767 \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
k8s_wait_for 120 kube-apiserver kube-apiserver "$kubectl" get --raw /readyz

k8s_step "starting kube-controller-manager, kube-scheduler"
k8s_start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$pki/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$pki/controller-manager.kubeconfig" --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --port 0 --secure-port 0 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --service-cluster-ip-range "$service_cidr"
k8s_start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$pki/scheduler.kubeconfig" \
  --authentication-kubeconfig "$pki/scheduler.kubeconfig" --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --port 0 --secure-port 0 --leader-elect=false

k8s_step "starting kubelet ($K8S_NODE_NAME), kube-proxy"
cat >"$K8S_RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failSwapOn: false
# kube-proxy owns the iptables rules; the kubelet adds none of its own
makeIPTablesUtilChains: false
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $pki/ca.crt}}
authorization: {mode: AlwaysAllow}
staticPodPath: $K8S_RUN/manifests
# no cluster DNS here: pods use the host's resolver
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
k8s_start kubelet "$K8S_BIN/kubelet" --config "$K8S_RUN/kubelet.yaml" --kubeconfig "$pki/kubelet.kubeconfig" \
  --hostname-override "$K8S_NODE_NAME" --node-ip 127.0.0.1 --root-dir "$K8S_RUN/kubelet" \
  --container-runtime remote --container-runtime-endpoint "unix://$containerd_state/containerd.sock"
# Conntrack sizes are left as the host has them (0 = do not touch); NodePorts only on loopback.
k8s_start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$pki/kube-proxy.kubeconfig" \
  --hostname-override "$K8S_NODE_NAME" --proxy-mode iptables --cluster-cidr "$pod_cidr" --masquerade-all \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
  --healthz-bind-address "127.0.0.1:$proxy_healthz_port" --metrics-bind-address "127.0.0.1:$proxy_metrics_port" \
  --nodeport-addresses 127.0.0.0/8
node_ready() { "$kubectl" get node "$K8S_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
k8s_wait_for 180 "node $K8S_NODE_NAME Ready" kubelet node_ready
k8s_wait_for 60 "the default service account" kube-controller-manager "$kubectl" get serviceaccount default
k8s_step "cluster up: node $K8S_NODE_NAME Ready (source $K8S_RUN/env)"
