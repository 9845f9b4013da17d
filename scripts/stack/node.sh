# shellcheck shell=bash
# The stack's real node: a kubelet (same build as the control plane), containerd and runc from
# Debian, and the CNI bridge plugin, on a bridge that exists only on this machine.
# Sourced by scripts/stack.sh, which provides say/die/start/stop/wait_for/run_logged/kubectl_.
# Why each choice, and what it leaves on the host: docs/real-node.md.

NODE_NAME=${TIDAL_NODE_NAME:-tidal-node-0}
# 0 turns the real node off (KWOK only, as before #17).
REAL_NODE=${TIDAL_REAL_NODE:-1}
NODE_BRIDGE=${TIDAL_NODE_BRIDGE:-tidal-br0}
# A /24 on the bridge: .1 is this host (the node IP, and the gateway of the pods).
NODE_NET=${TIDAL_NODE_NET:-10.213.0}
NODE_IP=$NODE_NET.1
# What tells the real node from the KWOK nodes.
NODE_LABEL=tidal.dev/node=real
KUBELET_PORT=$((PORT_BASE + 250))
KUBELET_HEALTHZ_PORT=$((PORT_BASE + 248))
KAFKA_POD_PORT=$((PORT_BASE + 96))
KAFKA_POD_SASL_PORT=$((PORT_BASE + 98))
# The kubelet's cgroup root: kind's convention, so the kubelet's `kubepods` never meets the
# `kubepods` trees that the KWOK tests create under the hierarchy roots.
NODE_CGROUP_ROOT=kubelet
# Debian packages unpacked (dpkg -x, never installed) into the cache. The revision is part of
# the key, so a changed package list refetches.
NODE_DEBS=(containerd runc containernetworking-plugins busybox-static)
NODE_PKG_DIR=$CACHE/node-debs-r1
NODE_ROOTFS=$NODE_PKG_DIR/root
NODE_STATE=$STATE/node
CONTAINERD_SOCK=$NODE_STATE/containerd.sock
# The images the node runs, made from local files (no registry is reachable).
PAUSE_IMAGE=tidal.local/pause:1
BUSYBOX_IMAGE=tidal.local/busybox:1
IMAGES_DIR=$CACHE/images

node_enabled() { [[ $REAL_NODE == 1 ]]; }

# ---------------------------------------------------------------- build
build_node() {
  node_enabled || return 0
  if [[ ! -f $NODE_PKG_DIR/.complete ]]; then
    run_logged node-debs _fetch_node_debs
  fi
  grep -q 'libseccomp.so.2 ' <<<"$(ldconfig -p)" ||
    die "runc needs libseccomp2 (Debian package libseccomp2); it is not installed"
  build_node_images
}
_fetch_node_debs() {
  set -euo pipefail
  rm -rf "$NODE_PKG_DIR" && mkdir -p "$NODE_PKG_DIR/debs" "$NODE_ROOTFS"
  cd "$NODE_PKG_DIR/debs"
  # apt-get download needs current package lists, as apt-get install does.
  apt-get download "${NODE_DEBS[@]}" || { apt-get update -qq && apt-get download "${NODE_DEBS[@]}"; }
  local d
  for d in ./*.deb; do
    echo "unpacking $d"
    dpkg -x "$d" "$NODE_ROOTFS"
  done
  for b in usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr usr/sbin/runc \
    usr/lib/cni/bridge usr/lib/cni/host-local usr/lib/cni/loopback bin/busybox; do
    [[ -x $NODE_ROOTFS/$b ]] || { echo "missing $b after unpacking ${NODE_DEBS[*]}"; exit 1; }
  done
  touch "$NODE_PKG_DIR/.complete"
}

# The sandbox image and the test workload image, from Debian's static busybox.
build_node_images() {
  mkdir -p "$IMAGES_DIR"
  local bb=$NODE_ROOTFS/bin/busybox py=/usr/bin/python3
  if [[ ! -f $IMAGES_DIR/pause-1.tar ]]; then
    # The pause container: PID 1 of the pod, sleeping, reaping children, leaving on TERM/INT.
    "$py" "$REPO/scripts/oci-image.py" --name "$PAUSE_IMAGE" --out "$IMAGES_DIR/pause-1.tar" \
      --file "$bb:/bin/busybox:755" --user 65535:65535 \
      --entrypoint '["/bin/busybox","sh","-c","trap \"exit 0\" TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"]' >&2
  fi
  if [[ ! -f $IMAGES_DIR/busybox-1.tar ]]; then
    local links=() a
    for a in sh sleep cat head tail dd yes true; do links+=(--symlink "/bin/$a=busybox"); done
    "$py" "$REPO/scripts/oci-image.py" --name "$BUSYBOX_IMAGE" --out "$IMAGES_DIR/busybox-1.tar" \
      --file "$bb:/bin/busybox:755" "${links[@]}" --dir /tmp:1777 \
      --entrypoint '["/bin/busybox"]' --cmd '["sh"]' >&2
  fi
}

# ---------------------------------------------------------------- certificates
# The kubelet's client certificate (system:node:<name>), its serving certificate for the node
# IP, and the API server's client certificate towards kubelets. All signed by the stack CA.
gen_node_pki() {
  node_enabled || return 0
  local pki=$STATE/pki
  [[ -f $pki/node.complete ]] && return 0
  (
    cd "$pki"
    sign_cert ca kubelet-client.key kubelet-client.crt "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    sign_cert ca kubelet-serving.key kubelet-serving.crt "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
    sign_cert ca apiserver-kubelet-client.key apiserver-kubelet-client.crt \
      /O=system:masters/CN=kube-apiserver-kubelet-client clientAuth
    touch node.complete
  )
}

# Flags the API server needs to reach the kubelet (logs, exec, port-forward).
apiserver_node_flags() {
  node_enabled || return 0
  echo --kubelet-client-certificate "$STATE/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$STATE/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$STATE/pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP
}

# ---------------------------------------------------------------- the host's share
# The bridge, the kubelet's cgroup root and the kernel settings the kubelet changes are the
# host's, not a stack directory's: one stack holds them at a time. The holder's directory and
# the kernel settings from before its kubelet are kept in /run/tidal (a tmpfs: gone at reboot,
# as the bridge and the cgroups are). A stack that finds them held by a stack that still runs
# stops. Held by one that does not (killed with its session and never brought down, or an
# earlier checkout at this same path), it takes down what that one left, then makes its own.
HOST_DIR=${TIDAL_NODE_HOST_DIR:-/run/tidal}
NODE_HOLDER_FILE=$HOST_DIR/node.holder
NODE_SYSCTL_FILE=$HOST_DIR/node.sysctl

node_holder() { [[ -f $NODE_HOLDER_FILE ]] && cat "$NODE_HOLDER_FILE"; true; }

# live_components DIR: the components of the stack at DIR whose process still runs.
live_components() {
  local f pid
  for f in "$1"/pids/*.pid; do
    pid=$(live_pid "$f") && printf '%s (pid %s) ' "$(basename "$f" .pid)" "$pid"
  done
  true
}

# The host's share is taken and given back under a lock, so that two stacks' `up` and `down`
# never interleave; the lock goes with the shell that holds it.
lock_node_host() {
  mkdir -p "$HOST_DIR"
  exec {NODE_LOCK_FD}>"$HOST_DIR/node.lock"
  flock -w 60 "$NODE_LOCK_FD" || die "another stack has been taking or giving back the real node's bridge and cgroups for 60 s ($HOST_DIR/node.lock)"
}
unlock_node_host() { exec {NODE_LOCK_FD}>&-; }

# Created before anything binds to the node IP (Kafka's pod listener, the forwarder). The
# record is written once the bridge is this stack's.
up_bridge() {
  node_enabled || return 0
  mkdir -p "$NODE_STATE"
  local holder live d
  lock_node_host
  holder=$(node_holder)
  # Held, and not by this stack as it is set up now (a second `up` takes nothing).
  if [[ -n $holder && ! ($holder == "$STATE" && -f $NODE_STATE/bridge.owned) ]]; then
    live=$(live_components "$holder")
    [[ -z $live ]] || die "the real node's bridge $NODE_BRIDGE and cgroups are held by the stack at $holder, which still runs: ${live% }; stop it first (TIDAL_STACK_DIR=$holder scripts/stack.sh down), or run this one without a real node and on other ports (TIDAL_REAL_NODE=0 TIDAL_PORT_BASE=...)"
    say "the stack at $holder stopped without taking its real node down; removing what it left (containers, mounts, cgroups, pod network namespaces, the bridge, the kernel settings)"
    release_node_host "$holder"
    d=$(node_cgroup_dirs)
    [[ -z $d ]] || die "the cgroups the stack at $holder left could not all be removed (${d//$'\n'/, }); a process still in them? (ps -e -o pid,cgroup,cmd | grep $NODE_CGROUP_ROOT)"
  fi
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || die "cannot create bridge $NODE_BRIDGE (needs root)"
    touch "$NODE_STATE/bridge.owned"
  elif [[ ! -f $NODE_STATE/bridge.owned ]]; then
    die "a bridge named $NODE_BRIDGE exists and no Tidal stack holds it ($NODE_HOLDER_FILE names none); remove it or set TIDAL_NODE_BRIDGE"
  fi
  echo "$STATE" >"$NODE_HOLDER_FILE"
  unlock_node_host
  grep -q "inet $NODE_IP/" <<<"$(ip addr show dev "$NODE_BRIDGE")" || ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

# ---------------------------------------------------------------- up
up_node() {
  node_enabled || return 0
  mkdir -p "$NODE_STATE"
  save_kernel_tunables
  up_forwarder
  up_containerd
  up_kubelet
}

# The kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops at start
# (protectKernelDefaults: false), and the bridge plugin turns on net.ipv4.ip_forward at the
# first pod (isGateway: true). Saved once here and put back by `down`.
KERNEL_TUNABLES=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward)
save_kernel_tunables() {
  [[ -f $NODE_SYSCTL_FILE ]] && return 0
  local k
  for k in "${KERNEL_TUNABLES[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$NODE_SYSCTL_FILE"
}
restore_kernel_tunables() {
  [[ -f $NODE_SYSCTL_FILE ]] || return 0
  local kv
  while read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1 || say "could not restore $kv"; done <"$NODE_SYSCTL_FILE"
  rm -f "$NODE_SYSCTL_FILE"
}

# Pods reach the API server and Prometheus (both on 127.0.0.1) through the node IP.
up_forwarder() {
  start node-forward /usr/bin/python3 "$REPO/scripts/tcp-forward.py" \
    "$NODE_IP:$APISERVER_PORT=127.0.0.1:$APISERVER_PORT" "$NODE_IP:$PROM_PORT=127.0.0.1:$PROM_PORT"
  wait_for node-forward 20 curl -fsS "http://$NODE_IP:$PROM_PORT/-/ready"
}

ctr_() { "$NODE_ROOTFS/usr/bin/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

up_containerd() {
  local dir=$NODE_STATE/containerd
  mkdir -p "$dir" "$NODE_STATE/cni/net.d" "$NODE_STATE/cni/ipam"
  cat >"$NODE_STATE/cni/net.d/10-tidal.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tidal",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_STATE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_NET.0/24", "rangeStart": "$NODE_NET.10", "rangeEnd": "$NODE_NET.250", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$NODE_NET.0/24"}]
      }
    }
  ]
}
EOF
  mkdir -p "$NODE_STATE/certs.d/_default"
  cat >"$NODE_STATE/certs.d/_default/hosts.toml" <<EOF
# Generated by scripts/stack.sh: no registry is reachable from this machine, and none is tried.
server = "http://127.0.0.1:9"
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$dir/config.toml" <<EOF
# Generated by scripts/stack.sh (the real node). Every path is the stack's own.
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Processes here lack CAP_SYS_RESOURCE: without this every sandbox fails in runc init
  # ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # No image ever leaves the machine to be pulled: every registry resolves to a closed local
  # port (certs.d/_default/hosts.toml), so a pod whose image was not imported fails at once
  # with ErrImagePull instead of reaching out.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_STATE/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NODE_ROOTFS/usr/lib/cni"
    conf_dir = "$NODE_STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$NODE_ROOTFS/usr/sbin/runc"
        Root = "$dir/runc"
        SystemdCgroup = false
EOF
  start containerd env PATH="$NODE_ROOTFS/usr/bin:$NODE_ROOTFS/usr/sbin:$PATH" \
    "$NODE_ROOTFS/usr/bin/containerd" --config "$dir/config.toml"
  wait_for containerd 60 ctr_ version
  import_image "$IMAGES_DIR/pause-1.tar" "$PAUSE_IMAGE"
  import_image "$IMAGES_DIR/busybox-1.tar" "$BUSYBOX_IMAGE"
}

# import_image ARCHIVE NAME: into the node's containerd (namespace k8s.io, where the CRI looks).
import_image() {
  [[ -f $1 ]] || die "image archive $1 is missing (scripts/stack.sh build makes it)"
  ctr_ images import "$1" >/dev/null 2>"$NODE_STATE/import.err" || {
    cat "$NODE_STATE/import.err" >&2
    die "containerd could not import $1"
  }
  grep -qx "$2" <<<"$(ctr_ images ls -q)" || die "image $2 not in containerd after importing $1"
  # Pinned: the kubelet's image GC and its eviction manager (which deletes unused images when
  # the disk runs low) never remove it; there is no registry to pull it back from.
  ctr_ images label "$2" io.cri-containerd.pinned=pinned >/dev/null ||
    die "could not pin image $2 in containerd"
}

up_kubelet() {
  local dir=$NODE_STATE/kubelet
  mkdir -p "$dir" "$NODE_STATE/pod-logs"
  gen_node_kubeconfig
  # The pods get no cluster DNS here: an explicit, empty resolver file rather than the host's.
  echo "# the tidal stack has no cluster DNS" >"$NODE_STATE/resolv.conf"
  cat >"$NODE_STATE/kubelet.yaml" <<EOF
# Generated by scripts/stack.sh (the real node).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# This host runs cgroup v1 (the unified mount has no controllers).
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$NODE_CGROUP_ROOT
cgroupsPerQOS: true
failSwapOn: false
resolvConf: $NODE_STATE/resolv.conf
podLogsDir: $NODE_STATE/pod-logs
# Leave the host's iptables alone (no iptables here at all).
makeIPTablesUtilChains: false
# Never collect the locally imported images (there is no registry to pull them back from).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Absolute disk thresholds: the node shares a big disk with builds (a fresh clone's target/ is
# 17 GB); 2 % of 252 GB (5 GB free) made it evict every pod and take none in a CI run.
evictionHard: {memory.available: 200Mi, nodefs.available: 1Gi, imagefs.available: 1Gi, nodefs.inodesFree: 2%}
maxPods: 40
serializeImagePulls: false
registerNode: true
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
  prepare_cgroup_root
  # --containerd: the kubelet's built-in cAdvisor finds the runtime there (default
  # /run/containerd/containerd.sock) to label container series with pod and container names.
  start kubelet "$K8S_DIR/kubelet" --config "$NODE_STATE/kubelet.yaml" \
    --kubeconfig "$NODE_STATE/kubelet.kubeconfig" --root-dir "$dir" --cert-dir "$dir/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --containerd "$CONTAINERD_SOCK" \
    --node-labels "$NODE_LABEL,type=real" \
    --register-with-taints "tidal.dev/real-node=true:NoSchedule" --v=1
  wait_for kubelet 120 kubectl_ get node "$NODE_NAME"
  wait_for kubelet 120 kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  say "real node $NODE_NAME ready at $NODE_IP (kubelet :$KUBELET_PORT, pods on $NODE_BRIDGE $NODE_NET.0/24)"
}

gen_node_kubeconfig() {
  cat >"$NODE_STATE/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tidal-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $NODE_NAME
  user:
    client-certificate: $STATE/pki/kubelet-client.crt
    client-key: $STATE/pki/kubelet-client.key
contexts:
- name: tidal-local
  context: {cluster: tidal-local, user: $NODE_NAME}
current-context: tidal-local
EOF
}

# The cgroup v1 hierarchies the kubelet uses (every mounted controller hierarchy).
cgroup_hierarchies() {
  local d
  for d in /sys/fs/cgroup/*/; do
    d=${d%/}
    [[ -f $d/cgroup.procs && $d != /sys/fs/cgroup/unified ]] && echo "$d"
  done
}

# The kubelet's cgroup root in every hierarchy where it exists, the controller-less unified
# mount included (the kubelet makes its tree there too).
node_cgroup_dirs() {
  local h
  for h in $(cgroup_hierarchies) /sys/fs/cgroup/unified; do
    [[ -d $h/$NODE_CGROUP_ROOT ]] && echo "$h/$NODE_CGROUP_ROOT"
  done
  true
}

# The processes in those cgroups (containers whose pods were not deleted, when the kubelet
# and containerd were killed).
node_cgroup_pids() {
  local d
  for d in $(node_cgroup_dirs); do
    # 0 is a process of another pid namespace (cgroup v2); `kill 0` would be our own group.
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | awk '$1 != 0'
  done
  true
}

# The kubelet requires its cgroup root to exist in every hierarchy. The stack creates it, and
# refuses to adopt one that another program made.
prepare_cgroup_root() {
  local h found
  if [[ ! -f $NODE_STATE/cgroups.owned ]]; then
    found=$(node_cgroup_dirs)
    [[ -z $found ]] ||
      die "cgroup ${found%%$'\n'*} exists and this stack did not create it; another kubelet? (remove it or run with TIDAL_REAL_NODE=0)"
    touch "$NODE_STATE/cgroups.owned"
  fi
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h/$NODE_CGROUP_ROOT"
    # A new cpuset cgroup starts empty; give it its parent's CPUs and memory nodes.
    if [[ -f $h/$NODE_CGROUP_ROOT/cpuset.cpus && -z $(cat "$h/$NODE_CGROUP_ROOT/cpuset.cpus") ]]; then
      cat "$h/cpuset.cpus" >"$h/$NODE_CGROUP_ROOT/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$NODE_CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# ---------------------------------------------------------------- down
# Pods first (the kubelet stops their containers and the CNI plugin frees their addresses),
# then the kubelet and the runtime, then what they leave: cgroups, mounts, the bridge.
down_node() {
  [[ -d $NODE_STATE || $(node_holder) == "$STATE" ]] || return 0
  if running kubelet && running kube-apiserver; then
    stop kube-controller-manager
    stop kube-scheduler
    local pods
    pods=$(kubectl_ get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null | wc -l)
    if ((pods > 0)); then
      say "deleting the $pods pods on $NODE_NAME"
      kubectl_ delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --grace-period=2 --timeout=60s >/dev/null 2>&1 ||
        say "some pods on $NODE_NAME were not deleted in 60s; killing their processes"
    fi
  fi
  stop kubelet
  stop node-forward
  stop containerd
  lock_node_host
  release_node_host "$STATE"
  unlock_node_host
}

# release_node_host DIR: what the stack at DIR leaves once its kubelet and containerd are
# gone. Its own mounts and log links (under DIR) always go. The host's share goes only when
# DIR holds it (the record names it, or there is no record and DIR made it: its .owned files,
# from before the record): the processes still in the kubelet's cgroups (containers whose
# pods were not deleted) and the shims, the cgroups, the CNI cache, the pods' network
# namespaces, the bridge, the kernel settings and the record.
# A stack whose share another stack has since taken leaves that stack's containers alone.
release_node_host() {
  local dir=$1 node=$1/node held=0 a d pid pids deadline m ns record
  record=$(node_holder)
  if [[ $record == "$dir" ]] || [[ -z $record && (-f $node/cgroups.owned || -f $node/bridge.owned) ]]; then
    held=1
  fi
  if ((held)); then
    # A killed process leaves its cgroup once it has exited, and a cgroup with a process in it
    # cannot be removed: kill and wait, 10 s at most.
    deadline=$((SECONDS + 10))
    while pids=$(node_cgroup_pids) && [[ -n $pids ]]; do
      if ((SECONDS >= deadline)); then
        say "processes still in the kubelet's cgroups after 10 s: ${pids//$'\n'/ }"
        break
      fi
      for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
      sleep 0.2
    done
  fi
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $node/containerd.sock" 2>/dev/null || true
  # Their sockets: containerd 1.6 puts them in the fixed /run/containerd/s/, each named by a
  # hash of this stack's containerd address, the namespace and the task, and a shim killed
  # leaves its own. Each task's bundle names its shim's socket in its `address` file.
  for a in "$node"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    [[ -f $a ]] || continue
    m=$(<"$a") || continue
    m=${m#unix://}
    if [[ $m =~ ^/run/containerd/s/[0-9a-f]{64}$ && -S $m ]]; then
      rm -f -- "$m" || say "could not remove the shim socket $m"
    fi
  done
  # Mounts under the node's state (rootfs overlays, sandbox shm, pod volumes), deepest first.
  for m in $(awk -v p="$node/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done
  # The kubelet links container logs from the fixed /var/log/containers: remove our links.
  find /var/log/containers -maxdepth 1 -lname "$node/*" -delete 2>/dev/null || true
  if ((held)); then
    for d in $(node_cgroup_dirs); do
      # A hierarchy may be listed twice (cpu and cpu,cpuacct); its tree goes at the first.
      [[ -d $d ]] || continue
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    d=$(node_cgroup_dirs)
    [[ -z $d ]] || say "cgroups left (still in use?): ${d//$'\n'/, }"
    rm -f /var/lib/cni/results/tidal-* 2>/dev/null || true
    # The pods' network namespaces: containerd removes them when the kubelet stops a pod, and
    # nothing does when both were killed. Each is found by its end of a veth on the bridge.
    for ns in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | sed -n 's/.* link-netns \([^ ]*\).*/\1/p'); do
      ip netns del "$ns" 2>/dev/null || say "could not remove network namespace $ns"
    done
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    restore_kernel_tunables
    # Kept while cgroups are left, so that the next `up` finds a holder and tries again.
    [[ $(node_holder) == "$dir" && -z $d ]] && rm -f "$NODE_HOLDER_FILE"
  fi
  rm -f "$node/cgroups.owned" "$node/bridge.owned"
  true
}

node_status() {
  node_enabled || return 0
  components_status node-forward containerd kubelet
}

node_env() {
  node_enabled || return 0
  cat <<EOF
export TIDAL_NODE_NAME=$NODE_NAME
export TIDAL_NODE_IP=$NODE_IP
export TIDAL_NODE_CGROUP_ROOT=$NODE_CGROUP_ROOT
export TIDAL_NODE_CONTAINERD_SOCK=$CONTAINERD_SOCK
export TIDAL_NODE_CTR=$NODE_ROOTFS/usr/bin/ctr
export TIDAL_POD_APISERVER=https://$NODE_IP:$APISERVER_PORT
export TIDAL_POD_PROMETHEUS_URL=http://$NODE_IP:$PROM_PORT
export TIDAL_POD_KAFKA_BOOTSTRAP=$NODE_IP:$KAFKA_POD_PORT
export TIDAL_POD_KAFKA_SASL_BOOTSTRAP=$NODE_IP:$KAFKA_POD_SASL_PORT
export TIDAL_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
EOF
}

# Prometheus jobs that find the in-cluster agent and scaler through the API server, as a
# cluster's Prometheus does: the jobs of manifests/overlays/plain-prometheus/prometheus-scrape.yaml
# (one place for the relabelling rules), given the stack's API server, CA and token, a 1 s
# interval like the rest of the stack, and renamed kubernetes-<job> so they do not clash with
# the file_sd jobs of the local test processes; a first rule keeps the real node's pods only
# (KWOK's have made-up addresses routed off this machine), a last one puts the job label back
# to the name the alert rules and dashboards select on.
prometheus_kubernetes_jobs() {
  node_enabled || return 0
  /usr/bin/python3 - "$REPO/manifests/overlays/plain-prometheus/prometheus-scrape.yaml" \
    "https://127.0.0.1:$APISERVER_PORT" "$STATE/pki/ca.crt" "$ADMIN_TOKEN_FILE" "$NODE_NAME" <<'PY'
import json, sys, yaml
src, api, ca, token, node = sys.argv[1:]
for job in yaml.safe_load(open(src))["scrape_configs"]:
    name = job["job_name"]
    job["job_name"] = "kubernetes-" + name
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    for sd in job["kubernetes_sd_configs"]:
        sd.update({"api_server": api, "tls_config": {"ca_file": ca},
                   "authorization": {"credentials_file": token}})
    # Only the real node's pods: KWOK's pods (the manifests test's DaemonSet lands there too)
    # carry made-up addresses that are routed off this machine.
    job["relabel_configs"].insert(0, {"source_labels": ["__meta_kubernetes_pod_node_name"],
                                      "action": "keep", "regex": node})
    job["relabel_configs"].append({"target_label": "job", "replacement": name})
    print("  - " + json.dumps(job))
# The kubelet's cAdvisor, as kube-prometheus-stack scrapes it (job "kubelet"), through the API
# server's node proxy: the series whose names the agent must not collide with
# (tests/tests/series_collision.rs).
print("  - " + json.dumps({
    "job_name": "kubelet", "scheme": "https", "scrape_interval": "5s", "scrape_timeout": "4s",
    "metrics_path": "/api/v1/nodes/%s/proxy/metrics/cadvisor" % node,
    "tls_config": {"ca_file": ca}, "authorization": {"credentials_file": token},
    "static_configs": [{"targets": [api.removeprefix("https://")],
                        "labels": {"node": node, "metrics_path": "/metrics/cadvisor"}}]}))
PY
}
