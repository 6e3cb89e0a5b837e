#!/usr/bin/env bash
# Installs moto's server (a local AWS emulator, here for Secrets Manager) from PyPI, pinned,
# into ${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-moto. The credentials crate's
# integration test (shared/credentials/tests/secrets_manager.rs) starts
# $KIT_CACHE/venv-moto/bin/moto_server itself on a free 127.0.0.1 port.
#
# Idempotent: when the pinned version is already there, it only checks and prints.
set -euo pipefail

KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"
VENV="$KIT_CACHE/venv-moto"
MOTO_VERSION="5.2.5"
LOG="$VENV.log"

step() { echo "install-moto: $*"; }
fail() { echo "install-moto: $*" >&2; exit 1; }

# A Python that can make venvs: the system one (python3-venv), else python3 on PATH.
pick_python() {
  local candidate probe
  probe="$(mktemp -d)"
  for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -m venv "$probe/venv" >/dev/null 2>&1; then
      rm -rf "$probe"
      echo "$candidate"
      return
    fi
    rm -rf "$probe/venv"
  done
  rm -rf "$probe"
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq python3-venv >/dev/null || fail "apt-get install python3-venv failed (run apt-get update first?)"
    echo /usr/bin/python3
    return
  fi
  fail "no Python that can create a venv: install python3-venv"
}

installed_version() {
  [[ -x $VENV/bin/python ]] || return 0
  "$VENV/bin/python" -m pip show moto 2>/dev/null | sed -n 's/^Version: //p' || true
}

if [[ $(installed_version) == "$MOTO_VERSION" && -x $VENV/bin/moto_server ]]; then
  step "moto[server] $MOTO_VERSION already in $VENV"
  exit 0
fi

step "installing moto[server]==$MOTO_VERSION into $VENV (log: $LOG)"
mkdir -p "$KIT_CACHE"
if [[ ! -x $VENV/bin/python ]]; then
  python="$(pick_python)"
  "$python" -m venv "$VENV" || fail "could not create the venv $VENV"
fi
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "moto[server]==$MOTO_VERSION" >"$LOG" 2>&1; then
  tail -n 20 "$LOG" >&2
  fail "pip install moto[server]==$MOTO_VERSION failed; see $LOG"
fi
[[ -x $VENV/bin/moto_server ]] || fail "moto installed but $VENV/bin/moto_server is missing; see $LOG"
step "moto[server] $(installed_version) ready: $VENV/bin/moto_server"
