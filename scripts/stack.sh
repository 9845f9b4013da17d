#!/usr/bin/env bash
# scripts/stack.sh — the real local stack Tidal is tested against.
#
#   scripts/stack.sh build    build/download every component into the cache (no start)
#   scripts/stack.sh up       build if needed, then start everything (idempotent)
#   scripts/stack.sh down     stop only the processes this script started (by pid)
#   scripts/stack.sh status   show each component, its pid and port
#   scripts/stack.sh env      print the env file (source it: eval "$(scripts/stack.sh env)")
#   scripts/stack.sh logs C   print the last lines of component C's log
#
# Components (on 127.0.0.1, or on the real node's bridge address):
#   etcd, kube-apiserver (RBAC + token auth), kube-controller-manager, kube-scheduler,
#   kubectl (same build), KWOK with fake nodes, Apache Kafka (KRaft, PLAINTEXT + a SASL
#   listener with PLAIN and SCRAM-SHA-256/512, user tidal / tidal-secret, an SSL listener
#   whose certificate the stack CA signs, and an SSL listener that requires a client
#   certificate of the stack CA: pki/client.crt),
#   Prometheus (built from the Go module proxy),
#   a real node: kubelet + containerd + runc (scripts/stack-node.sh; TIDAL_REAL_NODE=0: none),
#   the peers: metrics-server, for the controller-manager's HPA, KEDA's operator and adapter,
#   and the VPA's recommender (scripts/stack-peers.sh; TIDAL_PEERS=0: none).
#   Helm (built only, for the chart's tests: charts/tidal, tests/tests/helm.rs), and
#   tools/dashcheck (the dashboards against the Grafana Foundation SDK's types).
#
# Built parts are cached under ${TIDAL_CACHE:-~/.cache/tidal}, keyed by version, so only the
# first `up` on a machine is slow. Run state (pids, logs, data, kubeconfig, env file) lives in
# ${TIDAL_STACK_DIR:-<repo>/.stack}.
set -euo pipefail

# ---------------------------------------------------------------- versions and ports
K8S_VERSION=${TIDAL_K8S_VERSION:-v1.35.4}
ETCD_VERSION=${TIDAL_ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${TIDAL_KWOK_VERSION:-v0.7.0}
KAFKA_VERSION=${TIDAL_KAFKA_VERSION:-4.1.1}
# Prometheus is built from the Go module proxy (module versions v0.3MM.P are releases 3.MM.P):
# Debian's package is built without kubernetes_sd_configs, which the in-cluster install needs.
PROM_MODULE_VERSION=${TIDAL_PROMETHEUS_MODULE_VERSION:-v0.316.0}
# Helm, for the chart's tests (charts/tidal; tests/tests/helm.rs): built from the Go module proxy.
HELM_VERSION=${TIDAL_HELM_VERSION:-v4.3.2}
KWOK_NODES=${TIDAL_KWOK_NODE_COUNT:-2}

# A block of ports in the 27xxx range, which no common service uses. Override the base
# with TIDAL_PORT_BASE to move the whole block.
PORT_BASE=${TIDAL_PORT_BASE:-27000}
ETCD_PORT=$((PORT_BASE + 379))
ETCD_PEER_PORT=$((PORT_BASE + 380))
APISERVER_PORT=$((PORT_BASE + 443))
KCM_PORT=$((PORT_BASE + 257))
SCHED_PORT=$((PORT_BASE + 259))
KWOK_PORT=$((PORT_BASE + 247))
KAFKA_PORT=$((PORT_BASE + 92))
KAFKA_SASL_PORT=$((PORT_BASE + 94))
KAFKA_CONTROLLER_PORT=$((PORT_BASE + 93))
KAFKA_SSL_PORT=$((PORT_BASE + 95))
# SSL with a required client certificate (mutual TLS).
KAFKA_MTLS_PORT=$((PORT_BASE + 97))
PROM_PORT=$((PORT_BASE + 90))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${TIDAL_CACHE:-$HOME/.cache/tidal}
STATE=${TIDAL_STACK_DIR:-$REPO/.stack}
K8S_DIR=$CACHE/k8s-$K8S_VERSION
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION
KWOK_DIR=$CACHE/kwok-$KWOK_VERSION
# The recipe revision is part of the key, so a changed dependency list refetches.
KAFKA_DIR=$CACHE/kafka-$KAFKA_VERSION-r2
PROM_DIR=$CACHE/prometheus-$PROM_MODULE_VERSION
HELM_DIR=$CACHE/helm-$HELM_VERSION
# tools/dashcheck (the dashboards against the Grafana Foundation SDK's types), keyed by its source.
DASHCHECK_DIR=$CACHE/dashcheck-$(cat "$REPO"/tools/dashcheck/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

ADMIN_TOKEN_FILE=$STATE/pki/admin.token
# shellcheck source=scripts/stack-node.sh
source "$REPO/scripts/stack-node.sh"
# shellcheck source=scripts/stack-peers.sh
source "$REPO/scripts/stack-peers.sh"
NOBODY_TOKEN_FILE=$STATE/pki/nobody.token

# ---------------------------------------------------------------- output helpers
t0=$(date +%s)
say() { printf '[stack %4ss] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Run a long build step with a heartbeat every 30s, and show the log tail if it fails.
run_logged() {
  local name=$1
  shift
  local log=$CACHE/build-$name.log
  mkdir -p "$CACHE"
  say "building $name (log: $log)"
  ("$@") >"$log" 2>&1 &
  local pid=$! start last now
  start=$(date +%s)
  last=$start
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    now=$(date +%s)
    if ((now - last >= 30)); then
      last=$now
      say "  ... $name still building ($((now - start))s): $(tail -n 1 "$log" | cut -c1-80)"
    fi
  done
  if ! wait "$pid"; then
    say "build of $name failed; last lines of $log:"
    tail -n 30 "$log" >&2
    exit 1
  fi
  say "built $name in $(($(date +%s) - start))s"
}

# ---------------------------------------------------------------- builds
# Every Kubernetes binary the stack runs, from one build module (kubelet: the real node).
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
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

build_kwok() {
  [[ -x $KWOK_DIR/kwok ]] && return 0
  run_logged "kwok-$KWOK_VERSION" _build_kwok
}
_build_kwok() {
  set -euo pipefail
  mkdir -p "$KWOK_DIR"
  GOBIN=$KWOK_DIR go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_kafka() {
  [[ -f $KAFKA_DIR/.complete ]] && return 0
  command -v mvn >/dev/null || die "maven is required to fetch Apache Kafka"
  command -v java >/dev/null || die "java is required to run Apache Kafka"
  run_logged "kafka-$KAFKA_VERSION" _build_kafka
}
_build_kafka() {
  set -euo pipefail
  local work=$CACHE/src/kafka-$KAFKA_VERSION
  rm -rf "$work" "$KAFKA_DIR" && mkdir -p "$work" "$KAFKA_DIR/lib"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tidal</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Kafka declares slf4j-api 1.7; pin 2.x so the log4j2 binding below is found. -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  (cd "$work" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/lib")
  [[ -f $KAFKA_DIR/lib/kafka_2.13-$KAFKA_VERSION.jar ]]
  touch "$KAFKA_DIR/.complete"
}

ensure_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return 0; fi
  say "installing prometheus from Debian (apt-get)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d stops the package from starting a system-wide Prometheus on port 9090.
  local prc=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $prc ]]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee $prc >/dev/null; $sudo chmod +x $prc; created=1; fi
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends prometheus; } >"$CACHE/build-prometheus.log" 2>&1 || {
    ((created)) && $sudo rm -f $prc
    tail -n 30 "$CACHE/build-prometheus.log" >&2
    die "apt-get install prometheus failed"
  }
  ((created)) && $sudo rm -f $prc
  command -v prometheus >/dev/null || die "prometheus not on PATH after install"
}

build_prometheus() {
  [[ -x $PROM_DIR/prometheus && -x $PROM_DIR/promtool ]] && return 0
  run_logged "prometheus-$PROM_MODULE_VERSION" _build_prometheus
}
_build_prometheus() {
  set -euo pipefail
  local work=$CACHE/src/prometheus-$PROM_MODULE_VERSION minor patch
  minor=$(echo "$PROM_MODULE_VERSION" | cut -d. -f2)
  patch=$(echo "$PROM_MODULE_VERSION" | cut -d. -f3)
  mkdir -p "$work" "$PROM_DIR" && cd "$work"
  GOBIN=$PROM_DIR go install -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=3.$((10#${minor#3})).$patch" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROM_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROM_MODULE_VERSION"
}

build_helm() {
  [[ -x $HELM_DIR/helm ]] && return 0
  run_logged "helm-$HELM_VERSION" _build_helm
}
_build_helm() {
  set -euo pipefail
  local work=$CACHE/src/helm-$HELM_VERSION
  mkdir -p "$work" "$HELM_DIR" && cd "$work"
  GOBIN=$HELM_DIR go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

build_dashcheck() {
  [[ -x $DASHCHECK_DIR/dashcheck ]] && return 0
  run_logged dashcheck _build_dashcheck
}
_build_dashcheck() {
  set -euo pipefail
  mkdir -p "$DASHCHECK_DIR" && cd "$REPO/tools/dashcheck"
  go build -trimpath -ldflags "-s -w" -o "$DASHCHECK_DIR/dashcheck.tmp" .
  mv "$DASHCHECK_DIR/dashcheck.tmp" "$DASHCHECK_DIR/dashcheck"
}

build_all() {
  mkdir -p "$CACHE"
  say "cache: $CACHE"
  ensure_prometheus
  build_prometheus
  build_kafka
  build_etcd
  build_kwok
  build_k8s
  build_node
  build_peers
  build_helm
  build_dashcheck
  say "all components built"
}

# ---------------------------------------------------------------- process control
pidfile() { echo "$STATE/pids/$1.pid"; }
logfile() { echo "$STATE/logs/$1.log"; }
running() {
  local f
  f=$(pidfile "$1")
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# ports_free NAME PORT...: fail clearly when a port that NAME needs is taken by a process
# this stack did not start (a stale stack from another checkout, another service).
ports_free() {
  local name=$1 port
  shift
  running "$name" && return 0
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      local owner
      owner=$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)
      die "port $port (needed by $name) is already in use${owner:+ by $owner}; stop that process or move the whole block with TIDAL_PORT_BASE (now $PORT_BASE)"
    fi
  done
}

# start NAME CMD...: start a component in its own session unless it already runs.
start() {
  local name=$1
  shift
  if running "$name"; then
    say "$name already running (pid $(cat "$(pidfile "$name")"))"
    return 0
  fi
  mkdir -p "$STATE/pids" "$STATE/logs"
  setsid "$@" >>"$(logfile "$name")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
  say "started $name (pid $!)"
}

fail_with_log() {
  say "ERROR: $1 did not become ready; last lines of $(logfile "$1"):"
  tail -n 40 "$(logfile "$1")" >&2 || true
  exit 1
}

# wait_for NAME TIMEOUT CMD...: poll CMD until it succeeds, or fail with NAME's log.
wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then fail_with_log "$name"; fi
    (($(date +%s) < deadline)) || fail_with_log "$name"
    sleep 0.5
  done
}

stop() {
  local name=$1 f pid
  f=$(pidfile "$name")
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    # Each component runs in its own session (setsid), so its pid is its process group:
    # signal the group to take any children down with it.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# ---------------------------------------------------------------- config generation
gen_pki() {
  local pki=$STATE/pki
  [[ -f $pki/.complete ]] && return 0
  command -v openssl >/dev/null || die "openssl is required"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=tidal-local-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    # The node IP: pods on the real node reach the API server there.
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.0.0.1,IP:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$NODE_IP" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >admin.token
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >nobody.token
    # token,user,uid,"group1,group2"
    {
      echo "$(cat admin.token),tidal-admin,tidal-admin,system:masters"
      echo "$(cat nobody.token),tidal-nobody,tidal-nobody,tidal:nobody"
    } >tokens.csv
    touch .complete
  )
}

# A certificate for Kafka's SSL listener, signed by the stack CA (PEM keystore: PKCS#8 key
# followed by the certificate chain).
gen_kafka_cert() {
  local pki=$STATE/pki
  [[ -f $pki/kafka-keystore.pem ]] && return 0
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout kafka.key.rsa -out kafka.csr -subj "/CN=kafka" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in kafka.key.rsa -out kafka.key
    # The node IP too: a server of the tests that pods reach (a secured Prometheus) uses it.
    local san=IP:127.0.0.1,DNS:localhost
    node_enabled && san+=",IP:$NODE_IP"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" >kafka.ext
    openssl x509 -req -in kafka.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile kafka.ext -out kafka.crt 2>/dev/null
    cat kafka.key kafka.crt ca.crt >kafka-keystore.pem
  )
}

# A client certificate signed by the stack CA (CN=tidal, clientAuth), for Kafka's mutual-TLS
# listener and for a Prometheus that asks for one.
gen_client_cert() {
  local pki=$STATE/pki
  [[ -f $pki/client.crt ]] && return 0
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout client.key.rsa -out client.csr -subj "/CN=tidal" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in client.key.rsa -out client.key
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out client.crt 2>/dev/null
  )
}

write_kubeconfig() {
  local out=$1 user=$2 token=$3
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidal-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$STATE/pki/ca.crt")
users:
- name: $user
  user:
    token: $token
contexts:
- name: tidal-local
  context: {cluster: tidal-local, user: $user}
current-context: tidal-local
EOF
}

write_env() {
  cat >"$STATE/env" <<EOF
# Generated by scripts/stack.sh; source this file.
export TIDAL_STACK_DIR=$STATE
export KUBECONFIG=$STATE/kubeconfig
export TIDAL_KUBECONFIG=$STATE/kubeconfig
export TIDAL_NOBODY_KUBECONFIG=$STATE/kubeconfig-nobody
export TIDAL_APISERVER=https://127.0.0.1:$APISERVER_PORT
export TIDAL_ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE
export TIDAL_NOBODY_TOKEN_FILE=$NOBODY_TOKEN_FILE
export TIDAL_CA_FILE=$STATE/pki/ca.crt
export TIDAL_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export TIDAL_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT
export TIDAL_KAFKA_SSL_BOOTSTRAP=127.0.0.1:$KAFKA_SSL_PORT
export TIDAL_KAFKA_MTLS_BOOTSTRAP=127.0.0.1:$KAFKA_MTLS_PORT
# A client certificate of the stack CA, and a server certificate for 127.0.0.1 (Kafka's; tests
# reuse it for servers of their own, such as a Prometheus that requires TLS).
export TIDAL_CLIENT_CERT_FILE=$STATE/pki/client.crt
export TIDAL_CLIENT_KEY_FILE=$STATE/pki/client.key
export TIDAL_SERVER_CERT_FILE=$STATE/pki/kafka.crt
export TIDAL_SERVER_KEY_FILE=$STATE/pki/kafka.key
export TIDAL_KAFKA_SASL_USER=tidal
export TIDAL_KAFKA_SASL_PASSWORD=tidal-secret
export TIDAL_KAFKA_HOME=$KAFKA_DIR
export TIDAL_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export TIDAL_PROMETHEUS_TARGETS_DIR=$STATE/prometheus/targets
# promtool of the stack's Prometheus (built with Kubernetes SD, unlike Debian's).
export TIDAL_PROMTOOL_K8S=$PROM_DIR/promtool
export TIDAL_PROMETHEUS_BIN=$PROM_DIR/prometheus
export TIDAL_KWOK_NODES="$(seq -f 'kwok-node-%g' 0 $((KWOK_NODES - 1)) | tr '\n' ' ' | sed 's/ $//')"
export TIDAL_KUBECTL=$K8S_DIR/kubectl
export TIDAL_HELM=$HELM_DIR/helm
export TIDAL_DASHCHECK=$DASHCHECK_DIR/dashcheck
export PATH=$K8S_DIR:\$PATH
EOF
  node_env >>"$STATE/env"
  peers_env >>"$STATE/env"
}

kubectl_() { "$K8S_DIR/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

# ---------------------------------------------------------------- component starts
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

up_kwok() {
  ports_free kwok "$KWOK_PORT"
  mkdir -p "$STATE/kwok"
  # An explicit (empty) config, so a ~/.kwok/kwok.yaml on the machine cannot change the stack;
  # KWOK v0.7 then uses its built-in node and pod stages.
  echo "# generated by scripts/stack.sh: KWOK's built-in stages" >"$STATE/kwok/kwok.yaml"
  start kwok "$KWOK_DIR/kwok" --kubeconfig "$STATE/kubeconfig" --config "$STATE/kwok/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 \
    --cidr 10.244.0.1/16 --node-ip 10.99.0.1 --server-address "127.0.0.1:$KWOK_PORT"
  wait_for kwok 60 curl -fsS "http://127.0.0.1:$KWOK_PORT/healthz"
  local i name
  for ((i = 0; i < KWOK_NODES; i++)); do
    name=kwok-node-$i
    kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    type: kwok
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
  nodeInfo: {kubeletVersion: fake, architecture: amd64, operatingSystem: linux}
  phase: Running
EOF
  done
  wait_for kwok 60 kubectl_ wait --for=condition=Ready node --all --timeout=5s
  say "kwok nodes ready: $(kubectl_ get nodes -o name | tr '\n' ' ')"
}

up_kafka() {
  ports_free kafka "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SSL_PORT" "$KAFKA_MTLS_PORT" "$KAFKA_POD_PORT" "$KAFKA_POD_SASL_PORT"
  gen_kafka_cert
  gen_client_cert
  local dir=$STATE/kafka kafka_pod_listener=""
  # Pods on the real node reach the broker on the node IP (listeners of their own: plain, and
  # SASL with the same users as the local SASL listener).
  node_enabled && kafka_pod_listener=",POD://$NODE_IP:$KAFKA_POD_PORT,POD_SASL://$NODE_IP:$KAFKA_POD_SASL_PORT"
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$kafka_pod_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT$kafka_pod_listener
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,MTLS:SSL,POD:PLAINTEXT,POD_SASL:SASL_PLAINTEXT
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$STATE/pki/kafka-keystore.pem
listener.name.ssl.ssl.client.auth=none
listener.name.mtls.ssl.keystore.type=PEM
listener.name.mtls.ssl.keystore.location=$STATE/pki/kafka-keystore.pem
listener.name.mtls.ssl.truststore.type=PEM
listener.name.mtls.ssl.truststore.location=$STATE/pki/ca.crt
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tidal="tidal-secret";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pod_sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tidal="tidal-secret";
listener.name.pod_sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pod_sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
log.dirs=$STATE/data/kafka
EOF
  cat >"$dir/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
EOF
  local java_opts="-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$dir/log4j2.properties"
  if ! running kafka && [[ ! -f $STATE/data/kafka/meta.properties ]]; then
    say "formatting kafka storage (KRaft) with SCRAM user 'tidal'"
    # shellcheck disable=SC2086
    java $java_opts -cp "$KAFKA_DIR/lib/*" kafka.tools.StorageTool format \
      -t "$(cat /proc/sys/kernel/random/uuid | tr -d - | head -c 22)" -c "$dir/server.properties" \
      --add-scram 'SCRAM-SHA-256=[name=tidal,password=tidal-secret]' \
      --add-scram 'SCRAM-SHA-512=[name=tidal,password=tidal-secret]' >"$(logfile kafka-format)" 2>&1 ||
      { tail -n 20 "$(logfile kafka-format)" >&2; die "kafka storage format failed"; }
  fi
  # shellcheck disable=SC2086
  start kafka java $java_opts -cp "$KAFKA_DIR/lib/*" kafka.Kafka "$dir/server.properties"
  wait_for kafka 120 kafka_ready
}
kafka_ready() {
  # The broker is ready when its PLAINTEXT listener accepts connections and the log says so.
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null &&
    grep -q "Kafka Server started" "$(logfile kafka)"
}

up_prometheus() {
  ports_free prometheus "$PROM_PORT"
  local dir=$STATE/prometheus
  mkdir -p "$dir/targets" "$dir/data"
  cat >"$dir/prometheus.yml" <<EOF
# Generated by scripts/stack.sh. Targets are added by dropping JSON files into targets/
# (file_sd, picked up on change) — tests and the demo register agents and scalers there.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
# Tidal's recording rules, which the dashboards' heavy panels read (tests/tests/dashboards.rs).
rule_files:
  - $REPO/manifests/rules/tidal-recording.rules.yaml
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
  # Agents registered as targets/agent-*.json form the job the alert rules expect.
  - job_name: tidal-agent
    file_sd_configs:
      - files: ["$dir/targets/agent-*.json"]
        refresh_interval: 2s
  # Everything else (scalers, test agents). Go's filepath.Match negates a class with ^, not !.
  - job_name: tidal
    file_sd_configs:
      - files: ["$dir/targets/[^a]*.json"]
        refresh_interval: 2s
EOF
  prometheus_kubernetes_jobs >>"$dir/prometheus.yml"
  if running prometheus; then
    # Already up: pick up a changed config without a restart.
    curl -fsS -X POST "http://127.0.0.1:$PROM_PORT/-/reload" >/dev/null || say "prometheus config reload failed"
  fi
  start prometheus "$PROM_DIR/prometheus" --config.file "$dir/prometheus.yml" --storage.tsdb.path "$dir/data" \
    --web.listen-address "127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time 1d --web.enable-lifecycle
  wait_for prometheus 60 curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"
}

# ---------------------------------------------------------------- commands
cmd_up() {
  local start_ts
  start_ts=$(date +%s)
  build_all
  mkdir -p "$STATE/data"
  gen_pki
  write_kubeconfig "$STATE/kubeconfig" tidal-admin "$(cat "$ADMIN_TOKEN_FILE")"
  write_kubeconfig "$STATE/kubeconfig-nobody" tidal-nobody "$(cat "$NOBODY_TOKEN_FILE")"
  write_env
  gen_node_pki
  gen_front_proxy_pki
  gen_keda_pki
  up_bridge
  say "ports: etcd=$ETCD_PORT apiserver=$APISERVER_PORT controller-manager=$KCM_PORT scheduler=$SCHED_PORT kwok=$KWOK_PORT kafka=$KAFKA_PORT kafka-sasl=$KAFKA_SASL_PORT kafka-ssl=$KAFKA_SSL_PORT kafka-mtls=$KAFKA_MTLS_PORT kafka-controller=$KAFKA_CONTROLLER_PORT prometheus=$PROM_PORT"
  up_etcd
  up_apiserver
  up_kcm
  up_scheduler
  up_kwok
  up_kafka
  up_prometheus
  up_node
  up_peers
  say "stack up in $(($(date +%s) - start_ts))s; env file: $STATE/env (source it, or: eval \"\$(scripts/stack.sh env)\")"
}

COMPONENTS=(prometheus kafka kwok kube-scheduler kube-controller-manager kube-apiserver etcd)

cmd_down() {
  local c
  down_peers
  down_node
  for c in "${COMPONENTS[@]}"; do stop "$c"; done
  if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    say "removed $STATE"
  fi
}

# components_status NAME...: a line per component, running (with its pid) or stopped; fails
# when any is stopped.
components_status() {
  local c rc=0
  for c in "$@"; do
    if running "$c"; then
      printf '%-24s running  pid %s\n' "$c" "$(cat "$(pidfile "$c")")"
    else
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  return $rc
}

cmd_status() {
  local rc=0
  components_status etcd kube-apiserver kube-controller-manager kube-scheduler kwok kafka prometheus || rc=1
  node_status || rc=1
  peers_status || rc=1
  printf 'ports: etcd=%s apiserver=%s kafka=%s kafka-sasl=%s prometheus=%s\n' \
    "$ETCD_PORT" "$APISERVER_PORT" "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$PROM_PORT"
  printf 'versions: kubernetes=%s etcd=%s kwok=%s kafka=%s prometheus=%s\n' "$K8S_VERSION" "$ETCD_VERSION" \
    "$KWOK_VERSION" "$KAFKA_VERSION" "$("$PROM_DIR/prometheus" --version 2>&1 | head -n1 | awk '{print $3}')"
  return $rc
}

case ${1:-} in
build) build_all ;;
up) cmd_up ;;
down) shift; cmd_down "$@" ;;
status) cmd_status ;;
env)
  [[ -f $STATE/env ]] || die "no env file yet: run scripts/stack.sh up"
  cat "$STATE/env"
  ;;
logs) tail -n "${3:-50}" "$(logfile "${2:?component}")" ;;
*)
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
