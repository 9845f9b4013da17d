# shellcheck shell=bash
# The peers Tidal is compared with, run beside it on the real node (issue #15):
# metrics-server, read by the kube-controller-manager's own HPA controller (already in the
# stack, default 15 s sync period), KEDA (its operator and its external metrics API server) and
# the VPA: its recommender, its updater and its admission controller.
# Built from the Go module proxy at pinned versions and cached.
# Sourced by scripts/stack.sh after scripts/stack/node.sh (needs the real node: metrics-server
# reads the kubelet). What each peer runs with, and what differs from its docs: docs/peers.md.

METRICS_SERVER_VERSION=v0.8.0
METRICS_SERVER_DIR=$CACHE/metrics-server-$METRICS_SERVER_VERSION
# On the node IP, not 127.0.0.1: the API server's aggregator reaches it through an
# EndpointSlice, and the API refuses loopback addresses there.
METRICS_SERVER_PORT=$((PORT_BASE + 251))
KEDA_VERSION=v2.21.0
KEDA_DIR=$CACHE/keda-$KEDA_VERSION
KEDA_NAMESPACE=keda
# The operator's metrics, health and gRPC metrics service on 127.0.0.1; the adapter (an
# aggregated API server) on the node IP, like metrics-server.
KEDA_OPERATOR_METRICS_PORT=$((PORT_BASE + 252))
KEDA_OPERATOR_HEALTH_PORT=$((PORT_BASE + 253))
KEDA_GRPC_PORT=$((PORT_BASE + 254))
KEDA_ADAPTER_PORT=$((PORT_BASE + 255))
VPA_VERSION=v1.8.1
VPA_DIR=$CACHE/vpa-$VPA_VERSION
VPA_RECOMMENDER_PORT=$((PORT_BASE + 256))
# The updater's metrics and health check, on 127.0.0.1. The admission controller runs as a pod
# on the real node (its webhook server listens on every address it has, which a pod's are
# only its own), behind the Service vpa-webhook, as deploy/ runs it.
VPA_UPDATER_PORT=$((PORT_BASE + 258))
VPA_NAMESPACE=kube-system
VPA_ADMISSION_IMAGE=tidal.local/vpa-admission-controller:$VPA_VERSION
# 0 leaves the peers out (they need the real node anyway).
PEERS=${TIDAL_PEERS:-1}

peers_enabled() { node_enabled && [[ $PEERS == 1 ]]; }

# ---------------------------------------------------------------- build
build_peers() {
  peers_enabled || return 0
  [[ -x $METRICS_SERVER_DIR/metrics-server ]] ||
    run_logged "metrics-server-$METRICS_SERVER_VERSION" _build_metrics_server
  [[ -x $KEDA_DIR/keda-operator && -x $KEDA_DIR/keda-adapter && -d $KEDA_DIR/crd ]] ||
    run_logged "keda-$KEDA_VERSION" _build_keda
  [[ -x $VPA_DIR/vpa-recommender && -x $VPA_DIR/vpa-updater && -f $VPA_DIR/admission-controller.tar &&
    -f $VPA_DIR/vpa-v1-crd-gen.yaml && -f $VPA_DIR/vpa-rbac.yaml ]] ||
    run_logged "vpa-$VPA_VERSION" _build_vpa
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

# module_copy MODULE@VERSION WORK: a writable copy of a module from the proxy in WORK, to build
# inside (a module whose go.mod has replace directives cannot be `go install`ed by version).
module_copy() {
  local dir
  dir=$(go mod download -json "$1" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$2" && cp -r "$dir" "$2" && chmod -R u+w "$2"
}

# KEDA's go.mod has replace directives: built inside a copy of the module. Its CRDs come from
# the same module (config/crd/bases).
_build_keda() {
  set -euo pipefail
  local work=$CACHE/src/keda-$KEDA_VERSION
  module_copy "github.com/kedacore/keda/v2@$KEDA_VERSION" "$work"
  mkdir -p "$KEDA_DIR" && cd "$work"
  local ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION"
  go build -trimpath -ldflags "$ldflags" -o "$KEDA_DIR/keda-operator.tmp" ./cmd/operator
  go build -trimpath -ldflags "$ldflags" -o "$KEDA_DIR/keda-adapter.tmp" ./cmd/adapter
  rm -rf "$KEDA_DIR/crd" && cp -r config/crd/bases "$KEDA_DIR/crd"
  mv "$KEDA_DIR/keda-operator.tmp" "$KEDA_DIR/keda-operator"
  mv "$KEDA_DIR/keda-adapter.tmp" "$KEDA_DIR/keda-adapter"
}

# The VPA's three components, its CRDs and its RBAC (deploy/vpa-v1-crd-gen.yaml,
# deploy/vpa-rbac.yaml) from the same module. The admission controller is built static
# (CGO_ENABLED=0, as upstream's image is) into an image of its own: the binary alone, user
# 65534 as deploy/admission-controller-deployment.yaml runs it.
_build_vpa() {
  set -euo pipefail
  local work=$CACHE/src/vpa-$VPA_VERSION
  module_copy "k8s.io/autoscaler/vertical-pod-autoscaler@$VPA_VERSION" "$work"
  mkdir -p "$VPA_DIR" && cd "$work"
  local c
  for c in recommender updater admission-controller; do
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$VPA_DIR/vpa-$c.tmp" "./pkg/$c"
    mv "$VPA_DIR/vpa-$c.tmp" "$VPA_DIR/vpa-$c"
  done
  /usr/bin/python3 "$REPO/scripts/oci-image.py" --name "$VPA_ADMISSION_IMAGE" \
    --out "$VPA_DIR/admission-controller.tar.tmp" \
    --file "$VPA_DIR/vpa-admission-controller:/admission-controller:755" --user 65534:65534 \
    --entrypoint '["/admission-controller"]'
  mv "$VPA_DIR/admission-controller.tar.tmp" "$VPA_DIR/admission-controller.tar"
  cp deploy/vpa-v1-crd-gen.yaml deploy/vpa-rbac.yaml "$VPA_DIR/"
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
    sign_cert front-proxy-ca front-proxy-client.key front-proxy-client.crt /CN=front-proxy-client clientAuth
    touch front-proxy.complete
  )
}
# gen_peer_cert DIR CA_COPY KEY CRT SUBJECT EKU SAN: a peer's certificate in DIR (under
# $STATE), signed by the stack's CA, with that CA's certificate copied beside it as CA_COPY
# (what the peer trusts, or registers as a caBundle); done once (DIR/.complete). The CA's key
# never leaves $STATE/pki.
gen_peer_cert() {
  local dir=$1 ca_copy=$2 key=$3 crt=$4 subject=$5 eku=$6 san=$7
  [[ -f $dir/.complete ]] && return 0
  mkdir -p "$dir"
  (
    cd "$dir"
    cp "$STATE/pki/ca.crt" "$ca_copy"
    sign_cert "$STATE/pki/ca" "$key" "$crt" "$subject" "$eku" "$san"
    touch .complete
  )
}

# KEDA's operator serves its gRPC metrics service with mutual TLS, and the adapter is its
# client: one certificate for both, as KEDA's own certificate manager makes it, signed here by
# the stack's CA (ca.crt in the directory is what each side trusts).
gen_keda_pki() {
  peers_enabled || return 0
  gen_peer_cert "$STATE/keda/certs" ca.crt tls.key tls.crt /CN=keda-operator serverAuth,clientAuth \
    "DNS:keda-operator.$KEDA_NAMESPACE.svc.cluster.local,DNS:keda-operator.$KEDA_NAMESPACE.svc,DNS:keda-metrics-apiserver.$KEDA_NAMESPACE.svc,IP:127.0.0.1,IP:$NODE_IP"
}

# The VPA admission controller's serving certificate, for the name the API server calls it by
# (the Service vpa-webhook), signed by the stack's CA, which it registers as the webhook's
# caBundle. deploy/'s gencerts.sh makes a CA of its own instead.
gen_vpa_pki() {
  peers_enabled || return 0
  gen_peer_cert "$STATE/vpa/certs" caCert.pem serverKey.pem serverCert.pem \
    "/CN=vpa-webhook.$VPA_NAMESPACE.svc" serverAuth "DNS:vpa-webhook.$VPA_NAMESPACE.svc"
}

# No kube-proxy here: the aggregator routes to the endpoint addresses, not the Service IP.
# The same flag makes the API server call admission webhooks (the VPA's) at their Service's
# endpoints.
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
# register_aggregated_api SERVICE NAMESPACE PORT GROUP [CA_FILE]: a Service without selector,
# an EndpointSlice at the node IP and PORT, and the APIService GROUP/v1beta1 behind them
# (verified with CA_FILE, else insecureSkipTLSVerify as metrics-server's own manifest does).
register_aggregated_api() {
  local svc=$1 ns=$2 port=$3 group=$4 ca=${5:-} tls
  if [[ -n $ca ]]; then
    tls="caBundle: $(base64 -w0 <"$ca")"
  else
    tls="insecureSkipTLSVerify: true"
  fi
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: $svc, namespace: $ns, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  ports: [{name: https, port: 443, targetPort: $port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $svc-tidal-stack
  namespace: $ns
  labels: {kubernetes.io/service-name: $svc, endpointslice.kubernetes.io/managed-by: tidal-stack}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: https, port: $port, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.$group, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  group: $group
  version: v1beta1
  service: {name: $svc, namespace: $ns, port: 443}
  groupPriorityMinimum: 100
  versionPriority: 100
  $tls
EOF
}

up_peers() {
  peers_enabled || return 0
  up_metrics_server
  up_keda
  up_vpa
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
  register_aggregated_api metrics-server kube-system "$METRICS_SERVER_PORT" metrics.k8s.io
  # Served once the aggregator reaches it. Its first scrape of the kubelet comes one resolution
  # (15 s) after the start: `up` does not wait for it (the smoke test in tests/tests/peers.rs does).
  wait_for metrics-server 60 kubectl_ get --raw /apis/metrics.k8s.io/v1beta1
}

# KEDA as its manifests deploy it (config/manager and config/metrics-server of the module): the
# operator's defaults but --leader-elect (one instance here) and the certificate rotation (the
# certificates come from gen_keda_pki); both run as processes on this host with the stack's
# admin kubeconfig instead of ServiceAccounts; their ports moved into the stack's block.
up_keda() {
  kubectl_ apply --server-side --force-conflicts -f "$KEDA_DIR/crd" >/dev/null
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $KEDA_NAMESPACE, labels: {app.kubernetes.io/part-of: tidal-stack}}
EOF
  ports_free keda-operator "$KEDA_OPERATOR_METRICS_PORT" "$KEDA_OPERATOR_HEALTH_PORT" "$KEDA_GRPC_PORT"
  local certs=$STATE/keda/certs
  # Scalers read extra CA certificates from --ca-dir (none here: the stack's Kafka listener the
  # benchmarks use is plain).
  mkdir -p "$STATE/keda/ca"
  KUBECONFIG=$STATE/kubeconfig POD_NAMESPACE=$KEDA_NAMESPACE KEDA_CLUSTER_OBJECT_NAMESPACE=$KEDA_NAMESPACE \
    WATCH_NAMESPACE='' start keda-operator "$KEDA_DIR/keda-operator" \
    --zap-log-level=info --zap-encoder=console --zap-time-encoding=rfc3339 \
    --enable-cert-rotation=false --enable-webhook-patching=false --enable-apiservice-patching=false \
    --cert-dir "$certs" --ca-dir "$STATE/keda/ca" \
    --metrics-bind-address "127.0.0.1:$KEDA_OPERATOR_METRICS_PORT" \
    --health-probe-bind-address "127.0.0.1:$KEDA_OPERATOR_HEALTH_PORT" \
    --metrics-service-bind-address "127.0.0.1:$KEDA_GRPC_PORT"
  wait_for keda-operator 90 curl -fsS "http://127.0.0.1:$KEDA_OPERATOR_HEALTH_PORT/readyz"
  ports_free keda-adapter "$KEDA_ADAPTER_PORT"
  KUBECONFIG=$STATE/kubeconfig POD_NAMESPACE=$KEDA_NAMESPACE KEDA_CLUSTER_OBJECT_NAMESPACE=$KEDA_NAMESPACE \
    WATCH_NAMESPACE='' start keda-adapter "$KEDA_DIR/keda-adapter" \
    --bind-address "$NODE_IP" --secure-port "$KEDA_ADAPTER_PORT" --cert-dir "$certs" \
    --tls-cert-file "$certs/tls.crt" --tls-private-key-file "$certs/tls.key" --client-ca-file "$certs/ca.crt" \
    --lister-kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfig" \
    --metrics-service-address "127.0.0.1:$KEDA_GRPC_PORT" --zap-log-level=error
  wait_for keda-adapter 60 curl -fsSk "https://$NODE_IP:$KEDA_ADAPTER_PORT/livez"
  register_aggregated_api keda-metrics-apiserver "$KEDA_NAMESPACE" "$KEDA_ADAPTER_PORT" external.metrics.k8s.io \
    "$certs/ca.crt"
  wait_for keda-adapter 60 kubectl_ get --raw /apis/external.metrics.k8s.io/v1beta1
}

# The VPA as deploy/ runs it, with its defaults:
# - the recommender (deploy/recommender-deployment.yaml): a 1 min loop, checkpoints in
#   VerticalPodAutoscalerCheckpoint objects, usage from metrics.k8s.io, no leader election;
# - the admission controller (deploy/admission-controller-deployment.yaml and -service.yaml): a
#   pod on the real node in kube-system, its ServiceAccount and RBAC (deploy/vpa-rbac.yaml), its
#   certificates in the Secret vpa-tls-certs (gen_vpa_pki); it registers its own
#   MutatingWebhookConfiguration (vpa-webhook-config, failurePolicy Ignore) and renews the
#   status Lease the updater reads;
# - the updater (deploy/updater-deployment.yaml): a 1 min loop, --min-replicas 2, in-place
#   resizes through pods/resize for InPlaceOrRecreate; it skips its whole loop (resizes and
#   evictions) while the admission controller's status Lease is older than 1 min.
# The recommender and the updater run as processes on this host with the stack's admin
# kubeconfig instead of ServiceAccounts, their metrics and health checks on 127.0.0.1.
up_vpa() {
  kubectl_ apply --server-side --force-conflicts -f "$VPA_DIR/vpa-v1-crd-gen.yaml" >/dev/null
  ports_free vpa-recommender "$VPA_RECOMMENDER_PORT"
  start vpa-recommender "$VPA_DIR/vpa-recommender" --kubeconfig "$STATE/kubeconfig" \
    --address "127.0.0.1:$VPA_RECOMMENDER_PORT" --v=1
  wait_for vpa-recommender 60 curl -fsS "http://127.0.0.1:$VPA_RECOMMENDER_PORT/metrics"
  up_vpa_admission_controller
  ports_free vpa-updater "$VPA_UPDATER_PORT"
  NAMESPACE=$VPA_NAMESPACE start vpa-updater "$VPA_DIR/vpa-updater" --kubeconfig "$STATE/kubeconfig" \
    --address "127.0.0.1:$VPA_UPDATER_PORT" --v=2
  wait_for vpa-updater 60 curl -fsS "http://127.0.0.1:$VPA_UPDATER_PORT/health-check"
}

# What differs from deploy/: the image (built here, imagePullPolicy Never), the real node's
# selector and taint toleration, the API server's address (no kube-proxy: in-cluster config
# reads KUBERNETES_SERVICE_HOST/PORT, as manifests/overlays/local does for Tidal) and the
# stack's label. Arguments, resources and probes are upstream's.
up_vpa_admission_controller() {
  import_image "$VPA_DIR/admission-controller.tar" "$VPA_ADMISSION_IMAGE"
  local certs=$STATE/vpa/certs
  kubectl_ apply --server-side --force-conflicts -f "$VPA_DIR/vpa-rbac.yaml" >/dev/null
  kubectl_ -n "$VPA_NAMESPACE" create secret generic vpa-tls-certs --from-file="$certs/caCert.pem" \
    --from-file="$certs/serverCert.pem" --from-file="$certs/serverKey.pem" --dry-run=client -o yaml |
    kubectl_ apply -f - >/dev/null
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: vpa-webhook, namespace: $VPA_NAMESPACE, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  ports: [{port: 443, targetPort: 8000}]
  selector: {app: vpa-admission-controller}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vpa-admission-controller, namespace: $VPA_NAMESPACE, labels: {app.kubernetes.io/part-of: tidal-stack}}
spec:
  replicas: 1
  selector: {matchLabels: {app: vpa-admission-controller}}
  template:
    metadata: {labels: {app: vpa-admission-controller}}
    spec:
      serviceAccountName: vpa-admission-controller
      securityContext: {runAsNonRoot: true, runAsUser: 65534}
      nodeSelector: {${NODE_LABEL%%=*}: "${NODE_LABEL#*=}"}
      tolerations: [{key: tidal.dev/real-node, operator: Exists, effect: NoSchedule}]
      containers:
        - name: admission-controller
          image: $VPA_ADMISSION_IMAGE
          imagePullPolicy: Never
          env:
            - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
            - {name: KUBERNETES_SERVICE_HOST, value: "$NODE_IP"}
            - {name: KUBERNETES_SERVICE_PORT, value: "$APISERVER_PORT"}
          args: ["--v=4", "--stderrthreshold=info", "--reload-cert"]
          volumeMounts: [{name: tls-certs, mountPath: /etc/tls-certs, readOnly: true}]
          resources:
            limits: {cpu: 200m, memory: 500Mi}
            requests: {cpu: 50m, memory: 200Mi}
          ports: [{containerPort: 8000}, {name: prometheus, containerPort: 8944}]
          livenessProbe:
            httpGet: {path: /health-check, port: prometheus, scheme: HTTP}
            initialDelaySeconds: 5
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /health-check, port: prometheus, scheme: HTTP}
            periodSeconds: 10
            failureThreshold: 3
      volumes: [{name: tls-certs, secret: {secretName: vpa-tls-certs}}]
EOF
  wait_vpa_admission 120 kubectl_ -n "$VPA_NAMESPACE" rollout status deployment/vpa-admission-controller \
    --timeout=5s
  # It registers the webhook once its informers sync, then renews the status Lease that the
  # updater reads before it evicts.
  wait_vpa_admission 60 kubectl_ get mutatingwebhookconfiguration vpa-webhook-config
  wait_vpa_admission 60 vpa_lease_fresh
}

# The admission controller's status Lease renewed in the last 30 s (after a `down` without
# --purge, the previous one is still there).
vpa_lease_fresh() {
  local renewed
  renewed=$(kubectl_ -n "$VPA_NAMESPACE" get lease vpa-admission-controller -o 'jsonpath={.spec.renewTime}') &&
    [[ -n $renewed ]] && (($(date +%s) - $(date -d "$renewed" +%s) < 30))
}

# wait_vpa_admission TIMEOUT CMD...: poll CMD until it succeeds, or fail with the admission
# controller's pod and log (a pod, not one of the stack's processes: wait_for cannot watch it).
wait_vpa_admission() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      say "ERROR: the VPA admission controller is not ready ($*); its pod and last log lines:"
      kubectl_ -n "$VPA_NAMESPACE" get pods -l app=vpa-admission-controller -o wide >&2 || true
      kubectl_ -n "$VPA_NAMESPACE" logs -l app=vpa-admission-controller --tail 40 >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- down
# The APIService goes first: an aggregated API that does not answer stalls discovery, and with
# it the namespace and garbage-collector controllers.
down_peers() {
  if running kube-apiserver; then
    kubectl_ delete apiservice v1beta1.metrics.k8s.io v1beta1.external.metrics.k8s.io \
      --ignore-not-found >/dev/null 2>&1 || true
    # Likewise the VPA's webhook: every pod creation would call it.
    kubectl_ delete mutatingwebhookconfiguration vpa-webhook-config --ignore-not-found >/dev/null 2>&1 || true
  fi
  stop vpa-updater
  stop vpa-recommender
  stop keda-adapter
  stop keda-operator
  stop metrics-server
}

peers_status() {
  peers_enabled || return 0
  local rc=0
  components_status metrics-server keda-operator keda-adapter vpa-recommender vpa-updater || rc=1
  if [[ $(kubectl_ -n "$VPA_NAMESPACE" get deployment vpa-admission-controller \
    -o 'jsonpath={.status.readyReplicas}' 2>/dev/null) == 1 ]]; then
    printf '%-24s ready    pod on %s\n' vpa-admission-controller "$NODE_NAME"
  else
    printf '%-24s not ready\n' vpa-admission-controller
    rc=1
  fi
  return $rc
}

peers_env() {
  peers_enabled || return 0
  cat <<EOF
export TIDAL_PEERS=1
export TIDAL_METRICS_SERVER_URL=https://$NODE_IP:$METRICS_SERVER_PORT
export TIDAL_METRICS_SERVER_VERSION=$METRICS_SERVER_VERSION
export TIDAL_KEDA_VERSION=$KEDA_VERSION
export TIDAL_KEDA_NAMESPACE=$KEDA_NAMESPACE
export TIDAL_KEDA_OPERATOR_METRICS_URL=http://127.0.0.1:$KEDA_OPERATOR_METRICS_PORT/metrics
export TIDAL_VPA_VERSION=$VPA_VERSION
export TIDAL_VPA_UPDATER_METRICS_URL=http://127.0.0.1:$VPA_UPDATER_PORT/metrics
EOF
}
