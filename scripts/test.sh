#!/usr/bin/env bash
# `make test`: the lints (cargo fmt --check, clippy with warnings denied), then the workspace's
# tests against the local stack, then the shell tests under tests/ (tests/*.sh). Starts the stack
# when it is not running and stops it afterwards, even when tests fail; a stack that was already up
# stays up. Exits non-zero when anything fails. Extra arguments go to `cargo test`.
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
         /^test [a-z_]+ \.\.\. ok$/ && shell { p++ }
         /^test [a-z_]+ \.\.\. FAILED$/ && shell { f++ }
         /^==> shell tests$/ { shell = 1 }
         END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
  fi
  exit "$status"
}
trap stop_stack_if_started_here EXIT
mkdir -p .kit/log
rm -f "$log"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy (warnings denied)"
cargo clippy --locked -q --workspace --all-targets -- -D warnings

# Also applies the migrations and the functions' login roles, as `make up` does: tests that
# use the kit database itself find it migrated.
scripts/stack.sh up
set -a
# shellcheck source=/dev/null
. "$(scripts/stack.sh env)"
set +a
cargo test --locked --workspace "$@" 2>&1 | tee "$log"

# After cargo test, which holds the target directory's lock while its tests run. A run narrowed
# by arguments (scripts/test.sh -p storage) is about those cargo tests only.
(($# == 0)) || exit 0
echo "==> shell tests" | tee -a "$log"
shell_status=0
for test in tests/*.sh; do
  bash "$test" 2>&1 | tee -a "$log" || shell_status=1
done
exit "$shell_status"
