#!/usr/bin/env bash
# scripts/image.sh — the Tidal image, built here without a registry or a container daemon.
#
#   scripts/image.sh [--profile release|dev] [--no-import] [--consumer]
#
# Builds both binaries with Cargo, then an OCI image equivalent to the Dockerfile's: the two
# binaries in /usr/local/bin, the C runtime they link (the part of distroless/cc-debian12 they
# use, taken from this Debian 12 host), CA certificates, a passwd with nobody, user
# 65534:65534, entrypoint tidal-agent, and no shell. Written to ~/.cache/tidal/images/ and, when
# the stack's real node runs, imported into its containerd as tidal.local/tidal:dev
# (the name manifests/overlays/local uses). The Dockerfile stays for real registries.
#
# --consumer builds, the same way, the benchmark's own image instead:
# tidal.local/tidal-bench-consumer:dev with tidal-bench-consumer
# (bench/src/bin/tidal-bench-consumer.rs), the real Kafka consumer of the peers' trace replay
# (scripts/bench-peers.sh). It is never part of Tidal's image.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE=release
IMPORT=1
CONSUMER=0
while (($#)); do
  case $1 in
  --profile) PROFILE=${2:?}; shift 2 ;;
  --no-import) IMPORT=0; shift ;;
  --consumer) CONSUMER=1; shift ;;
  *) fail "unknown argument $1 (see the top of $0)" ;;
  esac
done
cd "$REPO"
ensure_toolchain
dir=target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
if ((CONSUMER)); then
  # Fixed: the replay's driver runs this name (bench/src/peers/driver/replay.rs, CONSUMER_IMAGE).
  NAME=tidal.local/tidal-bench-consumer:dev
  OUT=$TIDAL_CACHE/images/tidal-bench-consumer-dev.tar
  ENTRYPOINT=/usr/local/bin/tidal-bench-consumer
  step "building tidal-bench-consumer ($PROFILE)"
  cargo build --locked --profile "$PROFILE" -p tidal-bench --bin tidal-bench-consumer
  bins=("$dir/tidal-bench-consumer")
else
  NAME=${TIDAL_IMAGE_NAME:-tidal.local/tidal:dev}
  OUT=$TIDAL_CACHE/images/tidal-dev.tar
  ENTRYPOINT=/usr/local/bin/tidal-agent
  step "building tidal-agent and tidal-scaler ($PROFILE)"
  cargo build --locked --profile "$PROFILE" -p tidal-agent -p tidal-scaler
  bins=("$dir/tidal-agent" "$dir/tidal-scaler")
fi

step "assembling the image $NAME"
args=()
for b in "${bins[@]}"; do args+=(--file "$b:/usr/local/bin/$(basename "$b"):755"); done
# Every shared object the binaries load, at the path the dynamic loader looks for it.
while read -r lib; do
  [[ -n $lib ]] && args+=(--file "$(readlink -f "$lib"):$lib:755")
done < <(ldd "${bins[@]}" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | sort -u)
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f $ca ]] && args+=(--file "$ca:$ca:644")
mkdir -p "$(dirname "$OUT")"
/usr/bin/python3 scripts/oci-image.py --name "$NAME" --out "$OUT" "${args[@]}" \
  --text "/etc/passwd=root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
" --text "/etc/group=root:x:0:
nogroup:x:65534:
" --dir /tmp:1777 --user 65534:65534 --entrypoint "[\"$ENTRYPOINT\"]" \
  --label "org.opencontainers.image.source=https://github.com/tidal-autoscaler/tidal" \
  --label "org.opencontainers.image.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
note "$(du -h "$OUT" | cut -f1) at $OUT"

if ((IMPORT)); then
  if [[ -f $REPO/.stack/env ]] || [[ -n ${TIDAL_STACK_DIR:-} ]]; then
    # shellcheck disable=SC1091
    source "${TIDAL_STACK_DIR:-$REPO/.stack}/env"
  fi
  if [[ -n ${TIDAL_NODE_CONTAINERD_SOCK:-} && -S ${TIDAL_NODE_CONTAINERD_SOCK} ]]; then
    step "importing $NAME into the real node's containerd"
    "$TIDAL_NODE_CTR" --address "$TIDAL_NODE_CONTAINERD_SOCK" --namespace k8s.io images import "$OUT" >/dev/null ||
      fail "containerd on the stack's node could not import $OUT"
    grep -qx "$NAME" <<<"$("$TIDAL_NODE_CTR" --address "$TIDAL_NODE_CONTAINERD_SOCK" --namespace k8s.io images ls -q)" ||
      fail "$NAME is not in the node's containerd after the import"
    # Pinned, so the kubelet's image GC never removes it (no registry to pull it back from).
    "$TIDAL_NODE_CTR" --address "$TIDAL_NODE_CONTAINERD_SOCK" --namespace k8s.io images label "$NAME" io.cri-containerd.pinned=pinned >/dev/null ||
      fail "could not pin $NAME in the node's containerd"
    note "imported; pods use it with imagePullPolicy: Never (manifests/overlays/local)"
  else
    note "the stack's real node is not running: not imported (scripts/stack.sh up, then run this again)"
  fi
fi
