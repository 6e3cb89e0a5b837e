#!/usr/bin/env bash
# Installs the infrastructure linters from PyPI, pinned, into
# ${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-lint, and links them into
# venv-lint/bin: sam (aws-sam-cli, also used by scripts/package.sh), cfn-lint, checkov.
#
# aws-sam-cli and checkov pin different boto3 versions, so each lives in its own
# venv (venv-lint/sam, venv-lint/checkov). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

fail() { echo "install-lint-tools: $*" >&2; exit 1; }
# shellcheck source=lib/venv.sh
. lib/venv.sh

LINT="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-lint"
ensure_venv "$LINT/sam" "aws-sam-cli==1.170.0" "cfn-lint==1.58.0"
ensure_venv "$LINT/checkov" "checkov==3.3.30"

mkdir -p "$LINT/bin"
ln -sfn "$LINT/sam/bin/sam" "$LINT/bin/sam"
ln -sfn "$LINT/sam/bin/cfn-lint" "$LINT/bin/cfn-lint"
ln -sfn "$LINT/checkov/bin/checkov" "$LINT/bin/checkov"

export SAM_CLI_TELEMETRY=0
echo "install-lint-tools: ready in $LINT/bin: $("$LINT/bin/sam" --version), cfn-lint $("$LINT/bin/cfn-lint" --version | awk '{print $2}'), checkov $("$LINT/bin/checkov" --version)"
