#!/usr/bin/env bash
# Validates deploy/kubernetes against a real Kubernetes API: starts etcd (Debian's etcd-server) and a
# kube-apiserver (built from Debian's source, cached) on loopback with throwaway certificates, runs
# `kubectl apply --dry-run=server -k` on the base and on the PostgreSQL overlay, and stops both by PID.
# Server-side dry run goes through the apiserver's decoding, defaulting, validation and admission, so it
# catches what a client-side check does not (unknown fields, invalid specs, immutable/forbidden values).
# Root; first run builds kube-apiserver and kubectl (minutes), later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
source scripts/k8s/lib.sh

k8s_apt_install etcd-server openssl ca-certificates curl
k8s_build kube-apiserver kubectl

K8S_RUN=$(mktemp -d /tmp/sandpit-k8s-dry-run.XXXXXX)
cleanup() {
  k8s_stop kube-apiserver etcd
  rm -rf "$K8S_RUN"
}
trap cleanup EXIT

etcd_port=$(k8s_free_port)
etcd_peer_port=$(k8s_free_port)
K8S_APISERVER_PORT=$(k8s_free_port)
k8s_make_pki "$K8S_RUN/pki"
pki=$K8S_RUN/pki

k8s_step "starting etcd on 127.0.0.1:$etcd_port"
k8s_start etcd etcd --name dry-run --data-dir "$K8S_RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "dry-run=http://127.0.0.1:$etcd_peer_port"
k8s_wait_for 60 etcd etcd curl -sf "http://127.0.0.1:$etcd_port/health"

k8s_step "starting kube-apiserver on 127.0.0.1:$K8S_APISERVER_PORT"
k8s_start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$K8S_APISERVER_PORT" --insecure-port 0 \
  --cert-dir "$K8S_RUN/apiserver-certs" --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local --authorization-mode Node,RBAC
export KUBECONFIG=$pki/admin.kubeconfig
kubectl=$K8S_BIN/kubectl
k8s_wait_for 120 kube-apiserver kube-apiserver "$kubectl" get --raw /readyz

# A namespaced object cannot be dry-run into a namespace that only exists as a dry run, so the namespace
# is created for real (this apiserver is thrown away afterwards) and then dry-run like everything else.
"$kubectl" apply -f deploy/kubernetes/base/namespace.yaml >/dev/null

# The check must be able to fail: an object the API server has to refuse (an unknown hostPath type) is
# refused here, or the dry run proves nothing.
if "$kubectl" apply --dry-run=server -f - >/dev/null 2>&1 <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: must-be-refused, namespace: sandpit}
spec:
  containers: [{name: c, image: x}]
  volumes: [{name: v, hostPath: {path: /x, type: NoSuchType}}]
EOF
then
  k8s_die "the API server accepted an invalid pod: the dry run would not catch invalid manifests"
fi

status=0
for dir in deploy/kubernetes deploy/kubernetes/with-postgres; do
  k8s_step "kubectl apply --dry-run=server -k $dir"
  if ! "$kubectl" apply --dry-run=server -k "$repo/$dir"; then
    echo "k8s dry-run: $dir was rejected by the API server" >&2
    status=1
  fi
done
k8s_step "dry run $([[ $status == 0 ]] && echo passed || echo FAILED)"
exit "$status"
