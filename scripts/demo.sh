#!/usr/bin/env bash
# scripts/demo.sh — the main job: bring up the real stack, run Tidal against it, show it work.
#
#   1. the real stack (kube-apiserver, controller-manager, scheduler, etcd, KWOK nodes, Kafka,
#      Prometheus), left running afterwards so you can explore it (scripts/stack.sh down);
#   2. Tidal installed in the order a user follows: the ScalingPolicy CRD, the tidal-system
#      namespace, the scaler's ServiceAccount and least-privilege RBAC (manifests/); then
#      tidal-agent and tidal-scaler as local processes, the scaler with its ServiceAccount's
#      token and leader election, both scraped by Prometheus;
#   3. a consumer Deployment on a KWOK node with a ScalingPolicy on CPU and Kafka lag;
#   4. real load: a busy loop in a pod's cgroup, then a Kafka backlog drained at a fixed rate;
#      the terminal shows every second how the replicas follow, and back down;
#   5. an SVG of load and replicas over time (.stack/demo.svg), and the policy's status.
#
# It fails (exit 1) if the loop does not do what the README says: more replicas under CPU
# load, back to one after the window, six (the partition cap) for the backlog.
#
# The CPU phase needs root (it creates pod cgroups); without it the demo runs the Kafka phase.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain
# The stack's components (Go builds, Kafka from Maven) and Tidal (Rust) build side by side:
# much of a cold stack build waits on module downloads, which overlaps the Rust compile. Warm,
# both are no-ops in seconds.
mkdir -p "$REPO/.stack/logs"
stack_log=$REPO/.stack/logs/stack-build.log
step "building the stack's components in the background (scripts/stack.sh build; log: .stack/logs/stack-build.log)"
"$REPO/scripts/stack.sh" build >"$stack_log" 2>&1 &
stack_build=$!
step "building tidal-agent, tidal-scaler and the demo load driver"
if ! cargo build --workspace --bins --locked || ! cargo build --locked -p tidal-e2e --example demo_loop; then
  kill "$stack_build" 2>/dev/null || true
  fail "the Rust build failed (above)"
fi
if kill -0 "$stack_build" 2>/dev/null; then
  step "waiting for the stack's components (progress every 30s)"
  tail -n +1 -f --pid="$stack_build" "$stack_log" | sed 's/^/    /' &
  follower=$!
fi
if ! wait "$stack_build"; then
  tail -n 20 "$stack_log" | sed 's/^/    /' >&2
  fail "building the stack's components failed; see .stack/logs/stack-build.log"
fi
[[ -n ${follower:-} ]] && { wait "$follower" 2>/dev/null || true; }

step "bringing the real stack up"
"$REPO/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$REPO/.stack/env"
kc() { "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" "$@"; }

step "nodes and versions"
kc get nodes -o wide
kc version 2>/dev/null | sed 's/^/    /'

step "installing Tidal's API and RBAC as a user would (manifests/): CRD, namespace, scaler ServiceAccount"
kc apply -k "$REPO/manifests/crd" | sed 's/^/    /'
kc wait --for=condition=Established crd/scalingpolicies.tidal.dev --timeout=60s >/dev/null
kc apply -f "$REPO/manifests/base/namespace.yaml" | sed 's/^/    /'
kc -n tidal-system apply -f "$REPO/manifests/base/scaler/serviceaccount.yaml" \
  -f "$REPO/manifests/base/scaler/rbac.yaml" | sed 's/^/    /'
# The scaler runs here as a local process, but with exactly the rights the manifests give its
# ServiceAccount in a cluster: a token for tidal-system/tidal-scaler.
SCALER_KUBECONFIG=$REPO/.stack/demo-scaler.kubeconfig
token=$(kc -n tidal-system create token tidal-scaler --duration=24h)
umask 077
cat >"$SCALER_KUBECONFIG" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: tidal, cluster: {server: "$TIDAL_APISERVER", certificate-authority: "$TIDAL_CA_FILE"}}]
users: [{name: tidal-scaler, user: {token: "$token"}}]
contexts: [{name: tidal-scaler, context: {cluster: tidal, user: tidal-scaler, namespace: tidal-system}}]
current-context: tidal-scaler
KUBECONFIG
umask 022
note "the scaler's kubeconfig: .stack/demo-scaler.kubeconfig (ServiceAccount tidal-system/tidal-scaler)"

AGENT=127.0.0.1:27464
SCALER=127.0.0.1:27465
step "starting tidal-agent on $AGENT and tidal-scaler on $SCALER (logs: .stack/logs/demo-*.log)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$TIDAL_PROMETHEUS_TARGETS_DIR/demo-agent.json" "$TIDAL_PROMETHEUS_TARGETS_DIR/demo-scaler.json"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for port in 27464 27465; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    fail "port $port is in use (another demo running?); stop it first"
done
"$REPO/target/debug/tidal-agent" --listen "$AGENT" --node-name kwok-node-0 --interval-seconds 1 \
  >"$REPO/.stack/logs/demo-agent.log" 2>&1 &
pids+=($!)
# A fixed identity, so a rerun renews the Lease it left instead of waiting for it to expire.
KUBECONFIG=$SCALER_KUBECONFIG "$REPO/target/debug/tidal-scaler" run --listen "$SCALER" \
  --identity demo-scaler --lease-namespace tidal-system --namespace tidal-demo \
  --agent-url "http://$AGENT" --kafka-cluster "local=$TIDAL_KAFKA_BOOTSTRAP" \
  --prometheus-url "$TIDAL_PROMETHEUS_URL" >"$REPO/.stack/logs/demo-scaler.log" 2>&1 &
pids+=($!)
printf '[{"targets":["%s"],"labels":{"component":"agent"}}]' "$AGENT" >"$TIDAL_PROMETHEUS_TARGETS_DIR/demo-agent.json"
printf '[{"targets":["%s"],"labels":{"component":"scaler"}}]' "$SCALER" >"$TIDAL_PROMETHEUS_TARGETS_DIR/demo-scaler.json"
for _ in $(seq 1 60); do
  curl -fsS "http://$SCALER/readyz" >/dev/null 2>&1 && curl -fsS "http://$AGENT/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
if ! curl -fsS "http://$SCALER/readyz" >/dev/null 2>&1; then
  note "tidal-scaler's /readyz says:"
  curl -sS "http://$SCALER/readyz" 2>&1 | sed 's/^/      /' || true
  note "last lines of .stack/logs/demo-scaler.log:"
  tail -n 15 "$REPO/.stack/logs/demo-scaler.log" | sed 's/^/      /'
  fail "tidal-scaler is not ready"
fi
curl -fsS "http://$AGENT/readyz" >/dev/null 2>&1 || fail "tidal-agent is not ready; see .stack/logs/demo-agent.log"
for _ in $(seq 1 30); do
  curl -fsS "http://$SCALER/metrics" 2>/dev/null | grep -qx 'tidal_scaler_leader 1' && break
  sleep 0.5
done
curl -fsS "http://$SCALER/metrics" | grep -qx 'tidal_scaler_leader 1' ||
  fail "tidal-scaler did not take the Lease tidal-system/tidal-scaler; see .stack/logs/demo-scaler.log"
note "both ready; the scaler leads (Lease tidal-system/tidal-scaler)"

step "a consumer Deployment on kwok-node-0 and its ScalingPolicy"
kc create namespace tidal-demo --dry-run=client -o yaml | kc apply -f - >/dev/null
# A fresh start each run: no history from an earlier demo.
kc -n tidal-demo delete scalingpolicy consumer --ignore-not-found >/dev/null
kc -n tidal-demo delete deployment consumer --ignore-not-found --wait=true >/dev/null
run_id=$(date +%s)
topic="demo-orders-$run_id"
group="demo-consumers-$run_id"
kc -n tidal-demo apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: consumer, labels: {app: consumer}}
spec:
  replicas: 1
  selector: {matchLabels: {app: consumer}}
  template:
    metadata: {labels: {app: consumer}}
    spec:
      nodeName: kwok-node-0
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers:
      - name: consumer
        image: registry.invalid/tidal/consumer:demo
        resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {cpu: "2", memory: 256Mi}}
---
apiVersion: tidal.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: consumer}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: consumer}
  minReplicas: 1
  maxReplicas: 6
  metrics:
  - name: cpu
    resource: {name: cpu, targetUtilization: 50}
  - name: lag
    kafkaLag: {cluster: local, group: $group, topics: [$topic], lagPerReplica: 500}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 15
      policies: [{type: Percent, value: 100, periodSeconds: 5}]
YAML
kc -n tidal-demo rollout status deployment/consumer --timeout=60s >/dev/null
kc -n tidal-demo get scalingpolicy consumer -o wide 2>/dev/null | sed 's/^/    /' || true

step "the closed loop, live (about 2.5 minutes): CPU, then a Kafka backlog; replicas follow"
note "policy: cpu at 50% of a 200m request, lag at 500 messages per replica, 1..6 replicas,"
note "scale-down after a 15s stabilization window. HPA would react on a 15s loop, KEDA polls every 30s."
csv="$REPO/.stack/demo.csv"
KUBECONFIG="$TIDAL_KUBECONFIG" timeout 300 "$REPO/target/debug/examples/demo_loop" tidal-demo consumer \
  "$TIDAL_KAFKA_BOOTSTRAP" "$topic" "$group" "http://$AGENT" "http://$SCALER" "$csv"

step "what the scaler says: the policy, its conditions, its Events"
kc -n tidal-demo get scalingpolicy consumer -o wide | sed 's/^/    /'
kc -n tidal-demo get scalingpolicy consumer -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}' |
  sed 's/^/    /'
kc -n tidal-demo get events --field-selector involvedObject.kind=ScalingPolicy \
  -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp 2>/dev/null |
  tail -n 12 | sed 's/^/    /' || true

step "an SVG of load and replicas over time"
if "$REPO/target/debug/tidal-scaler" plot --input "$csv" --output "$REPO/.stack/demo.svg" \
  --title "Tidal demo: load and replicas over time" 2>/dev/null; then
  note "wrote .stack/demo.svg (open it in a browser)"
else
  note "tidal-scaler plot failed; the samples are in .stack/demo.csv"
fi

step "Prometheus scrapes both (job tidal); a few of the scaler's own series"
for _ in $(seq 1 30); do
  up=$(curl -fsS "$TIDAL_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=sum(up{job="tidal",component=~"agent|scaler"})' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
  [[ $up == 2 ]] && break
  sleep 1
done
note "sum(up{job=\"tidal\",component=~\"agent|scaler\"}) = ${up:-0}"
curl -fsS "http://$SCALER/metrics" |
  grep -E '^tidal_scaler_(desired_replicas|current_replicas|leader|cycle_duration_seconds_(sum|count)|scale_events_total)' |
  sed 's/^/    /'

step "the engine, offline: tidal-scaler decide on the example of docs/decide.md"
example=$(awk '/^```json/{n++; if (n==1) {f=1; next}} /^```/{f=0} f' "$REPO/docs/decide.md")
echo "$example" | RUST_BACKTRACE=0 "$REPO/target/debug/tidal-scaler" decide --input - |
  python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["proposals"]:
    print("    metric %-10s proposes %2d replicas (current %s)" % (p["metric"], p["replicas"], p["current"]))
print("    current %d -> desired %d" % (d["current_replicas"], d["desired_replicas"]))' ||
  note "(decide printed no JSON)"

step "done. The stack is still up: source .stack/env to use it; scripts/stack.sh down stops it."
