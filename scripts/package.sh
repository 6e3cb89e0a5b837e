#!/usr/bin/env bash
# `make package`: builds the deployable artifacts with `sam build`, which
# cross-compiles ingest, search and purge for arm64 through cargo-lambda
# (BuildMethod: rust-cargolambda in infra/template.yaml) into .aws-sam/build.
# Deploy afterwards with `sam deploy --guided` from the repository root (docs/deploy.md).
#
# Needs cargo-lambda (scripts/install-deps.sh puts it in $KIT_CACHE/venv) and
# sam (scripts/install-lint-tools.sh puts it in $KIT_CACHE/venv-lint). Slow: a
# full release build of three functions.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"

cd "$ROOT"
bash scripts/install-lint-tools.sh >/dev/null
export PATH="$KIT_CACHE/venv/bin:$KIT_CACHE/venv-lint/bin:$PATH"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

cargo lambda --version >/dev/null 2>&1 \
  || { echo "package: cargo lambda is not installed: run scripts/install-deps.sh" >&2; exit 1; }

# The template must match kit.toml before it is built. --locked also proves Cargo.lock is
# current: SAM's rust-cargolambda builder runs `cargo lambda build` without --locked (its
# BuildProperties take only Binary), and with a current lock file cargo resolves nothing anew.
cargo run --locked --quiet -p kit -- check

# rust-cargolambda is a SAM beta feature: --beta-features opts in without a prompt.
sam build --template-file infra/template.yaml --build-dir .aws-sam/build --beta-features "$@"
echo "package: built into .aws-sam/build; deploy with: sam deploy --guided"
