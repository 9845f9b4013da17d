# shellcheck shell=bash
# The peers Tidal is compared with, run beside it on the real node (issue #15):
# metrics-server, read by the kube-controller-manager's own HPA controller (already in the
# stack, default 15 s sync period). Built from the Go module proxy at pinned versions and cached.
# Sourced by scripts/stack.sh after scripts/stack-node.sh (needs the real node: metrics-server
# reads the kubelet). What each peer runs with, and what differs from its docs: docs/peers.md.

METRICS_SERVER_VERSION=v0.8.0
METRICS_SERVER_DIR=$CACHE/metrics-server-$METRICS_SERVER_VERSION
# On the node IP, not 127.0.0.1: the API server's aggregator reaches it through an
# EndpointSlice, and the API refuses loopback addresses there.
METRICS_SERVER_PORT=$((PORT_BASE + 251))
# 0 leaves the peers out (they need the real node anyway).
PEERS=${TIDAL_PEERS:-1}

peers_enabled() { node_enabled && [[ $PEERS == 1 ]]; }

# ---------------------------------------------------------------- build
build_peers() {
  peers_enabled || return 0
  [[ -x $METRICS_SERVER_DIR/metrics-server ]] ||
    run_logged "metrics-server-$METRICS_SERVER_VERSION" _build_metrics_server
}
# A program module with its own go.mod, so `go get -tool` pins what metrics-server's go.mod asks.
_build_metrics_server() {
  set -euo pipefail
  local work=$CACHE/src/metrics-server-$METRICS_SERVER_VERSION
  mkdir -p "$work" "$METRICS_SERVER_DIR" && cd "$work"
  [[ -f go.mod ]] || go mod init tidal.local/peers/metrics-server
  go get -tool "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    -o "$METRICS_SERVER_DIR/metrics-server.tmp" sigs.k8s.io/metrics-server/cmd/metrics-server
  mv "$METRICS_SERVER_DIR/metrics-server.tmp" "$METRICS_SERVER_DIR/metrics-server"
}

# ---------------------------------------------------------------- the aggregation layer
# A front-proxy CA of its own and the client certificate the API server presents to
# aggregated API servers (as kubeadm sets it up).
gen_front_proxy_pki() {
  peers_enabled || return 0
  local pki=$STATE/pki
  [[ -f $pki/front-proxy.complete ]] && return 0
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout front-proxy-ca.key -out front-proxy-ca.crt \
      -subj "/CN=tidal-front-proxy-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -extfile front-proxy-client.ext -out front-proxy-client.crt 2>/dev/null
    touch front-proxy.complete
  )
}

# No kube-proxy here: the aggregator routes to the endpoint addresses, not the Service IP.
apiserver_aggregation_flags() {
  peers_enabled || return 0
  echo --requestheader-client-ca-file "$STATE/pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$STATE/pki/front-proxy-client.crt" \
    --proxy-client-key-file "$STATE/pki/front-proxy-client.key" \
    --enable-aggregator-routing=true
}

# ---------------------------------------------------------------- up
up_peers() {
  peers_enabled || return 0
  up_metrics_server
}

# The flags of metrics-server's own manifest (components.yaml of v0.8.0): InternalIP first, the
# kubelet's port from the Node's status, a 15 s resolution; --kubelet-insecure-tls as its README
# says for a kubelet whose serving certificate it cannot verify (ours is signed by the stack's
# CA, which metrics-server is not given). It runs as a process on this host, not a pod, bound to
# the node IP; credentials are the stack's admin kubeconfig instead of a ServiceAccount. It reads
# the real node only (--node-selector): the KWOK nodes have no kubelet, and their made-up
# address is routed off this machine.
up_metrics_server() {
  ports_free metrics-server "$METRICS_SERVER_PORT"
  mkdir -p "$STATE/metrics-server"
  start metrics-server "$METRICS_SERVER_DIR/metrics-server" \
    --bind-address "$NODE_IP" --secure-port "$METRICS_SERVER_PORT" --cert-dir "$STATE/metrics-server" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfig" \
    --kubelet-preferred-address-types InternalIP,ExternalIP,Hostname --kubelet-use-node-status-port \
    --kubelet-insecure-tls --metric-resolution 15s --node-selector "$NODE_LABEL" --v=1
  wait_for metrics-server 60 curl -fsSk "https://$NODE_IP:$METRICS_SERVER_PORT/livez"
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  ports: [{name: https, port: 443, targetPort: $METRICS_SERVER_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-tidal-stack
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server, endpointslice.kubernetes.io/managed-by: tidal-stack}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: https, port: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
EOF
  # Served once the aggregator reaches it. Its first scrape of the kubelet comes one resolution
  # (15 s) after the start: `up` does not wait for it (the smoke test in tests/tests/peers.rs does).
  wait_for metrics-server 60 kubectl_ get --raw /apis/metrics.k8s.io/v1beta1
}

# ---------------------------------------------------------------- down
# The APIService goes first: an aggregated API that does not answer stalls discovery, and with
# it the namespace and garbage-collector controllers.
down_peers() {
  if running kube-apiserver && running metrics-server; then
    kubectl_ delete apiservice v1beta1.metrics.k8s.io --ignore-not-found >/dev/null 2>&1 || true
  fi
  stop metrics-server
}

peers_status() {
  peers_enabled || return 0
  if running metrics-server; then
    printf '%-24s running  pid %s\n' metrics-server "$(cat "$(pidfile metrics-server)")"
  else
    printf '%-24s stopped\n' metrics-server
    return 1
  fi
}

peers_env() {
  peers_enabled || return 0
  cat <<EOF
export TIDAL_PEERS=1
export TIDAL_METRICS_SERVER_URL=https://$NODE_IP:$METRICS_SERVER_PORT
export TIDAL_METRICS_SERVER_VERSION=$METRICS_SERVER_VERSION
EOF
}
