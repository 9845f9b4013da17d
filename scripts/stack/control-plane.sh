# shellcheck shell=bash
# scripts/stack/control-plane.sh — the control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (and kubectl and the kubelet, built from the same Kubernetes module).
# Sourced by scripts/stack.sh, which defines the versions, ports, paths and say/die/run_logged.

build_k8s() {
  local missing=() b
  for b in "${K8S_BINS[@]}"; do [[ -x $K8S_DIR/$b ]] || missing+=("$b"); done
  ((${#missing[@]})) || return 0
  command -v go >/dev/null || die "go is required to build Kubernetes"
  run_logged "kubernetes-$K8S_VERSION" _build_k8s "${missing[@]}"
}

# _build_k8s BIN...: builds the named binaries of k8s.io/kubernetes/cmd.
_build_k8s() {
  set -euo pipefail
  local work=$CACHE/src/k8s-$K8S_VERSION staging=v0${K8S_VERSION#v1}
  rm -rf "$work" && mkdir -p "$work" && cd "$work"
  go mod init tidal.local/k8sbuild
  echo "downloading k8s.io/kubernetes@$K8S_VERSION"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f $gomod ]] || { echo "no go.mod for k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  # Every staging module is replaced by its published twin at the matching v0.X.Y,
  # taken from kubernetes' own go.mod (the `=> ./staging/src/...` lines).
  local mods
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod" | sort -u)
  [[ -n $mods ]] || { echo "no staging replaces found in $gomod"; exit 1; }
  echo "staging modules: $(echo "$mods" | wc -l)"
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  local m
  for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
  cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
EOF
  go mod tidy -e
  echo "compiling"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  mkdir -p out
  for b in "$@"; do
    echo "go build $b"
    go build -mod=mod -trimpath -ldflags "$ld" -o "out/$b" "k8s.io/kubernetes/cmd/$b"
  done
  mkdir -p "$K8S_DIR"
  mv out/* "$K8S_DIR/"
}

build_etcd() {
  [[ -x $ETCD_DIR/etcd ]] && return 0
  run_logged "etcd-$ETCD_VERSION" _build_etcd
}

_build_etcd() {
  set -euo pipefail
  local work=$CACHE/src/etcd-$ETCD_VERSION
  rm -rf "$work" && mkdir -p "$work" && cd "$work"
  go mod init tidal.local/etcdbuild
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
EOF
  go mod tidy -e
  go build -mod=mod -trimpath -ldflags "-s -w" -o etcd go.etcd.io/etcd/server/v3
  mkdir -p "$ETCD_DIR" && mv etcd "$ETCD_DIR/"
}

up_etcd() {
  ports_free etcd "$ETCD_PORT" "$ETCD_PEER_PORT"
  start etcd "$ETCD_DIR/etcd" --name tidal --data-dir "$STATE/data/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "tidal=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 2147483648
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

up_apiserver() {
  ports_free kube-apiserver "$APISERVER_PORT"
  start kube-apiserver "$K8S_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --authorization-mode RBAC,Node \
    --token-auth-file "$STATE/pki/tokens.csv" --allow-privileged=true \
    --profiling=false --v=1 $(apiserver_node_flags) $(apiserver_aggregation_flags)
  wait_for kube-apiserver 120 curl -fsS --cacert "$STATE/pki/ca.crt" \
    -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "https://127.0.0.1:$APISERVER_PORT/readyz"
}

up_kcm() {
  ports_free kube-controller-manager "$KCM_PORT"
  start kube-controller-manager "$K8S_DIR/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
    --cluster-cidr 10.244.0.0/16 --allocate-node-cidrs=false --v=1
  wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
}

up_scheduler() {
  ports_free kube-scheduler "$SCHED_PORT"
  start kube-scheduler "$K8S_DIR/kube-scheduler" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --v=1
  wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
}
