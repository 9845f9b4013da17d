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
#   a real node: kubelet + containerd + runc (scripts/stack/node.sh; TIDAL_REAL_NODE=0: none),
#   the peers: metrics-server, for the controller-manager's HPA, KEDA's operator and adapter,
#   and the VPA's recommender, updater and admission controller (a pod on the real node)
#   (scripts/stack/peers.sh; TIDAL_PEERS=0: none).
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
# Absolute and normal (no trailing slash): it is compared and used as a path prefix.
STATE=$(realpath -m "${TIDAL_STACK_DIR:-$REPO/.stack}")
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
# shellcheck source=scripts/stack/node.sh
source "$REPO/scripts/stack/node.sh"
# shellcheck source=scripts/stack/peers.sh
source "$REPO/scripts/stack/peers.sh"
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

# One file per component under scripts/stack/ (functions only; this file runs them).
for part in process pki control-plane kwok kafka prometheus tools; do
  # shellcheck source=/dev/null
  source "$REPO/scripts/stack/$part.sh"
done

# ---------------------------------------------------------------- builds
# Every Kubernetes binary the stack runs, from one build module (kubelet: the real node).
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

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

# ---------------------------------------------------------------- config generation

# ---------------------------------------------------------------- component starts

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
  gen_vpa_pki
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
