#!/usr/bin/env bash
# scripts/test-stack-host.sh — the real node's host share across stacks (docs/real-node.md, "One
# real node a host"): a stack killed without `down` is cleaned up by the next `up`, from another
# directory or the same one; an `up` beside a running stack stops and names it; a `down` of a
# stack whose share was taken leaves the new holder's pods alone; `down --purge` leaves nothing.
# Brings stacks up in temporary directories and kills them with SIGKILL, as a session's end
# does. Not part of scripts/test.sh (about 6 minutes warm). Needs root and no stack running.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ ! -s /run/tidal/node.holder ]] ||
  { echo "a stack holds the real node ($(cat /run/tidal/node.holder)): bring it down first" >&2; exit 2; }
# Resolved, as stack.sh resolves TIDAL_STACK_DIR: the holder record names the real path.
work=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/tidal-host.XXXXXX")")
a=$work/a b=$work/b c=$work/c fails=0
kubectl_b() { "${TIDAL_CACHE:-$HOME/.cache/tidal}/k8s-v1.35.4/kubectl" --kubeconfig "$b/kubeconfig" "$@"; }
up() { TIDAL_STACK_DIR=$1 scripts/stack.sh up >"$work/${1##*/}-up.log" 2>&1; }
down() { TIDAL_STACK_DIR=$1 scripts/stack.sh down --purge >>"$work/down.log" 2>&1; }
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1 ($2)"; fails=$((fails + 1)); fi; }
# Everything a stack started, with SIGKILL: its components, the shims, the containers.
kill_stack() {
  local f p
  for f in "$1"/pids/*.pid; do
    p=$(<"$f")
    kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
  done
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $1/node/containerd.sock"
  for p in $(find /sys/fs/cgroup/pids/kubelet -name cgroup.procs -exec cat {} + 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null
  done
  sleep 2
}
holder() { cat /run/tidal/node.holder 2>/dev/null; }
# The shim sockets a stack's tasks named (containerd 1.6 keeps them in /run/containerd/s/).
shim_sockets() {
  local f m
  for f in "$1"/node/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
    [[ -f $f ]] && m=$(<"$f") && echo "${m#unix://}"
  done | sort -u
}
none_exist() { local s; for s in "$@"; do [[ ! -e $s ]] || return 1; done; }
saved=$(sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward | tr '\n' ' ')

echo "== a stack up, then killed"
up "$a"
check "up A" '[[ $(holder) == "$a" ]] && ip link show tidal-br0 >/dev/null'
kill_stack "$a"
# The pods' network namespaces (containerd names them cni-*), not the host's others.
a_netns=$(ip netns list | awk '$1 ~ /^cni-/ {print $1}')
[[ -n $a_netns ]] || { echo "FAIL A left no pod network namespace to clean up (its admission-controller pod?)"; exit 1; }
mapfile -t a_socks < <(shim_sockets "$a")
check "A's killed shims left their sockets" '((${#a_socks[@]} > 0)) && ! none_exist "${a_socks[@]}"'
echo "== another stack up beside what A left"
up "$b"
check "B took A's share" 'grep -q "the stack at $a stopped without" "$work/b-up.log" && [[ $(holder) == "$b" ]]'
ip netns list | awk '{print $1}' >"$work/netns-after-b"
check "A's shim sockets are gone" '((${#a_socks[@]} > 0)) && none_exist "${a_socks[@]}"'
check "A's pod network namespaces are gone" '! grep -qxF -f <(printf "%s\n" "$a_netns") "$work/netns-after-b"'
check "B's kubelet changed the kernel settings" '[[ $(sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward | tr "\n" " ") != "$saved" ]]'
echo "== a third beside the running B"
up "$c"
c_rc=$?
check "C stopped and named B" '((c_rc != 0)) && grep -q "held by the stack at $b, which still runs" "$work/c-up.log" && [[ $(holder) == "$b" ]]'
echo "== down of A, whose share B holds"
# Each container's ID and restarts: a container killed and restarted keeps its pod Running.
columns=N:.metadata.name,P:.status.phase,C:.status.containerStatuses[*].containerID,R:.status.containerStatuses[*].restartCount
pods=$(kubectl_b get pods -A --field-selector spec.nodeName=tidal-node-0 --no-headers -o "custom-columns=$columns")
down "$a"
sleep 5
check "B's pods still run, the same containers" '[[ -n $pods && $(kubectl_b get pods -A --field-selector spec.nodeName=tidal-node-0 --no-headers -o "custom-columns=$columns") == "$pods" ]]'
echo "== B killed, its node state lost, up again at the same path"
kill_stack "$b"
rm -f "$b/node/bridge.owned" "$b/node/cgroups.owned"
up "$b"
b_rc=$?
check "B took its own earlier share" '((b_rc == 0)) && grep -q "the stack at $b stopped without" "$work/b-up.log" && [[ $(holder) == "$b" ]]'
up "$b"
b_rc=$?
check "a second up starts nothing" '((b_rc == 0)) && grep -q "already running" "$work/b-up.log" && ! grep -q " started " "$work/b-up.log"'
echo "== down --purge"
# A graceful down deletes the pods first, and their shims remove their own sockets: this
# checks the end state; "A's shim sockets are gone" checks the cleanup of killed shims.
mapfile -t b_socks < <(shim_sockets "$b")
down "$b"
down "$c"
check "nothing left" '[[ -z $(holder) ]] && ! ip link show tidal-br0 >/dev/null 2>&1 && [[ ! -d /sys/fs/cgroup/cpu/kubelet ]]'
check "no shim socket of B's left" '((${#b_socks[@]} > 0)) && none_exist "${b_socks[@]}"'
check "kernel settings back" '[[ $(sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward | tr "\n" " ") == "$saved" ]]'
echo "logs: $work"
((fails == 0)) && echo "all passed" || { echo "$fails failed"; exit 1; }
