#!/usr/bin/env bash
# `make test`: the workspace's tests against the local stack. Starts the stack when it is not
# running and stops it afterwards, even when tests fail; a stack that was already up stays up.
# Exits with the tests' status. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
scripts/install-moto.sh
# The dependency policy (deny.toml), offline; advisories run where the network allows (docs/deploy.md).
"$(scripts/install-deny.sh)" --locked check bans licenses sources --hide-inclusion-graph

if scripts/stack.sh status >/dev/null; then started_here=false; else started_here=true; fi

log=.kit/log/cargo-test.log

stop_stack_if_started_here() {
  local status=$?
  if $started_here; then scripts/stack.sh down || true; fi
  # One closing line with the totals over every test binary, whatever ran last.
  if [[ -f $log ]]; then
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
  fi
  exit "$status"
}
trap stop_stack_if_started_here EXIT

scripts/stack.sh up
set -a
# shellcheck source=/dev/null
. "$(scripts/stack.sh env)"
set +a
# The same schema as after `make up`: tests that use the kit database itself find it migrated.
cargo run --locked -q -p kit -- migrate up
mkdir -p .kit/log
rm -f "$log"
cargo test --locked --workspace "$@" 2>&1 | tee "$log"
