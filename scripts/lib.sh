# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it; do not run it.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TIDAL_CACHE=${TIDAL_CACHE:-$HOME/.cache/tidal}
_t0=$(date +%s)

step() { printf '\n==> [%4ss] %s\n' "$(($(date +%s) - _t0))" "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
fail() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# The toolchain pinned in rust-toolchain.toml must be present. rustup cannot download on an
# offline machine, so when the pinned version is missing but the installed stable is exactly
# that version, link it under the pinned name.
ensure_toolchain() {
  command -v cargo >/dev/null || fail "cargo is not installed (install Rust with rustup)"
  local want
  want=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$REPO/rust-toolchain.toml")
  if rustup run "$want" rustc --version >/dev/null 2>&1; then return 0; fi
  local stable_ver stable_dir
  stable_ver=$(rustup run stable rustc --version 2>/dev/null | awk '{print $2}')
  stable_dir=$(rustup run stable rustc --print sysroot 2>/dev/null)
  if [[ $stable_ver == "$want" && -n $stable_dir ]]; then
    note "linking installed stable ($stable_ver) as toolchain $want"
    rustup toolchain link "$want" "$stable_dir"
  else
    rustup toolchain install "$want" --profile minimal -c rustfmt -c clippy ||
      fail "toolchain $want is pinned in rust-toolchain.toml but is not installed"
  fi
}

# True when every stack component is running.
stack_running() { "$REPO/scripts/stack.sh" status >/dev/null 2>&1; }
