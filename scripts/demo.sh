#!/usr/bin/env bash
# scripts/demo.sh — the main job: bring up the real stack, run Tidal against it, show it work.
#
#   1. the real stack (kube-apiserver, controller-manager, scheduler, etcd, a real node with
#      kubelet + containerd + runc, two KWOK nodes, Kafka, Prometheus), left running afterwards
#      so you can explore it (scripts/stack.sh down);
#   2. the Tidal image, built here without a registry (scripts/image.sh), and Tidal installed
#      as a user installs it: kubectl apply -k manifests/overlays/local (the CRD, RBAC, the
#      agent DaemonSet and the scaler Deployment with leader election, in-cluster); Prometheus
#      finds both through the API server;
#   3. a consumer Deployment on the real node with a ScalingPolicy on CPU and Kafka lag;
#   4. real load: a busy loop in the first consumer container (turned on with kubectl exec),
#      then a Kafka backlog drained at a fixed rate; the terminal shows every second how the
#      replicas follow, and back down;
#   5. an SVG of load and replicas over time (.stack/demo.svg), and the policy's status.
#
# It fails (exit 1) if the loop does not do what the README says: more replicas under CPU
# load, back to one after the window, six (the partition cap) for the backlog.
# It needs root: the real node makes cgroups, network namespaces and a bridge.
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
step "building tidal-agent, tidal-scaler and the demo load driver (debug; the image is built below)"
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

step "the Tidal image: release binaries in an OCI image, imported into the node's containerd (scripts/image.sh)"
"$REPO/scripts/image.sh"

step "installing Tidal as a user installs it: kubectl apply -k manifests/overlays/local"
note "the base (CRD, namespace, RBAC, agent DaemonSet, scaler Deployment x2, Services, PDB,"
note "NetworkPolicies) + scrape annotations + this machine's image, API server, Prometheus and Kafka"
reinstall=0
kc -n tidal-system get daemonset tidal-agent >/dev/null 2>&1 && reinstall=1
kc apply -k "$REPO/manifests/overlays/local" | sed 's/^/    /'
kc wait --for=condition=Established crd/scalingpolicies.tidal.dev crd/scalingpolicycheckpoints.tidal.dev --timeout=60s >/dev/null
if ((reinstall)); then
  # Same tag, new image: restart so the pods run what was just built.
  kc -n tidal-system rollout restart daemonset/tidal-agent deployment/tidal-scaler | sed 's/^/    /'
fi
kc -n tidal-system rollout status daemonset/tidal-agent --timeout=180s | sed 's/^/    /' ||
  fail "the agent DaemonSet did not roll out; kubectl -n tidal-system describe pods -l app.kubernetes.io/name=tidal-agent"
kc -n tidal-system rollout status deployment/tidal-scaler --timeout=180s | sed 's/^/    /' ||
  fail "the scaler Deployment did not roll out; kubectl -n tidal-system describe pods -l app.kubernetes.io/name=tidal-scaler"
# The running pods' IPs, leaving out pods on their way out (after a rollout restart).
pod_ips() {
  kc -n tidal-system get pods -l "app.kubernetes.io/name=$1" --field-selector status.phase=Running \
    -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.status.podIP}} {{end}}{{end}}'
}
agent_ip=$(pod_ips tidal-agent | awk '{print $1}')
[[ -n $agent_ip ]] || fail "no running tidal-agent pod"
AGENT=http://$agent_ip:9464
SCALERS=$(pod_ips tidal-scaler | awk '{for (i = 1; i <= NF; i++) printf "%shttp://%s:9465", (i > 1 ? "," : ""), $i}')
holder=""
for _ in $(seq 1 60); do
  holder=$(kc -n tidal-system get lease tidal-scaler -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [[ -n $holder ]] && kc -n tidal-system get pod "$holder" >/dev/null 2>&1 && break
  sleep 0.5
done
[[ -n $holder ]] || fail "no scaler replica took the Lease tidal-system/tidal-scaler; kubectl -n tidal-system logs -l app.kubernetes.io/name=tidal-scaler"
kc -n tidal-system get pods -o wide | sed 's/^/    /'
note "the leader is $holder (Lease tidal-system/tidal-scaler); agent metrics at $AGENT/metrics"

step "Prometheus finds them through the API server (kubernetes_sd_configs, role pod)"
# One agent (one node) and the scaler's replicas.
want=$(($(kc -n tidal-system get deployment tidal-scaler -o jsonpath='{.spec.replicas}') + 1))
up=0
for _ in $(seq 1 60); do
  up=$(curl -fsS "$TIDAL_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=sum(up{job=~"tidal-agent|tidal-scaler",namespace=""} == 1) or vector(0)' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')
  ((up >= want)) && break
  sleep 1
done
((up >= want)) || fail "Prometheus scrapes $up of the $want Tidal pods; see $TIDAL_PROMETHEUS_URL/targets"
note "up{job=~\"tidal-agent|tidal-scaler\"}: $up of $want pods"

step "a consumer Deployment on the real node and its ScalingPolicy"
kc create namespace tidal-demo --dry-run=client -o yaml | kc apply -f - >/dev/null
# A fresh start each run: no history from an earlier demo.
kc -n tidal-demo delete scalingpolicy consumer --ignore-not-found >/dev/null
kc -n tidal-demo delete deployment consumer --ignore-not-found --wait=true >/dev/null
kc -n tidal-demo wait --for=delete pod -l app=consumer --timeout=60s >/dev/null 2>&1 || true
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
      nodeSelector: {tidal.dev/node: real}
      tolerations: [{key: tidal.dev/real-node, operator: Exists, effect: NoSchedule}]
      terminationGracePeriodSeconds: 1
      containers:
      - name: consumer
        image: $TIDAL_BUSYBOX_IMAGE
        imagePullPolicy: Never
        # Burns CPU (up to its limit) while /tmp/load exists; the demo turns it on and off.
        command: ["/bin/sh", "-c", "while :; do if [ -f /tmp/load ]; then i=0; while [ \$i -lt 100000 ]; do i=\$((i+1)); done; else sleep 1; fi; done"]
        resources: {requests: {cpu: 100m, memory: 16Mi}, limits: {cpu: 500m, memory: 64Mi}}
---
apiVersion: tidal.dev/v1alpha1
kind: ScalingPolicy
# The label: the local overlay's scaler acts on labelled policies only (manifests/overlays/local).
metadata: {name: consumer, labels: {tidal.dev/scaler: in-cluster}}
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
kc -n tidal-demo rollout status deployment/consumer --timeout=90s >/dev/null ||
  fail "the consumer pod did not start on $TIDAL_NODE_NAME; kubectl -n tidal-demo describe pods"
kc -n tidal-demo get pods -o wide | sed 's/^/    /'

step "the closed loop, live (about 2.5 minutes): CPU, then a Kafka backlog; replicas follow"
note "policy: cpu at 50% of a 200m request, lag at 500 messages per replica, 1..6 replicas,"
note "scale-down after a 15s stabilization window. HPA would react on a 15s loop, KEDA polls every 30s."
csv="$REPO/.stack/demo.csv"
KUBECONFIG="$TIDAL_KUBECONFIG" timeout 300 "$REPO/target/debug/examples/demo_loop" tidal-demo consumer \
  "$TIDAL_KAFKA_BOOTSTRAP" "$topic" "$group" "$AGENT" "$SCALERS" "$csv"

step "what the scaler says: the policy, its conditions, its Events"
kc -n tidal-demo get scalingpolicy consumer -o wide | sed 's/^/    /'
kc -n tidal-demo get scalingpolicy consumer -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}' |
  sed 's/^/    /'
kc -n tidal-demo get events --field-selector involvedObject.kind=ScalingPolicy \
  -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp 2>/dev/null |
  tail -n 12 | sed 's/^/    /' || true

step "an SVG of load and replicas over time"
if "$REPO/target/debug/tidal-sim" plot --input "$csv" --output "$REPO/.stack/demo.svg" \
  --title "Tidal demo: load and replicas over time" 2>/dev/null; then
  note "wrote .stack/demo.svg (open it in a browser)"
else
  note "tidal-sim plot failed; the samples are in .stack/demo.csv"
fi

step "a few of the leader's own series"
leader_ip=$(kc -n tidal-system get pod "$holder" -o jsonpath='{.status.podIP}' 2>/dev/null || true)
curl -fsS "http://$leader_ip:9465/metrics" 2>/dev/null |
  grep -E '^tidal_scaler_(desired_replicas|current_replicas|leader|cycle_duration_seconds_(sum|count)|scale_events_total)' |
  sed 's/^/    /' || note "(the leader changed since; kubectl -n tidal-system get lease tidal-scaler)"

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

step "done. The stack is still up; look around:"
note "source .stack/env                              # kubectl, addresses"
note "kubectl get nodes -o wide                      # tidal-node-0 is the real node"
note "kubectl -n tidal-system get pods -o wide       # the agent DaemonSet and the scaler Deployment"
note "kubectl -n tidal-system logs -l app.kubernetes.io/name=tidal-scaler"
note "kubectl -n tidal-demo get scalingpolicy consumer -o yaml"
note "curl $AGENT/metrics                # the agent, by pod IP"
note "$TIDAL_PROMETHEUS_URL/targets       # Prometheus (jobs tidal-agent, tidal-scaler)"
note "scripts/stack.sh down                          # stops everything (--purge: and its data)"
