#!/usr/bin/env bash
# Installs cargo-deny, pinned, into ${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/cargo-tools/bin,
# built from crates.io with its own Cargo.lock (`cargo install --locked`). Idempotent: a second
# run only checks the version. The first build takes several minutes on 2 cores (log below).
# Prints the binary's path on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DENY_VERSION="0.20.2"
KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"
ROOT="$KIT_CACHE/cargo-tools"
BIN="$ROOT/bin/cargo-deny"
LOG="$KIT_CACHE/logs/cargo-deny.log"

fail() { echo "install-deny: $*" >&2; exit 1; }

installed() { [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | awk '{print $2}'; }

if [[ $(installed || true) == "$DENY_VERSION" ]]; then
  echo "install-deny: cargo-deny $DENY_VERSION already in $ROOT/bin" >&2
else
  command -v cargo >/dev/null || fail "cargo is not on PATH: install the Rust toolchain (rustup) first"
  mkdir -p "$ROOT" "$(dirname "$LOG")"
  echo "install-deny: building cargo-deny $DENY_VERSION into $ROOT (a few minutes; log: $LOG)" >&2
  start=$SECONDS
  # --force replaces an older pinned version in place; --locked builds cargo-deny's own lock file.
  if ! cargo install --locked --force --root "$ROOT" "cargo-deny@$DENY_VERSION" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    fail "cargo install cargo-deny@$DENY_VERSION failed; full log: $LOG"
  fi
  [[ $(installed || true) == "$DENY_VERSION" ]] || fail "$BIN does not report version $DENY_VERSION after the install"
  echo "install-deny: cargo-deny $DENY_VERSION built in $((SECONDS - start)) s" >&2
fi
echo "$BIN"
