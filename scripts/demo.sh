#!/usr/bin/env bash
# scripts/demo.sh — the main job: bring up the real stack, run Tidal against it, show it work.
#
# What runs today:
#   - the real stack (kube-apiserver, controller-manager, scheduler, etcd, KWOK nodes, Kafka,
#     Prometheus), left running afterwards so you can explore it (scripts/stack.sh down);
#   - a consumer Deployment on the KWOK nodes, scaled through its scale subresource;
#   - tidal-agent as a local process, scraped by the stack's Prometheus.
# The closed loop (tidal-scaler following CPU and Kafka lag) lands with issue #6; until then
# the demo says "not yet" for it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

ensure_toolchain
step "building tidal-agent, tidal-scaler and the demo load generator"
cargo build --workspace --bins --locked
cargo build --locked -p tidal-e2e --example demo_load

step "bringing the real stack up"
"$REPO/scripts/stack.sh" up
# shellcheck disable=SC1091
source "$REPO/.stack/env"
kc() { "$TIDAL_KUBECTL" --kubeconfig "$TIDAL_KUBECONFIG" "$@"; }

step "nodes and versions"
kc get nodes -o wide
kc version 2>/dev/null | sed 's/^/    /'

step "starting tidal-agent on 127.0.0.1:27464 (log: .stack/logs/demo-agent.log)"
agent_pid=""
cleanup() { [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null; rm -f "$TIDAL_PROMETHEUS_TARGETS_DIR/demo-agent.json"; }
trap cleanup EXIT
cat >"$REPO/.stack/demo-kafka.json" <<JSON
{"interval_seconds": 1,
 "clusters": [{"name": "local", "bootstrap": ["$TIDAL_KAFKA_BOOTSTRAP"], "groups": "^demo-", "granularity": "topic"}]}
JSON
"$REPO/target/debug/tidal-agent" --listen 127.0.0.1:27464 --node-name kwok-node-0 --interval-seconds 1 \
  --kafka-config "$REPO/.stack/demo-kafka.json" >"$REPO/.stack/logs/demo-agent.log" 2>&1 &
agent_pid=$!
printf '[{"targets":["127.0.0.1:27464"],"labels":{"component":"agent"}}]' >"$TIDAL_PROMETHEUS_TARGETS_DIR/demo-agent.json"

step "a consumer Deployment on the KWOK nodes"
kc create namespace tidal-demo --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n tidal-demo apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: consumer, labels: {app: consumer}}
spec:
  replicas: 1
  selector: {matchLabels: {app: consumer}}
  template:
    metadata: {labels: {app: consumer}}
    spec:
      nodeSelector: {type: kwok}
      containers:
      - name: consumer
        image: registry.invalid/tidal/consumer:demo
        resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {cpu: "1", memory: 256Mi}}
YAML
kc -n tidal-demo rollout status deployment/consumer --timeout=60s
for n in 3 1; do
  note "scale subresource -> $n replicas"
  kc -n tidal-demo scale deployment/consumer --replicas "$n"
  kc -n tidal-demo rollout status deployment/consumer --timeout=60s >/dev/null
  kc -n tidal-demo get pods -o wide --no-headers | awk '{printf "    %-34s %-8s %s\n", $1, $3, $7}'
done

step "Prometheus scrapes the agent"
for _ in $(seq 1 30); do
  up=$(curl -fsS "$TIDAL_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=up{job="tidal",component="agent"}' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
  [[ $up == 1 ]] && break
  sleep 1
done
[[ $up == 1 ]] || fail "Prometheus did not scrape the agent (see .stack/logs/demo-agent.log)"
note "up{job=\"tidal\",component=\"agent\"} = $up"
note "a few of the agent's series (node utilization, memory, sampler health):"
curl -fsS http://127.0.0.1:27464/metrics |
  grep -E '^(tidal_agent_node_(cpu|memory)_utilization_ratio|tidal_agent_node_memory_(total|used)_bytes|node_load1 |tidal_agent_sampler_(success|duration_seconds))' |
  sed 's/^/    /'

step "Kafka consumer lag, live: a producer at 200 msg/s, a consumer group at 120 msg/s for 15s"
group="demo-orders-$(date +%s)"
"$REPO/target/debug/examples/demo_load" "$TIDAL_KAFKA_BOOTSTRAP" demo-orders "$group" 15 2>/dev/null &
load_pid=$!
metric() { # metric NAME -> value for the demo group, or "-"
  curl -fsS http://127.0.0.1:27464/metrics | awk -v n="$1" -v g="group=\"$group\"" \
    'index($0, n"{") == 1 && index($0, g) { v = $NF } END { if (v == "") v = "-"; printf "%s", v }'
}
printf '    %5s  %8s  %10s  %12s  %12s  %s\n' t lag "lag (s)" "consume/s" "drain (s)" status
for t in $(seq 2 2 30); do
  sleep 2
  status=$(curl -fsS http://127.0.0.1:27464/metrics | awk -v g="group=\"$group\"" \
    'index($0, "tidal_agent_kafka_consumergroup_status{") == 1 && index($0, g) && $NF == 1 { sub(/.*status="/, ""); sub(/".*/, ""); print }')
  printf '    %4ss  %8s  %10.10s  %12.12s  %12.12s  %s\n' "$t" "$(metric tidal_agent_kafka_consumergroup_lag)" \
    "$(metric tidal_agent_kafka_consumergroup_lag_seconds)" "$(metric tidal_agent_kafka_consumergroup_consume_rate)" \
    "$(metric tidal_agent_kafka_consumergroup_time_to_drain_seconds)" "${status:--}"
  kill -0 "$load_pid" 2>/dev/null || break
done
wait "$load_pid" 2>/dev/null || true

step "the engine, offline: tidal-scaler decide on the example of docs/decide.md"
example=$(awk '/^```json/{n++; if (n==1) {f=1; next}} /^```/{f=0} f' "$REPO/docs/decide.md")
echo "$example" | RUST_BACKTRACE=0 "$REPO/target/debug/tidal-scaler" decide --input - |
  python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["proposals"]:
    print("    metric %-10s proposes %2d replicas (current %s)" % (p["metric"], p["replicas"], p["current"]))
print("    current %d -> desired %d" % (d["current_replicas"], d["desired_replicas"]))
for c in d["conditions"]:
    print("    %-15s %-18s %s" % (c["type"], c["reason"], c["message"]))' ||
  note "(decide printed no JSON)"

step "closed loop: not yet"
note "tidal-scaler's controller (CPU + Kafka lag ScalingPolicy, live replicas, SVG of load and"
note "replicas over time) arrives with issue #6. 'tidal-scaler run' says so explicitly:"
RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$REPO/target/debug/tidal-scaler" run 2>&1 | sed 's/^/    /' || true

step "done. The stack is still up: source .stack/env to use it; scripts/stack.sh down stops it."
