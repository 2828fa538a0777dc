# Shared by scripts/k8s/*.sh (sourced, not run): packages, the Kubernetes source, cached server binaries,
# throwaway certificates, and starting/stopping processes by PID.
#
# Everything comes from Debian's archive. Kubernetes servers are not packaged in Debian; bookworm's
# `kubernetes` *source* package (1.20.2) still holds them, and builds offline with bookworm's Go 1.19 in
# GOPATH mode (module mode fails: "updates to go.mod needed, disabled by -mod=vendor"). Built binaries are
# cached under $SANDPIT_K8S_CACHE so only the first run pays for the build.

SANDPIT_K8S_CACHE=${SANDPIT_K8S_CACHE:-/var/cache/sandpit-k8s}
K8S_VERSION=1.20.2
K8S_SOURCE_VERSION=1.20.5+really1.20.2-1.1+deb12u1
K8S_BIN=$SANDPIT_K8S_CACHE/bin
K8S_SRC=$SANDPIT_K8S_CACHE/src/kubernetes-$K8S_VERSION
export DEBIAN_FRONTEND=noninteractive

k8s_t0=${k8s_t0:-$(date +%s)}
k8s_step() { echo "[k8s +$(($(date +%s) - k8s_t0))s] $*" >&2; }
k8s_die() {
  echo "k8s: $*" >&2
  exit 1
}

# Installs the Debian packages named that are not installed yet (one apt-get call; apt-get update once).
k8s_apt_install() {
  local missing=() p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "${p%%/*}" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  k8s_step "apt-get install ${missing[*]}"
  if [[ -z ${k8s_apt_updated:-} ]]; then
    apt-get update -qq
    k8s_apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Downloads and unpacks bookworm's kubernetes source package with Debian's patches applied. Uses an apt
# state of its own (deb-src lists under the cache) so the host's apt sources and lists stay untouched.
k8s_fetch_source() {
  [[ -f $K8S_SRC/.sandpit-unpacked ]] && return 0
  k8s_apt_install dpkg-dev patch
  k8s_step "downloading the kubernetes source package ($K8S_SOURCE_VERSION)"
  local apt_dir=$SANDPIT_K8S_CACHE/apt dl=$SANDPIT_K8S_CACHE/src
  mkdir -p "$apt_dir/lists/partial" "$dl"
  cat >"$apt_dir/sources.list" <<'SRC'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SRC
  local apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only -qq "kubernetes=$K8S_SOURCE_VERSION")
  rm -rf "$K8S_SRC"
  (cd "$dl" && dpkg-source --no-check -x "kubernetes_$K8S_SOURCE_VERSION.dsc" "$K8S_SRC" >/dev/null)
  touch "$K8S_SRC/.sandpit-unpacked"
}

# Builds the named binaries of cmd/ (kube-apiserver, kubelet, …) into $K8S_BIN unless cached there.
k8s_build() {
  local todo=() b
  for b in "$@"; do [[ -x $K8S_BIN/$b ]] || todo+=("$b"); done
  ((${#todo[@]})) || return 0
  k8s_apt_install golang-go gcc libc6-dev
  k8s_fetch_source
  mkdir -p "$K8S_BIN"
  (
    export GO111MODULE=off GOPATH=$SANDPIT_K8S_CACHE/gopath GOCACHE=$SANDPIT_K8S_CACHE/gocache CGO_ENABLED=0
    # One package at a time: the builds share the machine with whatever else runs, and memory peaks lower.
    export GOFLAGS=-p=1
    mkdir -p "$GOPATH/src/k8s.io"
    ln -sfn "$K8S_SRC" "$GOPATH/src/k8s.io/kubernetes"
    cd "$GOPATH/src/k8s.io/kubernetes"
    # The source package does not ship this generated file (`make` generates it); without it the
    # apiserver fails to build with "undefined: openapi.GetOpenAPIDefinitions".
    if [[ ! -f pkg/generated/openapi/zz_generated.openapi.go ]]; then
      k8s_step "generating the OpenAPI definitions"
      go build -o "$SANDPIT_K8S_CACHE/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
      local dirs
      dirs=$({
        grep -rl --include='*.go' '+k8s:openapi-gen=' pkg cmd plugin
        grep -Rl --include='*.go' '+k8s:openapi-gen=' vendor/k8s.io |
          grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/'
      } | grep -v '_test.go$' | xargs -n1 dirname | LC_ALL=C sort -u | sed 's#^#k8s.io/kubernetes/#' | paste -sd,)
      "$SANDPIT_K8S_CACHE/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi \
        -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
        -r "$SANDPIT_K8S_CACHE/openapi-violations.report" 2>/dev/null
    fi
    local ld="-s -w" v
    for v in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
      ld+=" -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20 -X $v.gitTreeState=clean"
    done
    for b in "${todo[@]}"; do
      local s=$SECONDS
      # providerless: no in-tree cloud providers (nothing here needs them, and they double the build).
      go build -tags providerless -ldflags "$ld" -o "$K8S_BIN/$b.tmp" "./cmd/$b"
      mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
      k8s_step "built $b in $((SECONDS - s))s"
    done
  )
}

# Throwaway PKI for a loopback control plane: a CA, the apiserver's serving cert, client certs and a
# kubeconfig per client, a service-account key pair. $1 = directory, $2 = extra SANs (e.g. "IP:10.0.0.5").
k8s_make_pki() {
  local dir=$1 extra_sans=${2:-} port=${K8S_APISERVER_PORT:?}
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=sandpit-k8s-ca 2>/dev/null
    cert() { # name subject [serverSANs]
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      if [[ -n ${3:-} ]]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
      else
        printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"
      fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
    }
    cert apiserver /CN=kube-apiserver "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1${extra_sans:+,$extra_sans}"
    cert admin /O=system:masters/CN=kubernetes-admin
    cert kubelet "/O=system:nodes/CN=system:node:${K8S_NODE_NAME:-sandpit-k8s-node}"
    cert controller-manager /CN=system:kube-controller-manager
    cert scheduler /CN=system:kube-scheduler
    cert kube-proxy /CN=system:kube-proxy
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local u
    for u in admin kubelet controller-manager scheduler kube-proxy; do
      cat >"$u.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {certificate-authority: $dir/ca.crt, server: "https://127.0.0.1:$port"}
users:
- name: $u
  user: {client-certificate: $dir/$u.crt, client-key: $dir/$u.key}
contexts:
- name: local
  context: {cluster: local, user: $u}
current-context: local
EOF
    done
  )
}

# Starts a process in the background, its output to $K8S_RUN/logs/NAME.log, its PID to $K8S_RUN/pids/NAME.
k8s_start() {
  local name=$1
  shift
  mkdir -p "$K8S_RUN/logs" "$K8S_RUN/pids"
  "$@" >"$K8S_RUN/logs/$name.log" 2>&1 &
  echo $! >"$K8S_RUN/pids/$name"
}

# Ends the processes started with k8s_start, in the order given, by their PIDs (TERM, then KILL).
k8s_stop() {
  local name pid i
  for name in "$@"; do
    [[ -f $K8S_RUN/pids/$name ]] || continue
    pid=$(cat "$K8S_RUN/pids/$name")
    if kill "$pid" 2>/dev/null; then
      for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$K8S_RUN/pids/$name"
  done
}

# Polls a command until it succeeds, for at most $1 seconds; on timeout prints $2 and the log named $3.
k8s_wait_for() {
  local timeout=$1 what=$2 log=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "k8s: timed out after ${timeout}s waiting for $what" >&2
      [[ -n $log && -f $K8S_RUN/logs/$log.log ]] && tail -n 30 "$K8S_RUN/logs/$log.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

# A free TCP port on loopback.
k8s_free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
