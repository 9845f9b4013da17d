# shellcheck shell=bash
# scripts/stack/tools.sh — the tools the stack only builds: Helm (the chart tests) and tools/dashcheck (the dashboards).
# Sourced by scripts/stack.sh, which defines the versions, ports, paths and say/die/run_logged.

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
