#!/usr/bin/env bash
# Installs moto's server (a local AWS emulator, here for Secrets Manager) from PyPI, pinned,
# into ${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-moto. The credentials crate's
# integration tests start $KIT_CACHE/venv-moto/bin/moto_server themselves.
# Idempotent: when the pinned version is already there, it only checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

fail() { echo "install-moto: $*" >&2; exit 1; }
# shellcheck source=lib/venv.sh
. lib/venv.sh

VENV="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-moto"
ensure_venv "$VENV" "moto[server]==5.2.5"
[[ -x $VENV/bin/moto_server ]] || fail "moto installed but $VENV/bin/moto_server is missing; see $VENV.log"
